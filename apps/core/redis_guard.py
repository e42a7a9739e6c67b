"""Redis in a web process: after a call fails, skip Redis in this process for a short while.

In a web request Redis holds only what PostgreSQL can do without: rate-limit windows, the
API-key cache, de-duplication marks and metrics counters, each with a fallback (admit the
request, ask PostgreSQL, forget the mark, leave the figure out). A Redis that refuses
connections fails fast; one that accepts them and never answers (a partition) costs redis-py's
socket timeout (5 s) per call, so a page making several calls would wait for each. Hence: the
first failure (`redis_failed`) makes `redis_skipped()` true in this process for
`REDIS_SKIP_SECONDS` (10 s), and callers take their fallback at once without asking; the first
call after the window asks again. An outage costs a process about one timeout per window (more
only for threads already waiting on Redis when it failed).

The window belongs to the Redis that failed (the cache's LOCATION, or the broker's URL for the
scrape's queue depths): a process pointed at another one asks it. Failures are logged (WARNING,
with the component and the error's class) and counted
(`darkroom_redis_failures_total{component}`), skipped calls are counted
(`darkroom_redis_skipped_total{component}`), and `/metrics` says whether this process reaches
Redis (`darkroom_redis_up`, the alert's signal) through `redis_probe`, as `/readyz` does.

Not for the workers' Redis locks and broker: a task that cannot lock or publish fails and is
retried, which is what they need.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from django.conf import settings
from django.core.cache import cache
from django_redis.exceptions import ConnectionInterrupted
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from redis.exceptions import RedisError

from apps.ops.metrics import PROCESS_REGISTRY

logger = logging.getLogger("darkroom.redis")

# What an unreachable (or failing) Redis raises: redis-py's errors, which django-redis's cache
# re-raises or wraps in ConnectionInterrupted.
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, ConnectionInterrupted)
# Who asks Redis in a web request (the metric's `component` label, every one exported from 0).
REDIS_COMPONENTS = (
    "ratelimit",
    "api_key_cache",
    "order_lookup",
    "findme_count",
    "sandbox",
    "paypal_certs",
    "metrics",
    "broker",
    "health",
)
# A probe's PING waits at most this long: readiness and a scrape answer within it.
PROBE_TIMEOUT_SECONDS = 1.0

REDIS_FAILURES = Counter(
    "darkroom_redis_failures",
    "Redis calls of the web that failed, by component; PostgreSQL decided or the Redis-only part"
    " was skipped (see darkroom_redis_skipped_total).",
    ["component"],
    registry=PROCESS_REGISTRY,
)
REDIS_SKIPPED = Counter(
    "darkroom_redis_skipped",
    "Redis calls of the web not made, by component, because Redis failed within REDIS_SKIP_SECONDS.",
    ["component"],
    registry=PROCESS_REGISTRY,
)
for _component in REDIS_COMPONENTS:
    REDIS_FAILURES.labels(_component)
    REDIS_SKIPPED.labels(_component)

# Per Redis (its location) this process failed to reach: when (time.monotonic()) and why.
_failed: dict[str, tuple[float, str]] = {}


def _location(location: str | None) -> str:
    return location if location is not None else str(settings.CACHES["default"].get("LOCATION", ""))


def _failure(location: str | None = None) -> tuple[float, str] | None:
    """(seconds since, why) of this process's last failure to reach that Redis (default: the
    cache's), if within REDIS_SKIP_SECONDS."""
    failed = _failed.get(_location(location))
    if failed is None:
        return None
    ago = time.monotonic() - failed[0]
    return (ago, failed[1]) if ago < settings.REDIS_SKIP_SECONDS else None


def redis_skipped(component: str, *, location: str | None = None) -> bool:
    """Whether `component` should not ask Redis (the cache's, or the one at `location`) now: this
    process failed to reach it within REDIS_SKIP_SECONDS. A skipped call is counted."""
    if _failure(location) is None:
        return False
    REDIS_SKIPPED.labels(component).inc()
    return True


def redis_failed(component: str, error: BaseException, *, log: bool = True, location: str | None = None) -> None:
    """Record a failed Redis call of `component` (one of REDIS_COMPONENTS) to the cache's Redis
    (or the one at `location`): counted, logged at WARNING with the error's class unless the
    caller logs it itself (`log=False`), and that Redis skipped in this process for
    REDIS_SKIP_SECONDS."""
    _failed[_location(location)] = (time.monotonic(), f"{type(error).__name__}: {error}".strip())
    REDIS_FAILURES.labels(component).inc()
    if log:
        logger.warning(
            "redis unavailable; %s goes on without it for %s s",
            component,
            settings.REDIS_SKIP_SECONDS,
            extra={"component": component, "error_class": type(error).__name__},
        )


def redis_probe(component: str) -> str:
    """Why the cache's Redis is not reachable, or "" when it answers a PING within
    PROBE_TIMEOUT_SECONDS (a failure is recorded as `redis_failed`). Within REDIS_SKIP_SECONDS of
    a failure it does not ask: it says when and why Redis failed. Never raises."""
    failure = _failure()
    if failure is not None:
        REDIS_SKIPPED.labels(component).inc()
        skip = settings.REDIS_SKIP_SECONDS
        return f"failed {failure[0]:.0f} s ago (not asked again within {skip:g} s of a failure): {failure[1]}"
    try:
        pool = cache.client.get_client(write=True).connection_pool  # type: ignore[attr-defined]
        probe = pool.connection_class(
            **{
                **pool.connection_kwargs,
                "socket_timeout": PROBE_TIMEOUT_SECONDS,
                "socket_connect_timeout": PROBE_TIMEOUT_SECONDS,
            }
        )
        try:
            probe.connect()
            probe.send_command("PING")
            probe.read_response()
        finally:
            probe.disconnect()
    except Exception as error:  # noqa: BLE001 - a probe reports whatever stops it (a misconfigured cache too)
        redis_failed(component, error)
        return f"{type(error).__name__}: {error}".strip()
    return ""


def collect_redis_metrics() -> Iterable[Metric]:
    """darkroom_redis_up: 1 when this process reaches Redis (`redis_probe`), else 0."""
    yield GaugeMetricFamily(
        "darkroom_redis_up",
        "1 when this web process reaches Redis (a PING answered), 0 when it does not: the web then"
        " serves without it (rate limits off, PostgreSQL decides API keys) and the broker is down.",
        value=0 if redis_probe("metrics") else 1,
    )


def forget() -> None:
    """Forget the last failure (tests)."""
    _failed.clear()
