"""Celery tasks of the payments domain (thin: call a service).

Outbox consumers (see apps/outbox/routing.py):
* `webhook.received` → `payments.process_webhook`: applies a recorded provider event once per
  message (its own inbox row, in one transaction with the effects); failures are recorded on
  the event and retried with backoff, at most WEBHOOK_PROCESS_MAX_RETRIES times.
* `payment.refund_requested` → `payments.submit_refund`: the provider refund, outside any
  transaction, with the refund's idempotency key.
* `payment.capture_requested` → `payments.capture_payment`: capture an approved PayPal order.
Plain task: `payments.sandbox_deliver`, one signed sandbox webhook delivery (the sandbox plays
the provider; retried like a provider retries).
Beat tasks: `payments.webhooks_requeue_stale`, `payments.refunds_requeue_stale` and
`payments.captures_requeue_stale` queue again the webhook events, refunds and captures whose
message the broker lost (still `received` / `requested` / not captured
REQUEUE_STALE_AFTER_SECONDS after it was queued).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from apps.commerce.services import captures_requeue_stale, checkout_capture, refund_submit, refunds_requeue_stale
from apps.outbox.routing import outbox_consumer
from apps.payments import sandbox
from apps.payments.providers.base import ProviderError
from apps.payments.providers.http import TransportError
from apps.payments.services import webhook_event_process, webhook_events_requeue_stale
from apps.tenancy.context import system_context


@outbox_consumer(
    "webhook.received",
    name="payments.process_webhook",
    once=False,  # the service holds its own inbox row, so a failure can be recorded after rollback
    autoretry_for=(Exception,),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=settings.WEBHOOK_PROCESS_MAX_RETRIES,
)
def process_webhook(*, message_id: str, payload: dict[str, Any]) -> str:
    return webhook_event_process(webhook_event_id=payload["webhook_event_id"], message_id=message_id)


# Consumers that call a provider (outside any transaction, with the provider's idempotency key),
# on the providers' own queue: a ProviderError retries with jittered backoff; a final refusal is
# settled inside the service.
PROVIDER_CALL_RETRY: dict[str, Any] = {
    "queue": settings.PROVIDER_QUEUE,
    "once": False,
    "autoretry_for": (ProviderError,),
    "retry_backoff": 5,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 10,
}


@outbox_consumer(
    "payment.refund_requested",
    name="payments.submit_refund",
    **PROVIDER_CALL_RETRY,
)
def submit_refund(*, message_id: str, payload: dict[str, Any]) -> str:
    return refund_submit(refund_id=int(payload["refund_id"])).status


@outbox_consumer(
    "payment.capture_requested",
    name="payments.capture_payment",
    **PROVIDER_CALL_RETRY,
)
def capture_payment(*, message_id: str, payload: dict[str, Any]) -> str:
    outcome = checkout_capture(checkout_id=payload["checkout_id"])
    return outcome.describe() if outcome else "nothing captured"


@shared_task(
    name="payments.sandbox_deliver",
    acks_late=True,
    autoretry_for=(sandbox.SandboxDeliveryFailed, TransportError),
    retry_backoff=1,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
)
def sandbox_deliver(*, delivery: dict[str, Any]) -> int:
    return sandbox.sandbox_deliver(delivery=delivery)


@shared_task(name="payments.webhooks_requeue_stale", acks_late=True)
def webhooks_requeue_stale() -> int:
    """Idempotent: an event requeued once is left alone for another REQUEUE_STALE_AFTER_SECONDS."""
    with system_context("stale webhook sweep"):
        return len(webhook_events_requeue_stale(older_than_seconds=settings.REQUEUE_STALE_AFTER_SECONDS))


@shared_task(name="payments.refunds_requeue_stale", acks_late=True)
def refunds_requeue_stale_task() -> int:
    """Idempotent: a refund requeued once is left alone for another REQUEUE_STALE_AFTER_SECONDS."""
    with system_context("stale refund sweep"):
        return len(refunds_requeue_stale(older_than_seconds=settings.REQUEUE_STALE_AFTER_SECONDS))


@shared_task(name="payments.captures_requeue_stale", acks_late=True)
def captures_requeue_stale_task() -> int:
    """Idempotent: a capture asked for again is left alone for another REQUEUE_STALE_AFTER_SECONDS."""
    with system_context("stale capture sweep"):
        return len(captures_requeue_stale(older_than_seconds=settings.REQUEUE_STALE_AFTER_SECONDS))
