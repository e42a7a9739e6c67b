"""Celery tasks of the payouts domain (thin: call a service).

* `payouts.batch_run` (beat, every PAYOUT_BATCH_EVERY_SECONDS) and its outbox twin
  `payouts.batch_run_requested` (`payout.batch_requested`, the operator's "pay out now"): one
  fenced batch over the due wallets; a run that finds the lease busy does nothing.
* `payouts.submit` (`payout.created`, providers queue): the provider call, outside any
  transaction, with the payout id as the provider's idempotency key.
* `payouts.settle_submitted` (beat, providers queue): ask the providers about submitted payouts.
* `payouts.requeue_stale` (beat): queue again pending payouts whose message was lost.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from apps.ops.killswitch import CapabilityDisabled
from apps.outbox.routing import outbox_consumer
from apps.payouts.services import (
    TOPIC_BATCH_REQUESTED,
    TOPIC_PAYOUT_CREATED,
    payout_batch_run,
    payout_submit,
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
