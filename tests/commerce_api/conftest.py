"""Commerce API tests kept apart from tests/commerce (same fixtures)."""

from tests.commerce.fixtures import empty_broker, row_lock_strategy, shop_a  # noqa: F401 - fixtures, used by name
