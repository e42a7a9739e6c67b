"""Writes for tenancy: organizations, memberships, API keys, audit records.

`hash_api_key` lives in `apps.tenancy.keys` (re-exported here): the API's authentication imports
the selectors, which must not import this module, since it imports the problem types and with
them DRF's views, which load the authentication classes.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from apps.core.problems import DomainError, InvalidInput, NotFound
from apps.core.request_context import get_request_id
from apps.core.text import title_problem
from apps.tenancy.context import current_tenant_id, tenant_context
from apps.tenancy.keys import hash_api_key
from apps.tenancy.models import (
    INVITATION_EXPIRED,
    ApiKey,
    AuditLog,
    Membership,
    MembershipInvitation,
    Organization,
    User,
)

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


@dataclass(frozen=True)
class IssuedApiKey:
    api_key: ApiKey
    raw_key: str


API_KEY_NAME_MAX_LENGTH = 100


def api_key_issue(*, tenant: Organization, name: str, actor: User | None = None) -> IssuedApiKey:
    """Create an API key for `tenant`. The raw key is returned once and never stored.

    Assumes no particular transaction; opens its own (key row + audit row commit together).
    Raises InvalidInput for a name breaking the rule of titles (`title_problem`: the keys list
    and the revoke page show it, so no control character or direction override may disguise it).
    """
    if problem := title_problem(name, max_length=API_KEY_NAME_MAX_LENGTH):
        raise InvalidInput(f"Not a key name: {problem}", extra={"errors": {"name": [problem]}})
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


# A revocation's outbox message and its consumer (tasks/tenancy.py), which writes the revoked mark.
TOPIC_API_KEY_REVOKED = "tenancy.api_key_revoked"
API_KEY_REVOKED_CONSUMER = "tenancy.mark_api_key_revoked"


def api_key_revoke(*, tenant: Organization, api_key_id: int, actor: User | None = None) -> bool:
    """Revoke a key; it stops authenticating as soon as this commits (its cache entry says so).
    Returns True if this call revoked it (False: revoked already, or no such key; nothing audited).

    Joins the caller's transaction if there is one. The cached resolution is overwritten with the
    revoked mark when the revocation commits (`on_commit`), not before, and resolutions never
    overwrite an entry: a request that read the key as active before the commit cannot cache it
    again afterwards (see `api_key_resolve`). The mark is durable: a `tenancy.api_key_revoked`
    outbox message, committed with the revocation, writes it again (`api_key_revoked_mark`), so a
    mark lost to an unreachable Redis at commit is written once Redis is back, over any "active"
    entry cached before the revocation.
    """
    from apps.outbox.services import outbox_publish  # it imports this module (audit_record)

    with tenant_context(tenant.pk), transaction.atomic():
        key_hash = ApiKey.objects.filter(pk=api_key_id).values_list("key_hash", flat=True).first()
        updated = ApiKey.objects.filter(pk=api_key_id, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if updated:
            audit_record(action="api_key.revoke", actor_user=actor, target_type="api_key", target_id=str(api_key_id))
            outbox_publish(
                topic=TOPIC_API_KEY_REVOKED,
                tenant_id=tenant.pk,
                aggregate_type="api_key",
                aggregate_id=api_key_id,
                payload={"api_key_id": api_key_id},
            )
        if key_hash:
            transaction.on_commit(partial(api_key_forget, key_hash=key_hash))
    return bool(updated)


def api_key_forget(*, key_hash: str) -> None:
    """Replace a key's cached resolution with the revoked mark (after its revocation committed).

    Best effort: the revocation has committed, so an unreachable Redis is logged and counted
    (`revoke`), not raised, and not even asked while this process skips it after a failure
    (`apps.core.redis_guard`); the revocation's outbox message writes the mark later."""
    from apps.core.redis_guard import REDIS_ERRORS, redis_skipped
    from apps.tenancy.selectors import api_key_cache_failed

    if redis_skipped("api_key_cache"):
        api_key_cache_failed("revoke", None)
        return
    try:
        _api_key_mark_revoked(key_hash)
    except REDIS_ERRORS as error:
        api_key_cache_failed("revoke", error)


def api_key_revoked_mark(*, api_key_id: int) -> bool:
    """Write the revoked mark of a revoked key (the `tenancy.api_key_revoked` consumer). Returns
    False when there is nothing to mark: no such key in the current tenant context, or not revoked.

    Idempotent. Runs in the key's tenant context, outside any transaction. Raises the cache's
    errors (REDIS_ERRORS) so the task is retried until Redis is reachable."""
    key_hash = ApiKey.objects.filter(pk=api_key_id, revoked_at__isnull=False).values_list("key_hash", flat=True).first()
    if key_hash is None:
        return False
    _api_key_mark_revoked(key_hash)
    return True


def _api_key_mark_revoked(key_hash: str) -> None:
    from apps.tenancy.selectors import API_KEY_REVOKED, API_KEY_REVOKED_SECONDS, api_key_cache_key

    cache.set(api_key_cache_key(key_hash), API_KEY_REVOKED, timeout=API_KEY_REVOKED_SECONDS)


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


ORGANIZATION_NAME_MAX_LENGTH = 200


def organization_rename(*, tenant_id: int, name: str, actor: User) -> Organization:
    """An owner renames their studio (shop pages, e-mails and the dashboard show the name; the
    slug, in every link already sent, stays). Joins the caller's transaction; locks the row;
    audited (`organization.rename`, old and new name) only when the name changes. Raises
    InvalidInput for an empty name, one over 200 characters, or one with control characters."""
    name = name.strip()
    if problem := title_problem(name, max_length=ORGANIZATION_NAME_MAX_LENGTH):
        raise InvalidInput(f"Not a studio name: {problem}", extra={"errors": {"name": [problem]}})
    with tenant_context(tenant_id), transaction.atomic():
        organization = Organization.objects.select_for_update().get(pk=tenant_id)
        if organization.name == name:
            return organization
        previous, organization.name = organization.name, name
        organization.save(update_fields=["name"])
        audit_record(
            action="organization.rename",
            actor_user=actor,
            actor_label=f"user:{actor.pk}",
            target_type="organization",
            target_id=str(tenant_id),
            data={"from": previous, "to": name},
        )
    return organization


def membership_add(*, tenant: Organization, user: User, role: str) -> Membership:
    """Add (or update the role of) a member; assumes nothing about the caller's transaction.

    For platform operators (CLI, admin, seed commands): the person is a member at once, so a
    pending invitation of theirs to this studio has nothing left to ask and goes. Takes the
    owners' lock before counting them, as `member_role_set` does, so adding the last owner again
    with another role is refused, even racing another change. Raises LastOwnerRequired.
    """
    with tenant_context(tenant.pk), transaction.atomic():
        owners = _owners_lock(tenant_id=tenant.pk, actor=None)
        if role != OWNER_ROLE and any(owner.user_id == user.pk for owner in owners):
            _keeps_an_owner(owners=owners, user_id=user.pk, studio=tenant.name)
        membership, _ = Membership.objects.update_or_create(tenant=tenant, user=user, defaults={"role": role})
        MembershipInvitation.objects.filter(tenant=tenant, user=user).delete()
        audit_record(
            action="membership.set",
            target_type="user",
            target_id=str(user.pk),
            data={"role": role},
        )
    return membership


# --- studio members (managed by the studio's owners) ----------------------------------------


class LastOwnerRequired(DomainError):
    """The change would leave the studio without an owner (nobody could manage it any more)."""

    status_code = 409
    slug = "last-owner"
    title = "A studio needs an owner"
    what_to_do = "Make another member an owner first, then change or remove this one. Nothing was changed."


class NotAnOwner(DomainError):
    """The acting user is no longer an owner of the studio (demoted or removed meanwhile)."""

    status_code = 403
    slug = "not-an-owner"
    title = "Not an owner"
    when_it_happens = (
        "Someone who is no longer an owner of the studio (given another role, or removed, since they opened "
        "the page) tried to manage its members. Nothing was changed."
    )
    what_to_do = "Ask one of the studio's owners to make the change."


class OwnerRoleReserved(DomainError):
    """The caller may manage members but not owners: API keys neither make, demote nor remove an
    owner (else a leaked key could make itself a person with an owner's sign-in, who mints keys)."""

    status_code = 403
    slug = "owner-role-reserved"
    title = "Only owners change owners"
    when_it_happens = (
        "An API key tried to make, change or remove a studio owner, or to send, renew or withdraw an "
        "invitation to be one. Keys manage the other members only, so that a leaked key cannot make its "
        "holder an owner. Nothing was changed."
    )
    what_to_do = "An owner makes that change, signed in, on the studio's members page."


class MemberNotFound(NotFound):
    """The request names a user who is not a member of this studio (members of other studios
    are answered the same way)."""

    slug = "member-not-found"
    title = "Member not found"
    what_to_do = "Check the user's id: GET /api/v1/tenancy/members lists the studio's members."


class InvitationNotFound(NotFound):
    """The request names an invitation this studio does not have: never made, answered or
    withdrawn since, or another studio's (answered the same way)."""

    slug = "invitation-not-found"
    title = "Invitation not found"
    what_to_do = "Check the invitation's id: GET /api/v1/tenancy/invitations lists the studio's open invitations."


class InvitationExpired(DomainError):
    """The invitation is past its `expires_at`: it grants nothing any more; the studio may send it
    again (which renews it)."""

    status_code = 410
    slug = "invitation-expired"
    title = "Invitation expired"
    when_it_happens = "An invitation past its expiry date was accepted: it no longer grants anything."
    what_to_do = (
        "Ask the studio to send the invitation again, which renews it (POST "
        "/api/v1/tenancy/invitations/{id}/renew), and accept the new one."
    )


class InvitationChanged(DomainError):
    """The studio changed the invitation's role after the person saw it: accepting would grant a
    role they did not agree to."""

    status_code = 409
    slug = "invitation-changed"
    title = "The invitation changed"
    what_to_do = "Open the invitation again, read the role it offers now, and accept it if you agree."


OWNER_ROLE = Membership.Role.OWNER.value
_USERNAME_ILLEGAL = re.compile(r"[^\w.@+-]")
_USERNAME_MAX = 150
_USER_CREATE_ATTEMPTS = 5


def _owners_lock(*, tenant_id: int, actor: User | None) -> list[Membership]:
    """Lock the studio's owner memberships (SELECT ... FOR UPDATE, ordered by pk) and return them.

    Assumes a transaction in the tenant's context. Every membership change takes this lock
    before it counts owners, so two changes that could each remove an owner serialise: the
    second waits for the first to commit and then counts the owners it left (PostgreSQL
    re-checks `role = 'owner'` on rows changed meanwhile). Raises NotAnOwner when `actor` is
    given and is not among them (the role the page was opened with may be stale by now).
    """
    owners = list(Membership.objects.select_for_update().filter(tenant_id=tenant_id, role=OWNER_ROLE).order_by("pk"))
    if actor is not None and all(owner.user_id != actor.pk for owner in owners):
        raise NotAnOwner("Only the studio's owners manage its members, and you are not an owner of it (any more).")
    return owners


def _keeps_an_owner(*, owners: list[Membership], user_id: int, studio: str) -> None:
    """Raises LastOwnerRequired unless an owner other than `user_id` remains."""
    if all(owner.user_id == user_id for owner in owners):
        raise LastOwnerRequired(
            f"{studio} would be left without an owner. Make another member an owner first, then change or "
            "remove this one."
        )


def _check_owner_change(*, allowed: bool, previous_role: str | None, role: str | None) -> None:
    """Raises OwnerRoleReserved when a caller without the right (`allowed` False) would grant the
    owner role (`role`) or take it away (`previous_role` owner, `role` another or None: removal)."""
    if allowed or (role != OWNER_ROLE and previous_role != OWNER_ROLE) or previous_role == role:
        return
    raise OwnerRoleReserved(
        "An API key cannot make, change or remove a studio owner; an owner does that on the studio's members page."
    )


def _check_role(role: str) -> None:
    if role not in Membership.Role.values:
        allowed = ", ".join(Membership.Role.values)
        raise InvalidInput(
            f"Unknown role {role!r}; one of {allowed}.", extra={"errors": {"role": [f"One of {allowed}."]}}
        )


def _username_candidates(email: str) -> list[str]:
    base = _USERNAME_ILLEGAL.sub("", email.split("@", 1)[0].lower())[: _USERNAME_MAX - 8] or "member"
    similar = User.objects.filter(username__istartswith=base).values_list("username", flat=True)
    taken = {name.lower() for name in similar}
    first = next(
        (candidate for candidate in (base, *(f"{base}{n}" for n in range(2, 100))) if candidate not in taken),
        f"{base}-{secrets.token_hex(3)}",
    )
    return [first, *(f"{base}-{secrets.token_hex(3)}" for _ in range(_USER_CREATE_ATTEMPTS - 1))]


def _user_for_email(email: str) -> tuple[User, bool]:
    """The user with this e-mail address (case-insensitive), or a new one without a usable
    password and a free username made from the address. Assumes a transaction.

    A concurrent creation of the same address or username surfaces as an IntegrityError in a
    savepoint: the address is then looked up again (the other transaction committed), or the
    next username tried.
    """
    for username in _username_candidates(email):
        existing = User.objects.filter(email__iexact=email).order_by("pk").first()
        if existing is not None:
            return existing, False
        try:
            with transaction.atomic():
                user = User(username=username, email=email)
                user.set_unusable_password()
                user.save()
            return user, True
        except IntegrityError:
            continue
    raise IntegrityError(f"no free username for {email!r} after {_USER_CREATE_ATTEMPTS} attempts")


@dataclass(frozen=True)
class MemberInvited:
    """What `member_invite` did: updated a member's role (`membership`), or, for anyone who is
    not a member yet, left a pending invitation (`invitation`) for them to accept. Exactly one of
    the two is set. `created_user`: the address had no account, and one (without a password) was
    made for the invitation."""

    user: User
    created_user: bool
    membership: Membership | None = None
    invitation: MembershipInvitation | None = None

    @property
    def pending(self) -> bool:
        return self.invitation is not None

    @property
    def role(self) -> str:
        row = self.invitation if self.invitation is not None else self.membership
        assert row is not None
        return row.role


def person_name(user: User) -> str:
    """How an invitation names the person who sent it."""
    return user.get_full_name() or user.get_username()


def member_invite(
    *,
    tenant: Organization,
    email: str,
    role: str,
    actor: User | None,
    actor_label: str = "",
    invited_by: str = "",
    may_change_owners: bool = True,
) -> MemberInvited:
    """Invite the person with `email` to `tenant` with `role`.

    * An existing member: gets the role (as `membership_add` does), unless that would leave the
      studio without an owner.
    * Anyone else: nothing is granted. A pending `MembershipInvitation` is made (or, inviting
      again, given the new role and renewed, an expired one included), valid for
      STUDIO_INVITATION_TTL_DAYS; its person accepts or declines it after signing in
      (`membership_invitation_accept` / `_decline`). No one joins a studio without consenting.
      An address without an account gets one first (without a usable password: its e-mail links
      to choosing one), so the caller cannot tell from the outcome whether the address had an
      account.

    Joins the caller's transaction; takes the owners' lock (`_owners_lock`). Sends nothing: the
    caller e-mails the invitation after the commit, or queues it with
    `apps.tenancy.invitations.member_invitation_create`. `invited_by` is the name a pending
    invitation shows for the inviter (default: the actor's name, else `actor_label`).
    Raises InvalidInput (address, role), NotAnOwner, LastOwnerRequired, and OwnerRoleReserved
    (`may_change_owners` False, as for API keys: the owner role granted, offered or taken away).
    `actor` None: an API key or a platform operator (no owner check; `actor_label` names them in
    the audit row).
    """
    email = User.objects.normalize_email(email.strip())
    try:
        validate_email(email)
    except ValidationError as exc:
        raise InvalidInput(f"Not an e-mail address: {email!r}.", extra={"errors": {"email": exc.messages}}) from exc
    _check_role(role)
    with tenant_context(tenant.pk), transaction.atomic():
        owners = _owners_lock(tenant_id=tenant.pk, actor=actor)
        user, created_user = _user_for_email(email)
        return _person_invite(
            tenant=tenant,
            owners=owners,
            user=user,
            created_user=created_user,
            email=email,
            role=role,
            actor=actor,
            actor_label=actor_label,
            invited_by=invited_by,
            may_change_owners=may_change_owners,
        )


def _person_invite(
    *,
    tenant: Organization,
    owners: list[Membership],
    user: User,
    created_user: bool,
    email: str,
    role: str,
    actor: User | None,
    actor_label: str,
    invited_by: str,
    may_change_owners: bool,
    renewal: bool = False,
) -> MemberInvited:
    """`member_invite` once its person is known: give the member `role`, or put their pending
    invitation (`email`: the address as the studio typed it); audited `membership.invite`, whose
    `email` is the typed address (a `renewal` adds the account's current one, `sent_to`).
    Assumes a transaction in the tenant's context, under the owners' lock (`owners`). Raises
    LastOwnerRequired and OwnerRoleReserved."""
    membership = Membership.objects.select_for_update().filter(tenant=tenant, user=user).first()
    audit_data: dict[str, Any] = {"email": email, "role": role, "user_created": created_user}
    if membership is None:
        invitation = _invitation_put(
            tenant=tenant,
            user=user,
            email=email,
            role=role,
            invited_by=invited_by or (person_name(actor) if actor is not None else actor_label),
            may_change_owners=may_change_owners,
        )
        result = MemberInvited(user=user, created_user=created_user, invitation=invitation)
        audit_data |= {"previous_role": None, "pending": True}
        if renewal:
            audit_data |= {"renewal": True, "sent_to": user.email}
    else:
        previous_role = membership.role
        _check_owner_change(allowed=may_change_owners, previous_role=previous_role, role=role)
        if membership.role != role:
            if membership.role == OWNER_ROLE:
                _keeps_an_owner(owners=owners, user_id=user.pk, studio=tenant.name)
            membership.role = role
            membership.save(update_fields=["role"])
        result = MemberInvited(user=user, created_user=created_user, membership=membership)
        audit_data["previous_role"] = previous_role
    audit_record(
        action="membership.invite",
        actor_user=actor,
        actor_label=actor_label,
        target_type="user",
        target_id=str(user.pk),
        data=audit_data,
    )
    return result


def _invitation_put(
    *, tenant: Organization, user: User, email: str, role: str, invited_by: str, may_change_owners: bool
) -> MembershipInvitation:
    """Create `user`'s pending invitation to `tenant`, or give the existing one (pending or
    expired) `role`, `invited_by` and the address as typed this time (`email`; a renewal passes
    the one it was typed with); either way it expires STUDIO_INVITATION_TTL_DAYS from now.
    Assumes a transaction in the tenant's context, under the owners' lock (which serialises
    every writer of invitations).
    Raises OwnerRoleReserved when a caller without the right would offer the owner role or
    change an offered one, renewing an owner invitation included (it offers the owner role for a
    new period: an expired one would grant it again)."""
    invitation = MembershipInvitation.objects.select_for_update().filter(tenant=tenant, user=user).first()
    # previous_role None: the same role offered again is no exception here, since it renews.
    _check_owner_change(allowed=may_change_owners, previous_role=None, role=role)
    _check_owner_change(
        allowed=may_change_owners, previous_role=invitation.role if invitation is not None else None, role=role
    )
    invited_by = invited_by[: MembershipInvitation._meta.get_field("invited_by").max_length]
    # Each invitation sent is valid for the full TTL from now (its e-mail says until when), an
    # expired one included: the one row per (studio, person) is renewed, never duplicated.
    expires_at = timezone.now() + dt.timedelta(days=settings.STUDIO_INVITATION_TTL_DAYS)
    if invitation is None:
        return MembershipInvitation.objects.create(
            tenant=tenant, user=user, role=role, invited_by=invited_by, email=email, expires_at=expires_at
        )
    invitation.role, invitation.invited_by, invitation.email = role, invited_by, email
    invitation.expires_at = expires_at
    invitation.save(update_fields=["role", "invited_by", "email", "expires_at"])
    return invitation


def _invitation_lock(*, tenant_id: int, **lookup: Any) -> MembershipInvitation:
    """Lock one pending invitation of the tenant (after the owners' lock). Raises InvitationNotFound."""
    invitation = (
        MembershipInvitation.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(tenant_id=tenant_id, **lookup)
        .first()
    )
    if invitation is None:
        raise InvitationNotFound("There is no such pending invitation (it may have been answered or withdrawn).")
    return invitation


def membership_invitation_accept(*, tenant_id: int, user: User, role: str | None = None) -> Membership:
    """`user` accepts their pending invitation to the studio `tenant_id`: they become a member
    with the invited role, and the invitation goes.

    Only the invited person can accept: the invitation is looked up by (studio, `user`), so
    anyone else finds none. `role` is the role the person was shown (None: not checked, for
    callers that show none): when the invitation offers another one (the studio re-invited them
    since), nothing is granted (InvitationChanged, 409) and they answer again knowing it. An
    invitation past its `expires_at` (the database's clock) grants nothing either
    (InvitationExpired, 410) and stays for the studio to see and send again.
    Joins the caller's transaction; takes the owners' lock, so it serialises with a concurrent
    withdrawal, renewal or new invitation. Raises InvitationNotFound (none for this user, or
    answered / withdrawn meanwhile)."""
    with tenant_context(tenant_id), transaction.atomic():
        _owners_lock(tenant_id=tenant_id, actor=None)
        invitation = _invitation_lock(tenant_id=tenant_id, user_id=user.pk)
        if MembershipInvitation.objects.filter(INVITATION_EXPIRED, pk=invitation.pk).exists():
            expired_at = timezone.localtime(invitation.expires_at)
            raise InvitationExpired(
                f"This invitation to {invitation.tenant.name} expired on {expired_at:%-d %B %Y, %H:%M %Z}, so it "
                "can no longer be accepted. Ask the studio to invite you again."
            )
        if role is not None and invitation.role != role:
            offered = Membership.Role(invitation.role).label.lower()
            raise InvitationChanged(
                f"This invitation offers the {offered} role, not the one you accepted (the studio may have "
                "changed it since you opened the page). Look at it again before you accept."
            )
        # Made a member meanwhile by an operator (`membership_add` drops invitations, so only a
        # race gets here): the membership they have stands.
        membership, created = Membership.objects.get_or_create(
            tenant_id=tenant_id, user_id=user.pk, defaults={"role": invitation.role}
        )
        MembershipInvitation.objects.filter(pk=invitation.pk).delete()
        audit_record(
            action="membership.accept",
            actor_user=user,
            target_type="user",
            target_id=str(user.pk),
            data={"role": membership.role, "invited_role": invitation.role, "already_member": not created},
        )
    return membership


def membership_invitation_decline(*, tenant_id: int, user: User) -> MembershipInvitation:
    """`user` declines their pending invitation to the studio `tenant_id`; returns it (deleted).

    Joins the caller's transaction; takes the owners' lock. Raises InvitationNotFound.
    """
    with tenant_context(tenant_id), transaction.atomic():
        _owners_lock(tenant_id=tenant_id, actor=None)
        invitation = _invitation_lock(tenant_id=tenant_id, user_id=user.pk)
        MembershipInvitation.objects.filter(pk=invitation.pk).delete()
        audit_record(
            action="membership.decline",
            actor_user=user,
            target_type="user",
            target_id=str(user.pk),
            data={"role": invitation.role},
        )
    return invitation


def membership_invitation_renew(
    *,
    tenant: Organization,
    invitation_id: int,
    actor: User | None,
    actor_label: str = "",
    invited_by: str = "",
    may_change_owners: bool = True,
) -> MemberInvited:
    """The studio sends a pending or expired invitation again: the same invitation of the same
    person (its account), with the role it offers, valid for STUDIO_INVITATION_TTL_DAYS from now;
    the caller e-mails it after the commit, to the account's current address, as for any
    invitation. Returns what `member_invite` does; audited `membership.invite` with `renewal`.

    The address is never looked up again: the account may have changed its address since it
    was invited, and whoever has the old one now (or an account made for it) must not be
    invited in its place. The address typed at the time stays the invitation's `email`.
    Joins the caller's transaction; takes the owners' lock, then the invitation's, so one
    answered or withdrawn meanwhile is InvitationNotFound rather than made again. Raises
    NotAnOwner, InvitationNotFound (also another studio's: RLS hides it), and OwnerRoleReserved.
    """
    with tenant_context(tenant.pk), transaction.atomic():
        owners = _owners_lock(tenant_id=tenant.pk, actor=actor)
        invitation = _invitation_lock(tenant_id=tenant.pk, pk=invitation_id)
        return _person_invite(
            tenant=tenant,
            owners=owners,
            user=invitation.user,
            created_user=False,
            email=invitation.email,
            role=invitation.role,
            actor=actor,
            actor_label=actor_label,
            invited_by=invited_by,
            may_change_owners=may_change_owners,
            renewal=True,
        )


INVITATION_CLEANUP_BATCH = 1000


def membership_invitations_expired_delete(
    *, batch_size: int = INVITATION_CLEANUP_BATCH, max_batches: int = 1000
) -> int:
    """Delete the invitations expired more than STUDIO_INVITATION_EXPIRED_KEEP_DAYS ago (by the
    database's clock), oldest first, at most `batch_size` per transaction; returns how many.

    Each batch is its own durable transaction (short locks, no huge DELETE). Rows another
    transaction holds (a renewal or an answer under way) are skipped and their expiry checked
    again by the next run; a renewal committed meanwhile takes its row out of the batch. The caller
    acts in the system context (else RLS limits it to one tenant).
    """
    long_expired = Q(expires_at__lte=Now() - dt.timedelta(days=settings.STUDIO_INVITATION_EXPIRED_KEEP_DAYS))
    total = 0
    for _ in range(max_batches):
        with transaction.atomic(durable=True):
            batch = list(
                MembershipInvitation.objects.filter(long_expired)
                .order_by("expires_at")
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)[:batch_size]
            )
            deleted, _ = MembershipInvitation.objects.filter(pk__in=batch).delete()
        total += deleted
        if len(batch) < batch_size:
            break
    return total


def membership_invitation_withdraw(
    *,
    tenant: Organization,
    invitation_id: int,
    actor: User | None,
    actor_label: str = "",
    may_change_owners: bool = True,
) -> MembershipInvitation:
    """The studio withdraws a pending invitation; returns it (deleted). An e-mail still queued for
    it then sends nothing.

    Joins the caller's transaction; takes the owners' lock. Raises NotAnOwner,
    InvitationNotFound (also another studio's: RLS hides it), OwnerRoleReserved
    (`may_change_owners` False and the invitation offers the owner role).
    """
    with tenant_context(tenant.pk), transaction.atomic():
        _owners_lock(tenant_id=tenant.pk, actor=actor)
        invitation = _invitation_lock(tenant_id=tenant.pk, pk=invitation_id)
        _check_owner_change(allowed=may_change_owners, previous_role=invitation.role, role=None)
        MembershipInvitation.objects.filter(pk=invitation.pk).delete()
        audit_record(
            action="membership.withdraw",
            actor_user=actor,
            actor_label=actor_label,
            target_type="user",
            target_id=str(invitation.user_id),
            data={"email": invitation.invited_email, "role": invitation.role},
        )
    return invitation


def _member_lock(*, tenant_id: int, user_id: int) -> Membership:
    """Lock one member's row (after the owners' lock). Raises MemberNotFound."""
    membership = (
        Membership.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(tenant_id=tenant_id, user_id=user_id)
        .first()
    )
    if membership is None:
        raise MemberNotFound("This studio has no such member.")
    return membership


def member_role_set(
    *,
    tenant: Organization,
    user_id: int,
    role: str,
    actor: User | None,
    actor_label: str = "",
    may_change_owners: bool = True,
) -> Membership:
    """Give a member another role; the same role changes (and audits) nothing.

    Joins the caller's transaction; takes the owners' lock before counting them, so the last
    owner can never be demoted, even by two owners demoting each other at once.
    Raises InvalidInput (role), NotAnOwner, MemberNotFound, LastOwnerRequired, OwnerRoleReserved
    (`may_change_owners` False: the owner role granted or taken away). `actor` None: an API key or
    a platform operator (no owner check; `actor_label` names them in the audit row).
    """
    _check_role(role)
    with tenant_context(tenant.pk), transaction.atomic():
        owners = _owners_lock(tenant_id=tenant.pk, actor=actor)
        membership = _member_lock(tenant_id=tenant.pk, user_id=user_id)
        previous_role = membership.role
        if previous_role == role:
            return membership
        _check_owner_change(allowed=may_change_owners, previous_role=previous_role, role=role)
        if previous_role == OWNER_ROLE:
            _keeps_an_owner(owners=owners, user_id=user_id, studio=tenant.name)
        membership.role = role
        membership.save(update_fields=["role"])
        audit_record(
            action="membership.set",
            actor_user=actor,
            actor_label=actor_label,
            target_type="user",
            target_id=str(user_id),
            data={"role": role, "previous_role": previous_role},
        )
    return membership


def member_remove(
    *, tenant: Organization, user_id: int, actor: User | None, actor_label: str = "", may_change_owners: bool = True
) -> Membership:
    """Remove a member from the studio (their user stays); returns the removed membership.

    Joins the caller's transaction; takes the owners' lock before counting them, so the last
    owner can never be removed. Raises NotAnOwner, MemberNotFound, LastOwnerRequired,
    OwnerRoleReserved (`may_change_owners` False and the member is an owner).
    """
    with tenant_context(tenant.pk), transaction.atomic():
        owners = _owners_lock(tenant_id=tenant.pk, actor=actor)
        membership = _member_lock(tenant_id=tenant.pk, user_id=user_id)
        _check_owner_change(allowed=may_change_owners, previous_role=membership.role, role=None)
        if membership.role == OWNER_ROLE:
            _keeps_an_owner(owners=owners, user_id=user_id, studio=tenant.name)
        Membership.objects.filter(pk=membership.pk).delete()
        audit_record(
            action="membership.remove",
            actor_user=actor,
            actor_label=actor_label,
            target_type="user",
            target_id=str(user_id),
            data={"role": membership.role},
        )
    return membership
