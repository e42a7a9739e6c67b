"""Celery tasks of the commerce domain (thin: call a service).

Outbox consumers (see apps/outbox/routing.py); each runs in the message's tenant context:
* `checkout.created`, `checkout.payable`, `checkout.payment_session_requested` → create the
  provider session after commit (`checkout_payment_session_ensure`; idempotent by the checkout's
  status and the provider idempotency key, so no inbox row is needed: `once=False`). Retryable
  provider errors are retried with backoff, at most CHECKOUT_SESSION_MAX_RETRIES times.
* `checkout.payment_session_close_requested` → close an expired checkout's provider session
  (`checkout_payment_session_close`, providers queue): outside any transaction, once per message
  (its inbox row and the checkout's `payment_session_close_concluded_at` are written after the
  provider's answer, so neither a redelivery nor a later copy calls anything); retryable provider
  errors are retried with backoff like session creation.
* `checkout.paid` → the receipt email (`receipt_send`, claim/send/mark, notifications queue).
* `checkout.shipped` → the "your prints are on their way" e-mail (`shipped_mail_send`, claim/
  send/mark on inbox rows, notifications queue; apps/commerce/services/fulfilment.py).
* `checkout.refunded` → the "your payment was refunded" e-mail (`refunded_mail_send`, claim/send/
  mark on inbox rows, notifications queue; apps/commerce/services/refund_mail.py).
* `refund.failed_after_landing` → the "a refund did not reach you" e-mail
  (`refund_failed_mail_send`, claim/send/mark on inbox rows, notifications queue; nothing for a
  refund settled outside the provider by then; apps/commerce/services/refund_mail.py).
* `refund.restock_requested` → a refunded order's unshipped prints back in stock
  (`refunded_prints_restock`, once per message, in its inbox transaction).
* `orders.links_requested` → the "find my orders" e-mail (`order_links_send`, claim/send/mark
  on inbox rows, notifications queue).
Beat: `commerce.checkouts_expire` expires overdue unpaid checkouts and releases their stock;
`commerce.checkouts_requeue_stale` and `commerce.receipts_requeue_stale` move on the checkouts
and receipts whose message the broker lost (REQUEUE_STALE_AFTER_SECONDS after their last step);
the first also queues again the session closes still owed by expired checkouts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from celery import shared_task
from django.conf import settings

from apps.commerce.services import (
    ReceiptBusy,
    checkout_payment_session_close,
    checkout_payment_session_ensure,
    checkouts_expire_due,
    checkouts_requeue_stale,
    payment_session_closes_requeue_stale,
    receipt_send,
    receipts_requeue_stale,
)
from apps.commerce.services.checkout import SESSION_CLOSE_CONSUMER, TOPIC_PAYMENT_SESSION_CLOSE_REQUESTED
from apps.commerce.services.fulfilment import (
    SHIPPED_MAIL_CONSUMER,
    TOPIC_CHECKOUT_SHIPPED,
    refunded_prints_restock,
    shipped_mail_send,
)
from apps.commerce.services.order_links import (
    ORDER_LINKS_CONSUMER,
    TOPIC_ORDER_LINKS_REQUESTED,
    order_links_send,
)
from apps.commerce.services.payment import TOPIC_REFUND_FAILED_AFTER_LANDING, TOPIC_RESTOCK_REQUESTED
from apps.commerce.services.refund_mail import (
    REFUND_FAILED_MAIL_CONSUMER,
    REFUNDED_MAIL_CONSUMER,
    TOPIC_CHECKOUT_REFUNDED,
    refund_failed_mail_send,
    refunded_mail_send,
)
from apps.outbox.mail_once import MAIL_CONSUMER_OPTIONS, MailBusy
from apps.outbox.routing import outbox_consumer
from apps.payments.providers.base import ProviderError
from apps.tenancy.context import system_context

_SESSION_RETRY: dict[str, Any] = {
    "autoretry_for": (ProviderError,),
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": settings.CHECKOUT_SESSION_MAX_RETRIES,
}


@outbox_consumer(
    "checkout.created", name="commerce.on_checkout_created", queue=settings.PROVIDER_QUEUE, once=False, **_SESSION_RETRY
)
def on_checkout_created(*, message_id: str, payload: dict[str, Any]) -> str:
    return checkout_payment_session_ensure(checkout_id=payload["checkout_id"]).status


@outbox_consumer(
    "checkout.payable", name="commerce.on_checkout_payable", queue=settings.PROVIDER_QUEUE, once=False, **_SESSION_RETRY
)
def on_checkout_payable(*, message_id: str, payload: dict[str, Any]) -> str:
    return checkout_payment_session_ensure(checkout_id=payload["checkout_id"]).status


@outbox_consumer(
    "checkout.payment_session_requested",
    name="commerce.on_payment_session_requested",
    queue=settings.PROVIDER_QUEUE,
    once=False,
    **_SESSION_RETRY,
)
def on_payment_session_requested(*, message_id: str, payload: dict[str, Any]) -> str:
    return checkout_payment_session_ensure(checkout_id=payload["checkout_id"]).status


@outbox_consumer(
    TOPIC_PAYMENT_SESSION_CLOSE_REQUESTED,
    name=SESSION_CLOSE_CONSUMER,
    queue=settings.PROVIDER_QUEUE,
    once=False,  # the provider is called outside any transaction; the service keeps the inbox row
    **_SESSION_RETRY,
)
def close_payment_session(*, message_id: str, payload: dict[str, Any]) -> str:
    return checkout_payment_session_close(checkout_id=payload["checkout_id"], message_id=message_id)


@outbox_consumer(
    "checkout.paid",
    name="commerce.send_receipt",
    autoretry_for=(ReceiptBusy, OSError),
    **MAIL_CONSUMER_OPTIONS,
)
def send_receipt(*, message_id: str, payload: dict[str, Any]) -> bool:
    return receipt_send(checkout_id=payload["checkout_id"])


@outbox_consumer(
    TOPIC_ORDER_LINKS_REQUESTED,
    name=ORDER_LINKS_CONSUMER,
    lost_message_flow="order_link_emails",
    autoretry_for=(MailBusy, OSError),
    **MAIL_CONSUMER_OPTIONS,
)
def send_order_links(*, message_id: str, payload: dict[str, Any]) -> bool:
    return order_links_send(
        message_id=message_id,
        tenant_id=int(payload["tenant_id"]),
        to=payload["to"],
        checkout_ids=list(payload["checkout_ids"]),
    )


@outbox_consumer(
    TOPIC_CHECKOUT_SHIPPED,
    name=SHIPPED_MAIL_CONSUMER,
    lost_message_flow="shipping_emails",
    autoretry_for=(MailBusy, OSError),
    **MAIL_CONSUMER_OPTIONS,
)
def send_shipped_email(*, message_id: str, payload: dict[str, Any]) -> bool:
    return shipped_mail_send(message_id=message_id, checkout_id=payload["checkout_id"])


@outbox_consumer(
    TOPIC_CHECKOUT_REFUNDED,
    name=REFUNDED_MAIL_CONSUMER,
    lost_message_flow="refund_emails",
    autoretry_for=(MailBusy, OSError),
    **MAIL_CONSUMER_OPTIONS,
)
def send_refunded_email(*, message_id: str, payload: dict[str, Any]) -> bool:
    return refunded_mail_send(
        message_id=message_id,
        checkout_id=payload["checkout_id"],
        refund_id=payload.get("refund_id"),
        back_at=datetime.fromisoformat(payload["back_at"]) if payload.get("back_at") else None,
    )


@outbox_consumer(
    TOPIC_REFUND_FAILED_AFTER_LANDING,
    name=REFUND_FAILED_MAIL_CONSUMER,
    lost_message_flow="refund_failed_emails",
    autoretry_for=(MailBusy, OSError),
    **MAIL_CONSUMER_OPTIONS,
)
def send_refund_failed_email(*, message_id: str, payload: dict[str, Any]) -> bool:
    return refund_failed_mail_send(
        message_id=message_id, checkout_id=payload["checkout_id"], refund_id=int(payload["refund_id"])
    )


@outbox_consumer(TOPIC_RESTOCK_REQUESTED, name="commerce.restock_refunded_prints", lost_message_flow="refund_restocks")
def restock_refunded_prints(*, message_id: str, payload: dict[str, Any]) -> int:
    """Once per message (its inbox row commits with the stock changes)."""
    line_ids = payload.get("line_ids")
    return refunded_prints_restock(
        tenant_id=int(payload["tenant_id"]),
        checkout_id=payload["checkout_id"],
        line_ids=[int(i) for i in line_ids] if line_ids is not None else None,
    )


@shared_task(name="commerce.checkouts_expire", acks_late=True)
def checkouts_expire() -> int:
    """Idempotent: a checkout expires once, under its row lock."""
    return checkouts_expire_due()


@shared_task(name="commerce.checkouts_requeue_stale", acks_late=True)
def checkouts_requeue_stale_task() -> dict[str, int]:
    """Idempotent: a checkout moved on once (settled, session or session close asked for again) is
    left alone for another REQUEUE_STALE_AFTER_SECONDS. Two transactions: open checkouts, then
    expired checkouts whose session close is still owed (`session_closes_requested`)."""
    older_than_seconds = settings.REQUEUE_STALE_AFTER_SECONDS
    with system_context("stale checkout sweep"):
        counts = checkouts_requeue_stale(older_than_seconds=older_than_seconds)
        closes = payment_session_closes_requeue_stale(older_than_seconds=older_than_seconds)
    return {**counts, "session_closes_requested": len(closes)}


@shared_task(name="commerce.receipts_requeue_stale", acks_late=True)
def receipts_requeue_stale_task() -> int:
    """Idempotent: a receipt requeued once is left alone for another REQUEUE_STALE_AFTER_SECONDS."""
    with system_context("stale receipt sweep"):
        return len(receipts_requeue_stale(older_than_seconds=settings.REQUEUE_STALE_AFTER_SECONDS))
