"""The Redis sliding-window rate limiter and its 429 problem on the API (real Redis)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django_redis import get_redis_connection
from redis.backoff import NoBackoff
from redis.retry import Retry

from apps.core import redis_guard
from apps.idempotency.models import IdempotencyKey
from apps.notifications.models import Attendee
from apps.ops import ratelimit
from apps.ops.metrics import render
from apps.ops.ratelimit import Rate, rate_limit_check
from apps.tenancy.context import system_context, tenant_context
from tests.factories.catalog import EventFactory


@pytest.fixture(autouse=True)
def clean_counters() -> Iterator[None]:
    client = get_redis_connection("default")
    pattern = f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:ratelimit:*"

    def clean() -> None:
        for key in client.scan_iter(pattern):
            client.delete(key)

    clean()
    yield
    clean()


def test_rates_parse_and_typos_are_refused() -> None:
    assert Rate.parse("600/min") == Rate(limit=600, window_seconds=60)
    assert Rate.parse("20/s") == Rate(limit=20, window_seconds=1)
    assert Rate.parse("1000/10s") == Rate(limit=1000, window_seconds=10)
    for bad in ("", "0/min", "ten/min", "5/fortnight", "5"):
        with pytest.raises(ValueError):
            Rate.parse(bad)


def test_the_limit_admits_exactly_its_count_then_says_how_long_to_wait() -> None:
    rate = Rate(limit=5, window_seconds=3600)
    key = f"test:{uuid.uuid4().hex}"
    decisions = [rate_limit_check(key=key, rate=rate) for _ in range(7)]
    assert [d.admitted for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    assert all(1 <= d.retry_after_seconds <= 2 * 3600 for d in decisions[5:])
    # another key has its own budget
    assert rate_limit_check(key=f"{key}:other", rate=rate).admitted


def test_the_previous_window_still_counts_for_the_part_that_slides_over() -> None:
    client = get_redis_connection("default")
    rate = Rate(limit=100, window_seconds=3600)
    window_ms = rate.window_seconds * 1000

    def redis_now_ms() -> int:
        seconds, micros = client.time()
        return seconds * 1000 + micros // 1000

    # A run that straddles the hourly turn of the window measures nothing (its "previous" window is
    # then two windows back): it is run again, with a new key, in the next window.
    for _ in range(2):
        # given: a previous window that was full, and where we are in the current window (Redis clock)
        now = redis_now_ms()
        start = now - now % window_ms
        share_left = (window_ms - (now - start)) / window_ms
        key = f"test:{uuid.uuid4().hex}"
        base = f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:ratelimit:{{{key}}}"
        client.set(f"{base}:{start - window_ms}", 100, px=window_ms * 2)
        # when: requests come in
        admitted = 0
        while rate_limit_check(key=key, rate=rate).admitted:
            admitted += 1
        after = redis_now_ms()
        if after - after % window_ms == start:
            break
    # then: only what the previous window's sliding share leaves is admitted
    expected = math.floor(100 - 100 * share_left)
    assert abs(admitted - expected) <= 1, (admitted, expected, share_left)


def test_a_reset_forgets_both_windows_of_a_key_and_no_other() -> None:
    # given: a key whose previous window was full and whose current one is spent, and a neighbour
    client = get_redis_connection("default")
    rate = Rate(limit=3, window_seconds=3600)
    window_ms = rate.window_seconds * 1000
    seconds, micros = client.time()
    now = seconds * 1000 + micros // 1000
    key = f"test:{uuid.uuid4().hex}"
    base = f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:ratelimit:{{{key}}}"
    client.set(f"{base}:{now - now % window_ms - window_ms}", 3, px=window_ms * 2)
    neighbour = f"{key}:other"
    while rate_limit_check(key=key, rate=rate).admitted:
        pass
    assert [rate_limit_check(key=neighbour, rate=rate).admitted for _ in range(4)] == [True, True, True, False]
    # when: the key is reset
    ratelimit.rate_limit_reset(key=key, rate=rate)
    # then: it admits its whole budget again; the neighbour is still refused
    assert [rate_limit_check(key=key, rate=rate).admitted for _ in range(4)] == [True, True, True, False]
    assert not rate_limit_check(key=neighbour, rate=rate).admitted


def unreachable_redis() -> redis.Redis:
    """A client of a Redis that is down: nothing listens on port 1. It raises ConnectionError at
    once (redis-py's default policy would retry three times with backoff first, seconds a call,
    to the same end)."""
    return redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))


def test_a_redis_outage_lets_requests_through(monkeypatch: Any, caplog: Any) -> None:
    unreachable = unreachable_redis()
    monkeypatch.setattr(ratelimit, "get_redis_connection", lambda alias: unreachable)
    with pytest.raises(redis.exceptions.ConnectionError):
        rate_limit_check(key="x", rate=Rate(limit=1, window_seconds=1))
    throttle = ratelimit.TenantRateThrottle()
    request = type("R", (), {"user": None, "resolver_match": None, "method": "GET", "path": "/api/v1/x"})()
    monkeypatch.setattr("apps.tenancy.permissions.request_tenant", lambda request: (1, "owner"))
    with caplog.at_level("WARNING", logger="darkroom.ratelimit"):
        assert throttle.allow_request(request, view=None)
    assert [r.getMessage() for r in caplog.records] == ["rate limiter unavailable; request let through"]
    # and the scrape says the limiter's counts are unavailable instead of failing (once the
    # process asks Redis again: within REDIS_SKIP_SECONDS of the failure it does not)
    assert list(ratelimit.collect_rate_limit_metrics()) == []
    redis_guard.forget()
    with caplog.at_level("WARNING", logger="darkroom.ratelimit"):
        assert list(ratelimit.collect_rate_limit_metrics()) == []
    assert caplog.records[-1].getMessage() == "rate limiter metrics unavailable (redis)"


def test_a_reset_during_a_redis_outage_is_logged_not_raised(monkeypatch: Any, caplog: Any) -> None:
    unreachable = unreachable_redis()
    monkeypatch.setattr(ratelimit, "get_redis_connection", lambda alias: unreachable)
    with caplog.at_level("WARNING", logger="darkroom.ratelimit"):
        ratelimit.rate_limit_reset(key="x", rate=Rate(limit=1, window_seconds=1))
    assert [r.getMessage() for r in caplog.records] == ["rate limiter unavailable; count not reset"]


def refusals_counted(limit: str) -> float | None:
    """darkroom_rate_limited_total{limit} as /metrics renders it (None: no such series)."""
    prefix = f'darkroom_rate_limited_total{{limit="{limit}"}} '
    found = [line for line in render().decode().splitlines() if line.startswith(prefix)]
    return float(found[0].removeprefix(prefix)) if found else None


@pytest.mark.django_db(transaction=True)
def test_an_api_caller_over_its_limit_gets_a_429_problem_and_writes_nothing(
    tenant_a: Any, tenant_b: Any, settings: Any
) -> None:
    # given: a limit of 3 a minute on the attendees endpoint
    settings.RATE_LIMIT_ENABLED = True
    settings.RATE_LIMITS = {"event-attendees": "3/min"}
    with tenant_context(tenant_a.org.pk):
        event = EventFactory(tenant=tenant_a.org)
    path = f"/api/v1/events/{event.pk}/attendees"
    api = tenant_a.client()
    assert [api.get(path).status_code for _ in range(3)] == [200, 200, 200]
    assert refusals_counted("event-attendees") == 0
    # when: the fourth request is a write
    refused = api.post(
        path, {"attendees": [{"email": "a@example.com"}]}, format="json", HTTP_IDEMPOTENCY_KEY="over-the-limit"
    )
    # then: 429 problem with Retry-After; no attendee, no stored key
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/problem+json"
    # (3 counted in this window: the next window admits once a third of it has passed, so the
    # wait is up to 60 s left of this window + 20 s of the next)
    assert 1 <= int(refused["Retry-After"]) <= 80
    assert refused.json()["status"] == 429
    # and counted under the endpoint's name, in Redis, where every web process's refusals add up
    assert refusals_counted("event-attendees") == 1
    assert refusals_counted("studio_login") == 0  # every limit is reported from 0
    with system_context("test"):
        assert not Attendee.objects.exists()
        assert not IdempotencyKey.objects.filter(key="over-the-limit").exists()
    # and another studio's caller has its own budget
    with tenant_context(tenant_b.org.pk):
        other_event = EventFactory(tenant=tenant_b.org)
    assert tenant_b.client().get(f"/api/v1/events/{other_event.pk}/attendees").status_code == 200


def test_a_typo_in_a_configured_rate_is_a_system_check_error(settings: Any) -> None:
    settings.RATE_LIMITS = {"event-attendees": "3 per minute"}
    errors = ratelimit.rate_limits_parse()
    assert [e.id for e in errors] == ["ops.E001"]


def test_a_rate_limit_for_a_name_no_api_endpoint_has_is_a_system_check_error(settings: Any) -> None:
    # given: an API endpoint's name, a typo, and the name of a page (the studio's sign-in), which
    # this limiter does not throttle
    settings.RATE_LIMITS = {"event-attendees": "3/min", "checkout-list": "120/min", "login": "5/min"}
    # when: the system checks run
    errors = ratelimit.rate_limits_parse()
    # then: the typo and the page are named (their limits would never apply); the endpoint passes
    assert [(e.id, e.msg.split(":")[0]) for e in errors] == [
        ("ops.E002", "DARKROOM_RATE_LIMITS[checkout-list]"),
        ("ops.E002", "DARKROOM_RATE_LIMITS[login]"),
    ]
