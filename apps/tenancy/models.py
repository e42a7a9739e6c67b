"""Tenants, users, memberships, pending membership invitations, API keys and the append-only
audit log.

Every tenant-owned table derives from `TenantModel` (column `tenant_id`) and gets row-level
security in its migration through `apps.tenancy.rls.EnableTenantRLS`;
`tests/tenancy/test_rls_catalog.py` fails for any table that forgets.
"""

from __future__ import annotations

import datetime as dt

import pgtrigger
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Now, Upper


class Organization(models.Model):
    """A studio: the tenant. Not itself tenant-scoped (it is the scope)."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.slug


class User(AbstractUser):
    """A person. Global; what they may see is decided by their memberships."""

    email = models.EmailField(unique=True)

    class Meta(AbstractUser.Meta):
        indexes = [
            # Sign-in by address and invitations match an account by its address in any case
            # (`email__iexact`, run as UPPER(email) = UPPER(...)).
            models.Index(Upper("email"), name="tenancy_user_email_upper"),
        ]


class TenantModel(models.Model):
    """Base for tenant-owned rows: `tenant_id` is what the RLS policy filters on."""

    tenant = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+")

    class Meta:
        abstract = True


class Membership(TenantModel):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        PHOTOGRAPHER = "photographer", "Photographer"
        STAFF = "staff", "Staff"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_tenant_user"),
            models.CheckConstraint(
                condition=models.Q(role__in=["owner", "photographer", "staff"]), name="membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.tenant_id}:{self.role}"


# What the database fills `MembershipInvitation.expires_at` with for a writer that does not name
# the column (the release before it, during a deploy): the default STUDIO_INVITATION_TTL_DAYS.
# The services always set it from the setting.
INVITATION_DEFAULT_TTL_DAYS = 14


class MembershipInvitation(TenantModel):
    """An invitation to a person (an account, made for it if the address had none), pending until
    that person accepts or declines it, or until `expires_at`.

    Not a membership: it grants nothing (every `Membership` query means "active member"), and it
    counts as no owner for the last-owner rule. `invited_by` is the name the e-mail and the
    invitee's page give for whoever invited (a person's name, or an API key's description).
    `email` is the address as the studio typed it (normalised), which the studio's lists show:
    the account's own spelling would tell whether the address had an account, and an address the
    account changed to since is not the studio's to see. The e-mail goes to the account's current
    address: the invitation is the person's, not the address's. `created_at` is
    when the address was first invited; `expires_at` is STUDIO_INVITATION_TTL_DAYS after it was
    last sent (inviting it again renews it). Expired (`INVITATION_EXPIRED`, by the database's
    clock) it can no longer be accepted; the studio still sees it until the cleanup deletes it.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="membership_invitations")
    role = models.CharField(max_length=20, choices=Membership.Role.choices)
    invited_by = models.CharField(max_length=400)
    email = models.EmailField(max_length=254, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_default=Now() + dt.timedelta(days=INVITATION_DEFAULT_TTL_DAYS))

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "user"], name="membership_invitation_unique_tenant_user"),
            models.CheckConstraint(
                condition=models.Q(role__in=["owner", "photographer", "staff"]), name="membership_invitation_role_valid"
            ),
        ]
        # The cleanup's scan (oldest expiry first); the invitee's and the studio's lists go by
        # user and tenant first.
        indexes = [models.Index(fields=["expires_at"], name="membership_invitation_expires")]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.tenant_id}:{self.role} (invited)"

    @property
    def invited_email(self) -> str:
        """The address the studio invited (a row made before it was kept and with no invitation
        audit row to restore it from, tenancy migration 0005: the account's)."""
        return self.email or self.user.email


# The one rule of expiry, in the database's clock (STATEMENT_TIMESTAMP()): every query that tells
# pending from expired invitations uses these, so the rule and its index hold in one place.
INVITATION_PENDING = models.Q(expires_at__gt=Now())
INVITATION_EXPIRED = models.Q(expires_at__lte=Now())


class ApiKey(TenantModel):
    """An integrator credential. Only a SHA-256 of the secret is stored; it is shown once."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class AuditLog(models.Model):
    """Who did what to which target, under which request. Append-only.

    UPDATE and DELETE are refused by a trigger and by revoked privileges of the runtime role.
    `tenant` is null for platform-level events (e.g. a process entering system context).
    """

    APPEND_ONLY = True

    tenant = models.ForeignKey(Organization, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    actor_user = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    actor_label = models.CharField(max_length=200, blank=True)
    action = models.CharField(max_length=100)
    target_type = models.CharField(max_length=100, blank=True)
    target_id = models.CharField(max_length=100, blank=True)
    data = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        triggers = [
            pgtrigger.Protect(name="auditlog_append_only", operation=pgtrigger.Update | pgtrigger.Delete),
        ]
        indexes = [models.Index(fields=["tenant", "created_at"], name="auditlog_tenant_created")]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type}:{self.target_id}"
