"""The e-mails telling someone they were made a member of a studio, or invited to become one,
and their durable path.

Anyone who is not a member of the studio gets a pending invitation (`member_invite`), never a
membership, whether or not the address had an account: its e-mail names the studio, the role and
who invited, says until when the invitation is valid (its `expires_at`), and asks them to accept
or decline after signing in (the studio's invitations page).
An existing member invited again gets the new role and an e-mail saying so.

Someone without a password (a user the invitation created, or one created by an earlier
invitation who never chose one) gets a link to choose it: Django's password-reset token
(`default_token_generator`) for the studio's `password-reset-confirm` page, absolute on
DARKROOM_PUBLIC_BASE_URL. It works once (it is signed over the password hash, which choosing a
password changes) and for PASSWORD_RESET_TIMEOUT; inviting the person again sends a fresh one.
Django's "Forgot your password?" mails only users with a usable password, so this is their way in.
Anyone else gets a note with the sign-in address.

Two ways out, both after the invitation (or role change) committed and outside any transaction:

* The studio's members page calls `invitation_send` itself once its form's effect committed (a
  failure is shown on the page; adding the person again sends again).
* The API calls `member_invitation_create` (or `member_invitation_renew` to send an invitation
  again): the membership and one outbox message
  (`tenancy.member_invited`) commit together in the request's transaction. The message's
  consumer (`tenancy.send_member_invitation`, tasks/tenancy.py) calls `member_invitation_deliver`,
  which sends the e-mail once per message (`send_once`: a claim in the outbox's inbox table,
  then the send, then the done mark). The message carries ids only: the password link is made
  when the e-mail is built, so it never sits in a row or a queue. A message about a pending
  invitation says so (`"pending": true`); if the invitation was accepted, declined, withdrawn or
  has expired by the time it is consumed, it sends nothing (as for a member removed meanwhile).
  The validity it states is the invitation's when the e-mail is built (renewed by a later
  invitation of the same address, whose own message follows).
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import EmailMessage
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from apps.core.mail import mail_message_id
from apps.outbox.mail_once import send_once
from apps.outbox.services import outbox_publish
from apps.tenancy.context import tenant_context
from apps.tenancy.models import INVITATION_PENDING, Membership, MembershipInvitation, Organization, User
from apps.tenancy.services import MemberInvited, member_invite, membership_invitation_renew, person_name

logger = logging.getLogger("darkroom.tenancy.invitations")

TOPIC_MEMBER_INVITED = "tenancy.member_invited"
MEMBER_INVITATION_CONSUMER = "tenancy.send_member_invitation"


def public_url(path: str) -> str:
    return f"{str(settings.DARKROOM_PUBLIC_BASE_URL).rstrip('/')}{path}"


def set_password_url(user: User) -> str:
    """A one-time link for `user` to choose a password (the studio's password-reset page)."""
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return public_url(reverse("studio:password-reset-confirm", kwargs={"uidb64": uidb64, "token": token}))


def invitation_send(
    *,
    studio: Organization,
    user: User,
    role: str,
    invited_by: User | str,
    message_id: str | None = None,
    pending: bool = False,
    expires_at: datetime | None = None,
) -> bool:
    """E-mail `user` that they are now a `role` of `studio` (or, `pending`, that they are invited
    to become one and accept or decline after signing in, until `expires_at`, which a pending
    invitation's e-mail requires); returns whether it carried a link to choose a password.
    `invited_by` is the inviting person, or a name to show for them (an API key); `message_id`
    sets the Message-ID header (a resent duplicate then collapses in mail clients). Call it
    outside any transaction; raises whatever the mail backend raises.

    A pending invitation carries a password link only for an account that has never had a
    password (one an earlier invitation made): without it they could not sign in to answer.
    """
    if pending and expires_at is None:
        raise ValueError("a pending invitation's e-mail says until when it is valid: pass expires_at")
    needs_password = not user.has_usable_password()
    context = {
        "studio_name": studio.name,
        "role": Membership.Role(role).label.lower(),
        "invited_by": invited_by if isinstance(invited_by, str) else person_name(invited_by),
        "username": user.get_username(),
        "set_password_url": set_password_url(user) if needs_password else None,
        "login_url": public_url(reverse("studio:login")),
        "invitations_url": public_url(reverse("studio:invitations")),
        "timeout_hours": max(1, settings.PASSWORD_RESET_TIMEOUT // 3600),
        "expires_at": expires_at,
    }
    template = "member_invitation_pending" if pending else "member_invitation"
    subject = " ".join(render_to_string(f"studio/{template}_subject.txt", context).split())
    body = render_to_string(f"studio/{template}_email.txt", context)
    EmailMessage(
        subject=subject,
        body=body,
        from_email=str(settings.STUDIO_PASSWORD_RESET_FROM_EMAIL),
        to=[user.email],
        headers={"Message-ID": message_id} if message_id else None,
    ).send(fail_silently=False)
    return needs_password


def member_invitation_create(
    *,
    tenant: Organization,
    email: str,
    role: str,
    actor: User | None,
    actor_label: str = "",
    invited_by: str,
    may_change_owners: bool = True,
) -> MemberInvited:
    """`member_invite`, plus the outbox message that e-mails the invitation (`invited_by` is the
    name the e-mail gives for whoever invited). Returns what `member_invite` did.

    Joins the caller's transaction (the membership or pending invitation, its audit row and the
    message commit or roll back together); takes the owners' lock through `member_invite`. Every
    call queues one e-mail, as the page sends one per submission: inviting someone again sends a
    fresh one. Raises what `member_invite` raises (InvalidInput, NotAnOwner, LastOwnerRequired,
    OwnerRoleReserved).
    """
    with tenant_context(tenant.pk), transaction.atomic():
        invited = member_invite(
            tenant=tenant,
            email=email,
            role=role,
            actor=actor,
            actor_label=actor_label,
            invited_by=invited_by,
            may_change_owners=may_change_owners,
        )
        _publish_member_invited(tenant=tenant, invited=invited, invited_by=invited_by)
    return invited


def member_invitation_renew(
    *,
    tenant: Organization,
    invitation_id: int,
    actor: User | None,
    actor_label: str = "",
    invited_by: str,
    may_change_owners: bool = True,
) -> MemberInvited:
    """`membership_invitation_renew` (the same person's invitation, valid for
    STUDIO_INVITATION_TTL_DAYS from now), plus the outbox message that e-mails it again, to the
    account's current address. Joins the caller's transaction; raises what
    `membership_invitation_renew` raises (InvitationNotFound, OwnerRoleReserved)."""
    with tenant_context(tenant.pk), transaction.atomic():
        renewed = membership_invitation_renew(
            tenant=tenant,
            invitation_id=invitation_id,
            actor=actor,
            actor_label=actor_label,
            invited_by=invited_by,
            may_change_owners=may_change_owners,
        )
        _publish_member_invited(tenant=tenant, invited=renewed, invited_by=invited_by)
    return renewed


def _publish_member_invited(*, tenant: Organization, invited: MemberInvited, invited_by: str) -> None:
    """The `tenancy.member_invited` message of what `member_invite` did, in the caller's transaction."""
    payload: dict[str, object] = {"tenant_id": tenant.pk, "user_id": invited.user.pk, "invited_by": invited_by}
    if invited.invitation is not None:
        payload["pending"] = True
        aggregate_type, aggregate_id = "membership_invitation", invited.invitation.pk
    else:
        assert invited.membership is not None
        aggregate_type, aggregate_id = "membership", invited.membership.pk
    outbox_publish(
        topic=TOPIC_MEMBER_INVITED,
        tenant_id=tenant.pk,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        payload=payload,
    )


def member_invitation_deliver(
    *, message_id: uuid.UUID | str, tenant_id: int, user_id: int, invited_by: str, pending: bool = False
) -> bool:
    """Send the e-mail a `tenancy.member_invited` message asks for, once. Returns True if this
    call sent it.

    The e-mail states the role (and the invitation's validity) when it is built. Someone who is no
    longer a member by then (or, `pending`, whose invitation was accepted, declined, withdrawn or
    has expired meanwhile) gets nothing; the
    message counts as handled either way (its inbox row is recorded). Runs outside any
    transaction (TransactionManagementError otherwise). Raises MailBusy while another sender's
    claim is live, and whatever the mail backend raises (the claim is then given back, so a
    retry sends).
    """
    message_uuid = uuid.UUID(str(message_id))
    sent: list[bool] = []

    def send() -> None:
        row: Membership | MembershipInvitation | None
        with tenant_context(tenant_id):
            if pending:
                row = (
                    MembershipInvitation.objects.filter(INVITATION_PENDING, tenant_id=tenant_id, user_id=user_id)
                    .select_related("user", "tenant")
                    .first()
                )
            else:
                row = (
                    Membership.objects.filter(tenant_id=tenant_id, user_id=user_id)
                    .select_related("user", "tenant")
                    .first()
                )
        if row is None:
            logger.info(
                "member invitation skipped: invitation answered, withdrawn or expired"
                if pending
                else "member invitation skipped: no longer a member",
                extra={"message_id": str(message_uuid), "tenant_id": tenant_id, "user_id": user_id},
            )
            return
        invitation_send(
            studio=row.tenant,
            user=row.user,
            role=row.role,
            invited_by=invited_by,
            message_id=mail_message_id(f"member-invitation-{message_uuid}"),
            pending=pending,
            expires_at=row.expires_at if isinstance(row, MembershipInvitation) else None,
        )
        sent.append(True)

    if not send_once(consumer=MEMBER_INVITATION_CONSUMER, message_id=message_uuid, send=send):
        return False
    if sent:
        logger.info("member invitation sent", extra={"message_id": str(message_uuid), "user_id": user_id})
    return bool(sent)
