"""Payments test fixtures: the commerce shop of tenant A, and an empty broker per test."""

from __future__ import annotations

import pytest

from tests.commerce.fixtures import empty_broker  # noqa: F401 - a fixture, used by name
from tests.factories.commerce import Shop, make_shop


@pytest.fixture
def shop(tenant_a) -> Shop:
    return make_shop(org=tenant_a.org)
