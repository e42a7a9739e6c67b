"""Reads of tenancy.

Those that resolve a credential to a tenant must look across tenants, so they run in the
(audited) system context; everything after them runs in the resolved tenant's context. The
studio-side reads of one tenant's API keys and members filter by `tenant_id` explicitly (defence in depth on
top of RLS); evaluate them inside that tenant's context.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.core.cache import cache
from django.db.models import BooleanField, ExpressionWrapper, QuerySet
from django_redis.exceptions import ConnectionInterrupted
from prometheus_client import Counter

from apps.core.redis_guard import REDIS_ERRORS, redis_failed, redis_skipped
from apps.ops.metrics import PROCESS_REGISTRY
from apps.tenancy.context import system_context
from apps.tenancy.keys import hash_api_key
from apps.tenancy.models import (
    INVITATION_EXPIRED,
    INVITATION_PENDING,
    ApiKey,
    Membership,
    MembershipInvitation,
    Organization,
    User,
)


@dataclass(frozen=True)
class ResolvedApiKey:
    api_key_id: int
    tenant_id: int
    name: str


API_KEY_CACHE_SECONDS = 30
# What a revocation leaves in a key's cache entry, for longer than any request can take between
# reading the key and caching it (so the slowest of them cannot cache it as active again).
API_KEY_REVOKED = "revoked"
API_KEY_REVOKED_SECONDS = 24 * 60 * 60

API_KEY_CACHE_OPERATIONS = ("read", "write", "revoke")

logger = logging.getLogger("darkroom.tenancy.api_keys")

API_KEY_CACHE_FAILURES = Counter(
    "darkroom_api_key_cache_failures",
    "API-key cache (Redis) operations that failed, by operation: read (the key was resolved from"
    " PostgreSQL instead), write (a resolution or a revoked mark was not cached), revoke (a"
    " revocation's mark was not written at commit: its outbox message writes it).",
    ["operation"],
    registry=PROCESS_REGISTRY,
)
for _operation in API_KEY_CACHE_OPERATIONS:
    API_KEY_CACHE_FAILURES.labels(_operation)  # every operation exported from 0

# When this process last failed to reach the key cache (time.monotonic()), or None.
_cache_failed_at: float | None = None


def api_key_cache_key(key_hash: str) -> str:
    return f"apikey:v1:{key_hash}"


def api_key_cache_failed(operation: str, error: BaseException | None) -> None:
    """Log (WARNING, with the error's class) and count a failed key-cache operation, and stop
    reading the cache in this process for API_KEY_CACHE_SECONDS (see `api_key_resolve`).
    `operation` is one of API_KEY_CACHE_OPERATIONS; `error` is None for an operation not even
    tried, Redis having failed in this process within REDIS_SKIP_SECONDS (`apps.core.redis_guard`,
    which a failure here also starts)."""
    global _cache_failed_at
    _cache_failed_at = time.monotonic()
    API_KEY_CACHE_FAILURES.labels(operation).inc()
    if error is not None:
        redis_failed("api_key_cache", error, log=False)
    cause = error.__cause__ if isinstance(error, ConnectionInterrupted) and error.__cause__ else error
    logger.warning(
        "API key cache unavailable (redis); PostgreSQL decides",
        extra={
            "operation": operation,
            "error_class": type(cause).__name__ if cause is not None else "skipped",
            "error": str(cause)[:200] if cause is not None else "redis failed within REDIS_SKIP_SECONDS",
        },
    )


def _cache_distrusted() -> bool:
    """Whether this process failed to reach the key cache within the last API_KEY_CACHE_SECONDS:
    a revocation may then have committed without its revoked mark, and an "active" entry cached
    before it may still be in Redis (entries live API_KEY_CACHE_SECONDS at most)."""
    failed_at = _cache_failed_at
    return failed_at is not None and time.monotonic() - failed_at < API_KEY_CACHE_SECONDS


def api_key_resolve(*, raw_key: str) -> ResolvedApiKey | None:
    """The tenant an API key belongs to, or None if the key is unknown or revoked.

    Hits are cached in Redis for API_KEY_CACHE_SECONDS (keyed by the key's hash, never the
    secret), which spares every API request a database transaction. A resolution only ever adds
    an "active" entry (`cache.add`), never overwrites one, and a committed revocation overwrites the
    entry with API_KEY_REVOKED (`api_key_revoke`, also the admin's): so a request that read the key
    as active just before the revocation committed cannot cache it again afterwards, and from the
    commit on the key is refused. Unknown keys are not cached, so a new key works immediately.

    PostgreSQL is the source of truth, Redis only saves it work. When the cache cannot be read the
    key is resolved from PostgreSQL (a revoked key is refused) and nothing is cached; each failure
    is logged and counted (`api_key_cache_failed`). For API_KEY_CACHE_SECONDS after a failure this
    process does not read the cache at all (an outage then costs a timeout every 30 s, not every
    request, and a revocation in the meantime may have lost its mark, so a cached "active" entry is
    not to be trusted): it asks PostgreSQL, caches no active key, and writes the revoked mark of a
    revoked one over whatever entry Redis holds. The revocation's outbox message writes that mark
    too, for every process. While Redis is skipped after a failure of any of this process's Redis
    calls (`apps.core.redis_guard`), the key is resolved from PostgreSQL without asking Redis, and
    the cache is distrusted as after a failure of its own. Never raises for Redis.
    """
    global _cache_failed_at
    key_hash = hash_api_key(raw_key)
    cache_key = api_key_cache_key(key_hash)
    if redis_skipped("api_key_cache"):
        _cache_failed_at = time.monotonic()
        return _api_key_from_database(key_hash, cache_key=None)
    if _cache_distrusted():
        return _api_key_from_database(key_hash, cache_key=cache_key)
    try:
        cached = cache.get(cache_key)
    except REDIS_ERRORS as error:
        api_key_cache_failed("read", error)
        return _api_key_from_database(key_hash, cache_key=None)
    if cached == API_KEY_REVOKED:
        return None
    if cached is not None:
        return ResolvedApiKey(api_key_id=cached[0], tenant_id=cached[1], name=cached[2])
    return _api_key_from_database(key_hash, cache_key=cache_key)


def _api_key_from_database(key_hash: str, *, cache_key: str | None) -> ResolvedApiKey | None:
    """The key as PostgreSQL has it. With `cache_key`, a revoked key's mark is written (a mark is
    never wrong once the revocation committed) and an active key is added unless the cache is
    distrusted; a failed write is counted, never raised."""
    with system_context("api key authentication"):
        row = ApiKey.objects.filter(key_hash=key_hash).values_list("pk", "tenant_id", "name", "revoked_at").first()
    if row is None:
        return None
    api_key_id, tenant_id, name, revoked_at = row
    if cache_key is not None:
        try:
            if revoked_at is not None:
                cache.set(cache_key, API_KEY_REVOKED, timeout=API_KEY_REVOKED_SECONDS)
            elif not _cache_distrusted():
                cache.add(cache_key, [api_key_id, tenant_id, name], timeout=API_KEY_CACHE_SECONDS)
        except REDIS_ERRORS as error:
            api_key_cache_failed("write", error)
    if revoked_at is not None:
        return None
    return ResolvedApiKey(api_key_id=api_key_id, tenant_id=tenant_id, name=name)


def memberships_of_user(*, user: User) -> list[Membership]:
    """All memberships of a user across tenants (for session auth's tenant choice). Pending
    invitations are not memberships and are not among them."""
    with system_context("session tenant resolution"):
        return list(Membership.objects.filter(user=user).select_related("tenant").order_by("tenant_id"))


def organization_get(*, tenant_id: int) -> Organization:
    return Organization.objects.get(pk=tenant_id)


def api_keys_of_tenant(*, tenant_id: int) -> QuerySet[ApiKey]:
    """The tenant's API keys, revoked ones included, newest first (without their hashes)."""
    return ApiKey.objects.filter(tenant_id=tenant_id).defer("key_hash").order_by("-created_at", "-id")


def api_key_get(*, tenant_id: int, api_key_id: int) -> ApiKey | None:
    """One of the tenant's API keys, or None (also for another tenant's key: RLS hides it)."""
    return ApiKey.objects.filter(tenant_id=tenant_id, pk=api_key_id).first()


def members_of_tenant(*, tenant_id: int) -> QuerySet[Membership]:
    """The tenant's memberships with their users, longest-standing first."""
    return Membership.objects.filter(tenant_id=tenant_id).select_related("user").order_by("created_at", "id")


def member_get(*, tenant_id: int, user_id: int) -> Membership | None:
    """One member of the tenant by user id, or None (also for another tenant's member: RLS hides it)."""
    return Membership.objects.filter(tenant_id=tenant_id, user_id=user_id).select_related("user").first()


def invitations_of_user(*, user: User) -> list[MembershipInvitation]:
    """The user's pending invitations across studios, oldest first (for their own invitations
    page: the person invited is the only one who sees them outside the studio). Expired ones are
    not among them: they can no longer be answered."""
    with system_context("pending invitations of the signed-in user"):
        return list(
            MembershipInvitation.objects.filter(INVITATION_PENDING, user=user)
            .select_related("tenant")
            .order_by("created_at", "id")
        )


def invitations_of_tenant(*, tenant_id: int) -> QuerySet[MembershipInvitation]:
    """The tenant's invitations with their users, oldest first, pending and expired (each with
    `expired`, by the database's clock) until the cleanup deletes the expired ones."""
    return (
        MembershipInvitation.objects.filter(tenant_id=tenant_id)
        .select_related("user")
        .annotate(expired=ExpressionWrapper(INVITATION_EXPIRED, output_field=BooleanField()))
        .order_by("created_at", "id")
    )
