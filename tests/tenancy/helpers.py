"""Reads the membership tests share: a studio's members, pending invitations and audit rows."""

from __future__ import annotations

from apps.tenancy.context import tenant_context
from apps.tenancy.models import AuditLog, Membership, MembershipInvitation, Organization


def roles_of(org: Organization) -> dict[int, str]:
    """Member user id → role."""
    with tenant_context(org.pk):
        return dict(Membership.objects.filter(tenant=org).values_list("user_id", "role"))


def pending_of(org: Organization) -> dict[int, str]:
    """Invited (pending) user id → offered role."""
    with tenant_context(org.pk):
        return dict(MembershipInvitation.objects.filter(tenant=org).values_list("user_id", "role"))


def audits_of(org: Organization, action: str) -> list[AuditLog]:
    """The studio's audit rows of `action`, oldest first."""
    with tenant_context(org.pk):
        return list(AuditLog.objects.filter(tenant=org, action=action).order_by("id"))
