"""A distributed rate limiter in Redis: a sliding-window counter, one Lua call per request.

Each (tenant, caller, endpoint) has a counter per fixed window of `window` seconds; a request is
admitted when `previous window's count x the share of it still inside the sliding window +
this window's count + 1 <= limit` (Cloudflare's approximation of a true sliding log: O(1)
memory, within a few percent of exact). The script reads the clock from Redis (`TIME`), so web
hosts with skewed clocks share one window, checks and counts atomically, and answers how long
to wait. Its keys share a hash tag, so it runs unchanged on a Redis Cluster.

`TenantRateThrottle` applies it to every `TenantApi` view, before the Idempotency-Key protocol
opens its transaction: a refused request is a 429 problem with `Retry-After` and writes nothing.
A limit may also count only some outcomes: look first without counting (`count=False`) and
count the ones that matter (webhook refusals), or count every attempt up front and forget a
key's count when an attempt turns out not to matter (`rate_limit_reset`: the studio sign-in
clears a username's failed attempts when one succeeds).
Limits: `RATE_LIMIT_DEFAULT` for every endpoint, `RATE_LIMITS` per URL name. If Redis is
unreachable the limiter lets requests through (logged): it protects capacity, it does not
decide correctness. After a failure it does not ask Redis for REDIS_SKIP_SECONDS
(`apps.core.redis_guard`), so a Redis that never answers costs one socket timeout per window, not
one per limit checked.

Refusals are counted per limit in a Redis hash (`darkroom_rate_limited_total{limit}` at
/metrics, every limit from 0), so every web process's refusals add up in one scrape; a
process-local counter would show only the scraped process's own.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.checks import Error, register
from django.urls import URLPattern, URLResolver, get_resolver
from django_redis import get_redis_connection
from prometheus_client.core import CounterMetricFamily, Metric
from redis.exceptions import RedisError
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from apps.core.redis_guard import redis_failed, redis_skipped

logger = logging.getLogger("darkroom.ratelimit")

REFUSED_COUNTER_KEY = "ratelimit:refused_total"  # a Redis hash: limit name -> requests refused

# KEYS[1]: the limit's base key (with a hash tag). ARGV: limit, window in ms, and "0" to only
# look (admit or refuse without counting) or "1" to count an admitted request.
# Returns {admitted (0/1), wait in ms until a request would be admitted, remaining}.
SLIDING_WINDOW_LUA = """
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local start = now - (now % window)
local elapsed = now - start
local current_key = KEYS[1] .. ':' .. start
local current = tonumber(redis.call('GET', current_key) or '0')
local previous = tonumber(redis.call('GET', KEYS[1] .. ':' .. (start - window)) or '0')
local weighted = previous * (window - elapsed) / window + current
if weighted + 1 <= limit then
  if ARGV[3] ~= '0' then
    redis.call('INCR', current_key)
    redis.call('PEXPIRE', current_key, window * 2)
  end
  return {1, 0, math.floor(limit - weighted - 1)}
end
local wait
if current + 1 <= limit and previous > 0 then
  -- this window's count fits once enough of the previous window has slid out
  wait = math.ceil((window - elapsed) - (limit - current - 1) * window / previous)
else
  -- only the next window can admit it, once enough of this one has slid out
  local into_next = 0
  if current > 0 then into_next = math.ceil(window * (1 - (limit - 1) / current)) end
  wait = (window - elapsed) + math.max(0, into_next)
end
return {0, math.max(1, wait), 0}
"""

# KEYS[1]: the limit's base key. ARGV: window in ms. Deletes the two windows the sliding count
# reads (this one and the previous one), by the same Redis clock. Returns how many existed.
RESET_LUA = """
local window = tonumber(ARGV[1])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local start = now - (now % window)
return redis.call('DEL', KEYS[1] .. ':' .. start, KEYS[1] .. ':' .. (start - window))
"""

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


@dataclass(frozen=True)
class Rate:
    limit: int
    window_seconds: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        """ "600/min", "20/s", "1000/10s", "5000/hour". Raises ValueError."""
        match = _RATE.match(text)
        if not match or int(match.group(1)) < 1:
            raise ValueError(f"not a rate: {text!r} (expected e.g. '600/min' or '20/s')")
        count = int(match.group(2) or 1)
        return cls(limit=int(match.group(1)), window_seconds=count * _UNIT_SECONDS[match.group(3)])


@dataclass(frozen=True)
class Decision:
    admitted: bool
    retry_after_seconds: int  # 0 when admitted
    remaining: int


def _redis_key(name: str) -> str:
    """`name` under the cache's key prefix (per environment and test run)."""
    return f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:{name}"


def _base_key(key: str) -> str:
    return _redis_key(f"ratelimit:{{{key}}}")


def rate_limit_check(*, key: str, rate: Rate, count: bool = True) -> Decision:
    """Count one request against `key` under `rate`, atomically (with `count=False`, only say
    whether one more would be admitted). Raises RedisError."""
    client = get_redis_connection("default")
    script = client.register_script(SLIDING_WINDOW_LUA)
    admitted, wait_ms, remaining = script(
        keys=[_base_key(key)], args=[rate.limit, rate.window_seconds * 1000, "1" if count else "0"]
    )
    return Decision(
        admitted=bool(admitted),
        retry_after_seconds=0 if admitted else max(1, math.ceil(int(wait_ms) / 1000)),
        remaining=int(remaining),
    )


def rate_limit_wait(*, key: str, rate: Rate, limit: str, count: bool = True) -> int:
    """Count one request against `key`: 0 when admitted, else the seconds to wait (with
    `count=False`, only look: for limits that count failures, checked before the work). Fails
    open: an unreachable Redis admits the request (logged). A refusal is counted under `limit`
    (the limit's name: an API URL name or a page rate setting's) in `darkroom_rate_limited_total`."""
    if redis_skipped("ratelimit"):
        return 0
    try:
        decision = rate_limit_check(key=key, rate=rate, count=count)
    except RedisError as error:
        logger.warning("rate limiter unavailable; request let through", extra={"key": key}, exc_info=True)
        redis_failed("ratelimit", error, log=False)
        return 0
    if decision.admitted:
        return 0
    _count_refusal(limit)
    return decision.retry_after_seconds


def _count_refusal(limit: str) -> None:
    """One more refusal under `limit` (refusals only, so no cost on admitted requests). A lost
    count is a lost metric, never a wrong answer: Redis errors are logged, not raised."""
    if redis_skipped("ratelimit"):
        return
    try:
        get_redis_connection("default").hincrby(_redis_key(REFUSED_COUNTER_KEY), limit, 1)
    except RedisError as error:
        logger.warning("rate limiter refusal not counted (redis)", extra={"limit": limit}, exc_info=True)
        redis_failed("ratelimit", error, log=False)


def rate_limit_names() -> set[str]:
    """Every limit a refusal can be counted under: the throttled API endpoints' URL names and
    the pages' rate settings (as `page_limit_name` spells them)."""
    api = _throttled_url_names(get_resolver().url_patterns)
    return api | {page_limit_name(setting) for setting in PAGE_RATE_SETTINGS}


def page_limit_name(setting: str) -> str:
    """The metric's name of a page limit: its setting without `_RATE`, in lower case
    (STUDIO_LOGIN_RATE: studio_login)."""
    return setting.removesuffix("_RATE").lower()


def collect_rate_limit_metrics() -> Iterator[Metric]:
    """darkroom_rate_limited_total{limit}: requests refused per limit, every known limit from 0
    (so a first refusal is an increase), plus any other name Redis holds."""
    if redis_skipped("metrics"):
        return
    try:
        raw = get_redis_connection("default").hgetall(_redis_key(REFUSED_COUNTER_KEY))
    except RedisError as error:
        logger.warning("rate limiter metrics unavailable (redis)", exc_info=True)
        redis_failed("metrics", error, log=False)
        return
    refused = {name.decode(): int(value) for name, value in raw.items()}
    family = CounterMetricFamily(
        "darkroom_rate_limited", "Requests refused by the rate limiter (429), per limit.", labels=["limit"]
    )
    for name in sorted(rate_limit_names() | set(refused)):
        family.add_metric([name], refused.get(name, 0))
    yield family


def rate_limit_reset(*, key: str, rate: Rate) -> None:
    """Forget every request counted against `key` under `rate`: the next one starts a fresh
    budget. Fails open like the check: an unreachable Redis leaves the count (logged,
    logged)."""
    if redis_skipped("ratelimit"):
        return
    try:
        client = get_redis_connection("default")
        client.register_script(RESET_LUA)(keys=[_base_key(key)], args=[rate.window_seconds * 1000])
    except RedisError as error:
        logger.warning("rate limiter unavailable; count not reset", extra={"key": key}, exc_info=True)
        redis_failed("ratelimit", error, log=False)


def setting_rate_reset(key: str, setting: str) -> None:
    """`rate_limit_reset` of `key` under the rate named by a setting (nothing when
    RATE_LIMIT_ENABLED is off)."""
    if settings.RATE_LIMIT_ENABLED:
        rate_limit_reset(key=key, rate=Rate.parse(str(getattr(settings, setting))))


def setting_rate_wait(*checks: tuple[str, str], count: bool = True) -> int:
    """Count one request against each (key, name of a rate setting, e.g. "ATTENDEE_PAGE_RATE"):
    0 when every limit admits it (or RATE_LIMIT_ENABLED is off), else the seconds to wait before
    the longest-refusing one would (with `count=False`, only look, as `rate_limit_wait`). For the
    web pages' own limits."""
    if not settings.RATE_LIMIT_ENABLED:
        return 0
    return max(
        rate_limit_wait(
            key=key, rate=Rate.parse(str(getattr(settings, name))), limit=page_limit_name(name), count=count
        )
        for key, name in checks
    )


def rate_for(url_name: str | None) -> Rate:
    return Rate.parse(settings.RATE_LIMITS.get(url_name or "", settings.RATE_LIMIT_DEFAULT))


def disable_for_benchmark() -> None:
    """Benchmarks and load tests drive all their load through one API key, which the per-caller
    limit exists to stop: the servers they spawn run without it (this process's own settings
    are left alone; its benchmarks call services, not the API)."""
    os.environ["DARKROOM_RATE_LIMIT_ENABLED"] = "false"


class TenantRateThrottle(BaseThrottle):
    """DRF throttle keyed by tenant + caller + endpoint (the URL pattern; its methods share it)."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        if not settings.RATE_LIMIT_ENABLED:
            return True
        from apps.tenancy.permissions import request_tenant

        tenant_id, _ = request_tenant(request)
        user = request.user
        api_key = getattr(user, "api_key", None)
        caller = f"k{api_key.api_key_id}" if api_key is not None else f"u{getattr(user, 'pk', None) or 'anon'}"
        match = request.resolver_match
        endpoint = match.route if match else request.path
        key = f"t{tenant_id}:{caller}:{endpoint}"
        url_name = match.url_name if match else None
        wait = rate_limit_wait(key=key, rate=rate_for(url_name), limit=url_name or "unnamed")
        if not wait:
            return True
        self._wait = wait
        return False

    def wait(self) -> float | None:
        return self._wait


# The web pages' and webhooks' own rates (settings names; env variables add `DARKROOM_`).
PAGE_RATE_SETTINGS = (
    "WEBHOOK_REFUSAL_RATE",
    "DROPIN_SELFIE_PAGE_RATE",
    "ATTENDEE_PAGE_RATE",
    "SHOP_ACCESS_CODE_RATE",
    "SHOP_ACCESS_CODE_EVENT_RATE",
    "SHOP_CHECKOUT_ADDRESS_RATE",
    "SHOP_CHECKOUT_SESSION_RATE",
    "SHOP_FINDME_SESSION_RATE",
    "SHOP_FINDME_ADDRESS_RATE",
    "SHOP_ORDER_LOOKUP_ADDRESS_RATE",
    "SHOP_ORDER_LOOKUP_EMAIL_RATE",
    "STUDIO_LOGIN_RATE",
    "STUDIO_LOGIN_ADDRESS_RATE",
    "STUDIO_PASSWORD_RESET_EMAIL_RATE",
    "STUDIO_PASSWORD_RESET_ADDRESS_RATE",
)


@register()
def rate_limits_parse(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Every configured rate must parse (a typo would otherwise be a 500 on the first request), and
    every URL name DARKROOM_RATE_LIMITS names must exist (a typo would otherwise be ignored)."""
    configured = {"DARKROOM_RATE_LIMIT_DEFAULT": settings.RATE_LIMIT_DEFAULT}
    configured.update({f"DARKROOM_RATE_LIMITS[{name}]": rate for name, rate in settings.RATE_LIMITS.items()})
    configured.update({f"DARKROOM_{name}": getattr(settings, name) for name in PAGE_RATE_SETTINGS})
    errors = []
    for where, text in configured.items():
        try:
            Rate.parse(str(text))
        except ValueError as exc:
            errors.append(Error(f"{where}: {exc}", id="ops.E001"))
    known = _throttled_url_names(get_resolver().url_patterns)
    for name in sorted(set(settings.RATE_LIMITS) - known):
        errors.append(
            Error(
                f"DARKROOM_RATE_LIMITS[{name}]: no API endpoint is named {name!r}, so this limit would never apply",
                hint=(
                    "Use the URL name of an API endpoint (e.g. checkout-create), without a namespace; the pages"
                    " have their own rate settings (DARKROOM_STUDIO_LOGIN_RATE, ...)."
                ),
                id="ops.E002",
            )
        )
    return errors


def _throttled_url_names(patterns: Iterable[URLPattern | URLResolver]) -> set[str]:
    """The URL names, in `patterns` and the URLconfs they include, of the views this limiter
    throttles (API views with TenantRateThrottle), without namespaces: the throttle looks limits
    up by `resolver_match.url_name`."""
    names: set[str] = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            names |= _throttled_url_names(pattern.url_patterns)
        elif pattern.name and TenantRateThrottle in getattr(
            getattr(pattern.callback, "cls", None), "throttle_classes", ()
        ):
            names.add(pattern.name)
    return names
