"""Web page tests: the pages' rate-limit counters are forgotten around each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures import forget_rate_limit_windows


@pytest.fixture(autouse=True)
def _fresh_web_rate_limits() -> Iterator[None]:
    """Forget the web pages' limiter windows (`web:` keys: access codes, find me, studio sign-in)
    around each test."""
    forget_rate_limit_windows("web:")
    yield
    forget_rate_limit_windows("web:")
