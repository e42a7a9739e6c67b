from tests.commerce.fixtures import (  # noqa: F401 - fixtures, used by name
    celery_worker_thread,
    empty_broker,
    row_lock_strategy,
    shop_a,
    shop_b,
)
from tests.web.studio.conftest import sale, sale3, studio  # noqa: F401 - fixtures, used by name
