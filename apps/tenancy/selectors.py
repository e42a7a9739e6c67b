"""Reads of tenancy.

Those that resolve a credential to a tenant must look across tenants, so they run in the
(audited) system context; everything after them runs in the resolved tenant's context. The
studio-side reads of one tenant's API keys and members filter by `tenant_id` explicitly (defence in depth on
top of RLS); evaluate them inside that tenant's context.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.cache import cache
from django.db.models import QuerySet

from apps.tenancy.context import system_context
from apps.tenancy.keys import hash_api_key
from apps.tenancy.models import ApiKey, Membership, MembershipInvitation, Organization, User


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


def api_key_cache_key(key_hash: str) -> str:
    return f"apikey:v1:{key_hash}"


def api_key_resolve(*, raw_key: str) -> ResolvedApiKey | None:
    """The tenant an API key belongs to, or None if the key is unknown or revoked.

    Hits are cached in Redis for API_KEY_CACHE_SECONDS (keyed by the key's hash, never the
    secret), which spares every API request a database transaction. A resolution only ever adds
    an entry (`cache.add`), never overwrites one, and a committed revocation overwrites the entry
    with API_KEY_REVOKED (`api_key_revoke`, also the admin's): so a request that read the key as
    active just before the revocation committed cannot cache it again afterwards, and from the
    commit on the key is refused. Unknown keys are not cached, so a new key works immediately.
    """
    key_hash = hash_api_key(raw_key)
    cached = cache.get(api_key_cache_key(key_hash))
    if cached == API_KEY_REVOKED:
        return None
    if cached is not None:
        return ResolvedApiKey(api_key_id=cached[0], tenant_id=cached[1], name=cached[2])
    with system_context("api key authentication"):
        row = (
            ApiKey.objects.filter(key_hash=key_hash, revoked_at__isnull=True)
            .values_list("pk", "tenant_id", "name")
            .first()
        )
    if row is None:
        return None
    cache.add(api_key_cache_key(key_hash), list(row), timeout=API_KEY_CACHE_SECONDS)
    return ResolvedApiKey(api_key_id=row[0], tenant_id=row[1], name=row[2])


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
    page: the person invited is the only one who sees them outside the studio)."""
    with system_context("pending invitations of the signed-in user"):
        return list(
            MembershipInvitation.objects.filter(user=user).select_related("tenant").order_by("created_at", "id")
        )


def invitations_of_tenant(*, tenant_id: int) -> QuerySet[MembershipInvitation]:
    """The tenant's pending invitations with their users, oldest first."""
    return MembershipInvitation.objects.filter(tenant_id=tenant_id).select_related("user").order_by("created_at", "id")
