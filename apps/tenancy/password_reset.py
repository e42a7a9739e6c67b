"""The "forgot your password" e-mail of a studio account, sent by a worker, never in the request.

The reset page (apps/web/studio/views/auth.py) calls `password_reset_request`, which writes one
`tenancy.password_reset_requested` outbox message in its own transaction whether or not the
address has an account (its `user_ids` are the accounts to e-mail, usually one, often none). So
the request does the same work either way, one lookup and one insert, and sends nothing: neither
the answer nor its timing tells whether an address has an account (an e-mail sent in the
request made the answer for a known address measurably slower).

The message's consumer (`tenancy.send_password_reset`, tasks/tenancy.py) calls
`password_reset_deliver`, which sends the e-mail once per message (`send_once`: a claim in the
outbox's inbox table, then the send, then the done mark), outside any transaction. A message
with no accounts sends and records nothing.

The message carries account ids only, never a link: the token is made when the e-mail is built
(Django's `default_token_generator`, signed over the password hash and last login, so it works
once, for PASSWORD_RESET_TIMEOUT from then), and the link is on DARKROOM_PUBLIC_BASE_URL, never
on the Host the requester named. Who gets an e-mail is Django's rule (`PasswordResetForm
.get_users`: active accounts with a usable password whose address matches, case-insensitively),
checked again when the e-mail is built.
"""

from __future__ import annotations

import logging
import uuid

from django.conf import settings
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import EmailMessage
from django.db import transaction
from django.template.loader import render_to_string
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from apps.core.mail import mail_message_id
from apps.outbox.mail_once import send_once
from apps.outbox.services import outbox_publish
from apps.tenancy.models import User

logger = logging.getLogger("darkroom.tenancy.password_reset")

TOPIC_PASSWORD_RESET_REQUESTED = "tenancy.password_reset_requested"  # noqa: S105 - a topic name
PASSWORD_RESET_CONSUMER = "tenancy.send_password_reset"  # noqa: S105 - a task name


@transaction.atomic(durable=True)
def password_reset_request(*, email: str) -> list[int]:
    """Queue the reset e-mail of the accounts of `email`: one outbox message, written whether or
    not there are any (`user_ids` empty then). Returns those accounts' ids.

    Outermost transaction (TransactionManagementError inside another); a platform message
    (no tenant), so it may be written from any tenant context.
    """
    user_ids = sorted(user.pk for user in PasswordResetForm().get_users(email))
    outbox_publish(
        topic=TOPIC_PASSWORD_RESET_REQUESTED,
        tenant_id=None,
        aggregate_type="user",
        aggregate_id=user_ids[0] if user_ids else "none",
        payload={"user_ids": user_ids},
    )
    return user_ids


def _reset_email(*, user: User, message_id: str) -> EmailMessage:
    """The e-mail with a fresh one-time link for `user` (the studio's reset templates)."""
    context = {
        "user": user,
        "uid": urlsafe_base64_encode(force_bytes(user.pk)),
        "token": default_token_generator.make_token(user),
        "public_base_url": str(settings.DARKROOM_PUBLIC_BASE_URL).rstrip("/"),
    }
    subject = " ".join(render_to_string("studio/password_reset_subject.txt", context).split())
    return EmailMessage(
        subject=subject,
        body=render_to_string("studio/password_reset_email.txt", context),
        from_email=str(settings.STUDIO_PASSWORD_RESET_FROM_EMAIL),
        to=[user.email],
        headers={"Message-ID": message_id},
    )


def password_reset_deliver(*, message_id: uuid.UUID | str, user_ids: list[int]) -> int:
    """Send the e-mails a `tenancy.password_reset_requested` message asks for, once per message;
    returns how many this call sent. An account deactivated or left without a usable password
    since the request gets none.

    A message naming no account sends nothing but is still recorded as handled (its inbox row),
    like any other: the lost-message sweep (`outbox_requeue_unconsumed`, flow
    `password_reset_emails`) sends again only the messages whose row is missing.

    Runs outside any transaction (TransactionManagementError otherwise). Raises MailBusy while
    another sender's claim is live, and whatever the mail backend raises (the claim is then given
    back, so a retry sends; an account e-mailed before the failure gets a second link, under the
    same Message-ID).
    """
    message_uuid = uuid.UUID(str(message_id))
    sent: list[int] = []

    def send() -> None:
        for user in User.objects.filter(pk__in=user_ids, is_active=True).order_by("pk"):
            if not user.email or not user.has_usable_password():
                continue
            local_part = f"password-reset-{message_uuid}-{user.pk}"
            _reset_email(user=user, message_id=mail_message_id(local_part)).send(fail_silently=False)
            sent.append(user.pk)

    if not send_once(consumer=PASSWORD_RESET_CONSUMER, message_id=message_uuid, send=send):
        return 0
    logger.info("password reset e-mails sent", extra={"message_id": str(message_uuid), "user_ids": sent})
    return len(sent)
