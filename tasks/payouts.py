"""Celery tasks of the payouts domain (thin: call a service).

* `payouts.batch_run` (beat, every PAYOUT_BATCH_EVERY_SECONDS) and its outbox twin
  `payouts.batch_run_requested` (`payout.batch_requested`, the operator's "pay out now"): one
  fenced batch over the due wallets; a run that finds the lease busy does nothing.
* `payouts.wallet_run_requested` (`payout.wallet_requested`, a photographer's "pay me now" from
  the studio dashboard): pays that one wallet under the same lease, once per message; a busy
  lease (a batch running) or the kill switch makes it retry later, with backoff.
* `payouts.submit` (`payout.created`, providers queue): the provider call, outside any
  transaction, with the payout id as the provider's idempotency key.
* `payouts.settle_submitted` (beat, providers queue): ask the providers about submitted payouts.
* `payouts.requeue_stale` (beat): queue again pending payouts whose message was lost.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from apps.core.locks import LeaseError
from apps.ops.killswitch import CapabilityDisabled
from apps.outbox.routing import outbox_consumer
from apps.payouts.services import (
    TOPIC_BATCH_REQUESTED,
    TOPIC_PAYOUT_CREATED,
    TOPIC_WALLET_REQUESTED,
    WALLET_REQUEST_CONSUMER,
    payout_batch_run,
    payout_submit,
    payout_wallet_run,
    payouts_requeue_stale,
    payouts_settle_submitted,
)
from apps.tenancy.context import system_context
from tasks.payments import PROVIDER_CALL_RETRY


@shared_task(name="payouts.batch_run", acks_late=True)
def batch_run() -> str:
    """Idempotent: a batch pays each wallet its balance once; a second runner finds the lease busy."""
    return payout_batch_run(trigger="schedule").describe()


@outbox_consumer(TOPIC_BATCH_REQUESTED, name="payouts.batch_run_requested", queue="payments", once=False)
def batch_run_requested(*, message_id: str, payload: dict[str, Any]) -> str:
    return payout_batch_run(trigger=str(payload.get("trigger") or "operator")).describe()


# A request waits for the batch lease (a batch over every due wallet may hold it for minutes) or
# for the kill switch to be released: backoff up to 10 minutes between tries (jittered), about
# five hours at most. A request that gives up is not lost money: the scheduled batch pays the wallet.
WALLET_REQUEST_RETRY: dict[str, Any] = {
    "autoretry_for": (LeaseError, CapabilityDisabled),
    "retry_backoff": 1,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 40,
}


@outbox_consumer(
    TOPIC_WALLET_REQUESTED, name=WALLET_REQUEST_CONSUMER, queue="payments", once=False, **WALLET_REQUEST_RETRY
)
def wallet_run_requested(*, message_id: str, payload: dict[str, Any]) -> str:
    """Idempotent: the service applies each message once (inbox row in its payout transaction)."""
    trigger = (
        f"wallet request: studio {payload['tenant_id']}, wallet {payload['account_id']}, "
        f"user {payload.get('requested_by')} (message {message_id})"
    )
    return payout_wallet_run(
        tenant_id=int(payload["tenant_id"]),
        account_id=int(payload["account_id"]),
        message_id=message_id,
        trigger=trigger,
    ).describe()


@outbox_consumer(
    TOPIC_PAYOUT_CREATED,
    name="payouts.submit",
    **{**PROVIDER_CALL_RETRY, "autoretry_for": (*PROVIDER_CALL_RETRY["autoretry_for"], CapabilityDisabled)},
)
def submit(*, message_id: str, payload: dict[str, Any]) -> str:
    return payout_submit(payout_id=payload["payout_id"]).status


@shared_task(name="payouts.settle_submitted", acks_late=True)
def settle_submitted() -> dict[str, int]:
    """Idempotent: a settled payout is no longer submitted; a still-pending one is asked again later."""
    return payouts_settle_submitted()


@shared_task(name="payouts.requeue_stale", acks_late=True)
def requeue_stale_task() -> int:
    """Idempotent: a payout queued again is left alone for another REQUEUE_STALE_AFTER_SECONDS."""
    with system_context("stale payout sweep"):
        return len(payouts_requeue_stale(older_than_seconds=settings.REQUEUE_STALE_AFTER_SECONDS))
