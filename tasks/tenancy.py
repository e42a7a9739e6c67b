"""Celery tasks of the tenancy domain (thin: call a service).

Outbox consumers (see apps/outbox/routing.py); each runs in the message's tenant context:
* `tenancy.member_invited` → the invitation e-mail of a member (or, `"pending": true`, of a pending
  invitation of an existing account) invited through the API
  (`member_invitation_deliver`: claim/send/mark on inbox rows, outside any transaction, so a
  redelivery sends nothing more; notifications queue). A live claim of another sender and mail
  server errors are retried with backoff.
* `tenancy.password_reset_requested` → the "forgot your password" e-mail of the accounts the
  message names, with a link made now (`password_reset_deliver`, apps/tenancy/password_reset.py:
  the same claim/send/mark, outside any transaction, notifications queue, same retries); a
  message naming no account (an address without one) sends nothing.
"""

from __future__ import annotations

from typing import Any

from apps.outbox.mail_once import MAIL_CONSUMER_OPTIONS, MailBusy
from apps.outbox.routing import outbox_consumer
from apps.tenancy.invitations import (
    MEMBER_INVITATION_CONSUMER,
    TOPIC_MEMBER_INVITED,
    member_invitation_deliver,
)
from apps.tenancy.password_reset import (
    PASSWORD_RESET_CONSUMER,
    TOPIC_PASSWORD_RESET_REQUESTED,
    password_reset_deliver,
)


@outbox_consumer(
    TOPIC_MEMBER_INVITED,
    name=MEMBER_INVITATION_CONSUMER,
    lost_message_flow="member_invitations",
    autoretry_for=(MailBusy, OSError),
    **MAIL_CONSUMER_OPTIONS,
)
def send_member_invitation(*, message_id: str, payload: dict[str, Any]) -> bool:
    return member_invitation_deliver(
        message_id=message_id,
        tenant_id=int(payload["tenant_id"]),
        user_id=int(payload["user_id"]),
        invited_by=str(payload["invited_by"]),
        pending=bool(payload.get("pending", False)),
    )


@outbox_consumer(
    TOPIC_PASSWORD_RESET_REQUESTED,
    name=PASSWORD_RESET_CONSUMER,
    lost_message_flow="password_reset_emails",
    autoretry_for=(MailBusy, OSError),
    **MAIL_CONSUMER_OPTIONS,
)
def send_password_reset(*, message_id: str, payload: dict[str, Any]) -> int:
    return password_reset_deliver(message_id=message_id, user_ids=[int(pk) for pk in payload["user_ids"]])
