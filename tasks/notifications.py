"""Celery tasks of announcements (thin: call a service), on the notifications queue.

* `notifications.fanout` (`announcement.send_requested`): the fenced fan-out, chunk by chunk, one
  time slice per task (a longer one queues its continuation). A lost lease (StaleLeaseError,
  LockLost) or a busy one (LockBusy: another fan-out runs, or a dead holder's key has not lapsed
  yet) is retried with backoff; the next run goes on from the cursor.
* `notifications.send_emails` (`announcement.emails`): one chunk's e-mails over one mail
  connection; a passing mail failure (DeliveryInterrupted, OSError) is retried with backoff.
* `notifications.send_new_link` (`attendee.link_replaced`): the e-mail with an attendee's new link,
  the one current when it is built (`attendee_link_email_send`: claim/send/mark on inbox rows,
  outside any transaction, so a redelivery sends nothing more). A live claim of another sender
  and mail server errors are retried with backoff; a lost message is sent again by the
  lost-message sweep (flow `attendee_link_emails`).
* `notifications.deliveries_requeue_stale` (beat): fan-outs and e-mails whose message was lost.
* `notifications.photo_alerts_send` (beat): the owed e-mail alerts of new photos (drop-in); their
  rows are the durable intent, so there is no message to lose. Paused by the drop-in kill switch.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from apps.core.locks import LockBusy, LockLost, StaleLeaseError
from apps.notifications.attendee_links import LINK_REPLACED_CONSUMER, TOPIC_LINK_REPLACED, attendee_link_email_send
from apps.notifications.photo_alerts import photo_alerts_send_due
from apps.notifications.services import (
    TOPIC_EMAILS,
    TOPIC_SEND_REQUESTED,
    DeliveryInterrupted,
    announcement_emails_send,
    announcement_fanout,
    deliveries_requeue_stale,
    fanouts_requeue_stale,
)
from apps.ops.killswitch import CapabilityDisabled
from apps.outbox.mail_once import MAIL_CONSUMER_OPTIONS, MailBusy
from apps.outbox.routing import outbox_consumer
from apps.tenancy.context import system_context

_RETRY: dict[str, Any] = {"retry_backoff": 2, "retry_backoff_max": 300, "retry_jitter": True, "max_retries": 10}


@outbox_consumer(
    TOPIC_SEND_REQUESTED,
    name="notifications.fanout",
    once=False,
    autoretry_for=(LockBusy, LockLost, StaleLeaseError, CapabilityDisabled),
    **_RETRY,
)
def fanout(*, message_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    result = announcement_fanout(announcement_id=int(payload["announcement_id"]))
    return result.__dict__


@outbox_consumer(
    TOPIC_EMAILS,
    name="notifications.send_emails",
    once=False,
    autoretry_for=(DeliveryInterrupted, OSError, CapabilityDisabled),
    **_RETRY,
)
def send_emails(*, message_id: str, payload: dict[str, Any]) -> dict[str, int]:
    result = announcement_emails_send(
        announcement_id=int(payload["announcement_id"]), after=int(payload["after"]), upto=int(payload["upto"])
    )
    return result.__dict__


@outbox_consumer(
    TOPIC_LINK_REPLACED,
    name=LINK_REPLACED_CONSUMER,
    lost_message_flow="attendee_link_emails",
    autoretry_for=(MailBusy, OSError),
    **MAIL_CONSUMER_OPTIONS,
)
def send_new_link(*, message_id: str, payload: dict[str, Any]) -> bool:
    return attendee_link_email_send(
        message_id=message_id, tenant_id=int(payload["tenant_id"]), attendee_id=int(payload["attendee_id"])
    )


@shared_task(name="notifications.deliveries_requeue_stale", acks_late=True)
def deliveries_requeue_stale_task() -> dict[str, int]:
    """Idempotent: what is asked for again is left alone for another REQUEUE_STALE_AFTER_SECONDS."""
    with system_context("stale announcement sweep"):
        older = settings.REQUEUE_STALE_AFTER_SECONDS
        return {
            "fanouts": fanouts_requeue_stale(older_than_seconds=older),
            "emails": deliveries_requeue_stale(older_than_seconds=older),
        }


@shared_task(name="notifications.photo_alerts_send", acks_late=True)
def photo_alerts_send() -> dict[str, Any]:
    """Idempotent: each alert is claimed before it is sent. Runs for at most one sweep interval."""
    try:
        result = photo_alerts_send_due(max_seconds=settings.DROPIN_ALERT_SWEEP_SECONDS)
    except CapabilityDisabled:
        return {"paused": "the drop-in kill switch is engaged"}
    return result.__dict__
