"""Web page tests: the pages' rate-limit counters are forgotten around each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings
from django_redis import get_redis_connection


@pytest.fixture(autouse=True)
def _fresh_web_rate_limits() -> Iterator[None]:
    """The limiter's windows live in Redis and outlast a test (and a dropped test database, whose
    ids and factory usernames start again): forget the web pages' counters (`web:` keys: access
    codes, find me, studio sign-in) around each test."""

    def forget() -> None:
        client = get_redis_connection("default")
        prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
        for key in client.scan_iter(match=f"{prefix}:ratelimit:{{web:*"):
            client.delete(key)

    forget()
    yield
    forget()
