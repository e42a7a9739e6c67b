"""Celery tasks of the tenancy domain (thin: call a service).

* `tenancy.invitations_cleanup` (beat, maintenance queue): delete the invitations expired more
  than STUDIO_INVITATION_EXPIRED_KEEP_DAYS ago, in bounded batches, across studios
  (`membership_invitations_expired_delete`, in the system context). Idempotent.

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
* `tenancy.api_key_revoked` → the revoked mark of a revoked API key in the key cache
  (`api_key_revoked_mark`), so a mark the revocation could not write at commit (Redis
  unreachable) is written once Redis is back. Retried with backoff while Redis fails; no row
  waits for it, so it records its inbox row once the mark is written: the lost-message sweep
  (flow `api_key_revocations`) sends a message without one again. Idempotent.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from apps.core.redis_guard import REDIS_ERRORS
from apps.outbox.mail_once import MAIL_CONSUMER_OPTIONS, MailBusy
from apps.outbox.routing import outbox_consumer
from apps.outbox.services import consume_once
from apps.tenancy.context import system_context
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
from apps.tenancy.services import (
    API_KEY_REVOKED_CONSUMER,
    TOPIC_API_KEY_REVOKED,
    api_key_revoked_mark,
    membership_invitations_expired_delete,
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


# once=False: no transaction is held open while Redis is asked; writing the mark again is harmless.
@outbox_consumer(
    TOPIC_API_KEY_REVOKED,
    name=API_KEY_REVOKED_CONSUMER,
    once=False,
    lost_message_flow="api_key_revocations",
    autoretry_for=REDIS_ERRORS,
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=10,
)
def mark_api_key_revoked(*, message_id: str, payload: dict[str, Any]) -> bool:
    written = api_key_revoked_mark(api_key_id=int(payload["api_key_id"]))
    # Done: the inbox row tells the lost-message sweep (apps/outbox/unconsumed.py) the mark is written.
    with consume_once(consumer=API_KEY_REVOKED_CONSUMER, message_id=message_id):
        pass
    return written


@shared_task(name="tenancy.invitations_cleanup", acks_late=True)
def invitations_cleanup() -> dict[str, int]:
    """Idempotent: deleting what is already gone deletes nothing."""
    with system_context("expired invitations cleanup"):
        return {"deleted": membership_invitations_expired_delete()}
