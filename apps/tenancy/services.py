"""Writes for tenancy: organizations, memberships, API keys, audit records."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from apps.core.request_context import get_request_id
from apps.tenancy.context import current_tenant_id, tenant_context
from apps.tenancy.models import ApiKey, AuditLog, Membership, Organization, User

API_KEY_PREFIX = "drk"


def audit_record(
    *,
    action: str,
    tenant_id: int | None = None,
    actor_user: User | None = None,
    actor_label: str = "",
    target_type: str = "",
    target_id: str = "",
    data: dict[str, Any] | None = None,
) -> AuditLog:
    """Append an audit row in the caller's transaction (or its own, in autocommit).

    `tenant_id` defaults to the current tenant context; None records a platform-level event.
    """
    if tenant_id is None:
        tenant_id = current_tenant_id()
    return AuditLog.objects.create(
        tenant_id=tenant_id,
        actor_user=actor_user if actor_user is not None and actor_user.is_authenticated else None,
        actor_label=actor_label or (actor_user.get_username() if actor_user is not None else ""),
        action=action,
        target_type=target_type,
        target_id=target_id,
        data=data or {},
        request_id=get_request_id() or "",
    )


def hash_api_key(raw_key: str) -> str:
    """API keys are 256-bit random secrets, so a plain SHA-256 is a safe, fast lookup hash."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    raw_key: str


def api_key_issue(*, tenant: Organization, name: str, actor: User | None = None) -> IssuedApiKey:
    """Create an API key for `tenant`. The raw key is returned once and never stored.

    Assumes no particular transaction; opens its own (key row + audit row commit together).
    """
    prefix = secrets.token_hex(4)
    raw_key = f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    with tenant_context(tenant.pk), transaction.atomic():
        api_key = ApiKey.objects.create(tenant=tenant, name=name, prefix=prefix, key_hash=hash_api_key(raw_key))
        audit_record(
            action="api_key.issue",
            tenant_id=tenant.pk,
            actor_user=actor,
            actor_label="" if actor else "cli",
            target_type="api_key",
            target_id=str(api_key.pk),
            data={"name": name, "prefix": prefix},
        )
    return IssuedApiKey(api_key=api_key, raw_key=raw_key)


def api_key_revoke(*, tenant: Organization, api_key_id: int, actor: User | None = None) -> None:
    """Revoke a key; it stops authenticating as soon as this commits (its cache entry goes too).

    Joins the caller's transaction if there is one. The cached resolution is dropped when the
    revocation commits (`on_commit`), not before: a request resolving the key in between would
    otherwise cache it again as active until the cache entry expired.
    """
    with tenant_context(tenant.pk), transaction.atomic():
        key_hash = ApiKey.objects.filter(pk=api_key_id).values_list("key_hash", flat=True).first()
        updated = ApiKey.objects.filter(pk=api_key_id, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if updated:
            audit_record(action="api_key.revoke", actor_user=actor, target_type="api_key", target_id=str(api_key_id))
        if key_hash:
            transaction.on_commit(partial(api_key_forget, key_hash=key_hash))


def api_key_forget(*, key_hash: str) -> None:
    """Drop a key's cached resolution (after a revocation or an admin edit)."""
    from apps.tenancy.selectors import api_key_cache_key

    cache.delete(api_key_cache_key(key_hash))


@transaction.atomic(durable=True)
def organization_create(*, slug: str, name: str, actor: User | None = None) -> Organization:
    """Create a tenant. Raises IntegrityError (caught by callers) when the slug is taken."""
    organization = Organization.objects.create(slug=slug, name=name)
    with tenant_context(organization.pk):
        audit_record(
            action="organization.create",
            actor_user=actor,
            actor_label="" if actor else "cli",
            target_type="organization",
            target_id=str(organization.pk),
            data={"slug": slug},
        )
    return organization


def membership_add(*, tenant: Organization, user: User, role: str) -> Membership:
    """Add (or update the role of) a member; assumes nothing about the caller's transaction."""
    with tenant_context(tenant.pk), transaction.atomic():
        membership, _ = Membership.objects.update_or_create(tenant=tenant, user=user, defaults={"role": role})
        audit_record(
            action="membership.set",
            target_type="user",
            target_id=str(user.pk),
            data={"role": role},
        )
    return membership
