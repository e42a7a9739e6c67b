"""Celery tasks of the inventory domain: the per-SKU batched writer, settling, the straggler sweep.

* `inventory.drain_sku` (queue `inventory`), consumer of `inventory.reservations_pending`: be the
  SKU's single fenced writer until nothing is pending (`inventory_sku_drain`). No inbox row
  (`once=False`): a duplicate wake-up finds the lock busy or nothing pending, which is harmless.
  LockBusy (the previous writer's transaction is still open) and database errors are retried
  with backoff, a bounded number of times (then the sweep is the backstop).
* `inventory.settle_checkout` (queue `default`), consumer of `inventory.reservation_decided`:
  `checkout_reservations_settle` for the reservation's checkout, once per message (inbox row in
  the same transaction). It runs outside the writer, so the SKU's serial section stays short.
* `inventory.sweep` (beat, queue `inventory`): wake the writer of every SKU whose pending
  reservations are older than INVENTORY_SWEEP_MIN_AGE_SECONDS (crash or dead-letter recovery).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError

from apps.commerce.batched import (
    TOPIC_RESERVATION_DECIDED,
    TOPIC_RESERVATIONS_PENDING,
    inventory_sku_drain,
    inventory_skus_with_stale_pending,
)
from apps.commerce.services import checkout_reservations_settle
from apps.core.locks import LockBusy
from apps.outbox.routing import outbox_consumer
from apps.tenancy.context import system_context, tenant_context


@outbox_consumer(
    TOPIC_RESERVATIONS_PENDING,
    name="inventory.drain_sku",
    once=False,
    autoretry_for=(LockBusy, DatabaseError),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=8,
)
def drain_sku(*, message_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    report = inventory_sku_drain(tenant_id=int(payload["tenant_id"]), product_id=int(payload["product_id"]))
    return {"status": report.status, "batches": report.batches, "decided": report.decided}


@outbox_consumer(TOPIC_RESERVATION_DECIDED, name="inventory.settle_checkout", queue="default")
def settle_checkout(*, message_id: str, payload: dict[str, Any]) -> str:
    checkout = checkout_reservations_settle(tenant_id=int(payload["tenant_id"]), checkout_id=payload["checkout_id"])
    return checkout.status


@shared_task(name="inventory.sweep", acks_late=True)
def sweep() -> int:
    """Idempotent: waking a writer with nothing to do costs one lock attempt."""
    with system_context("inventory straggler sweep"):
        stale = inventory_skus_with_stale_pending(older_than_seconds=settings.INVENTORY_SWEEP_MIN_AGE_SECONDS)
    for tenant_id, product_id in stale:
        with tenant_context(tenant_id):
            drain_sku.apply_async(
                kwargs={
                    "message_id": f"sweep:{tenant_id}:{product_id}",
                    "payload": {"tenant_id": tenant_id, "product_id": product_id, "reason": "sweep"},
                },
                queue="inventory",
            )
    return len(stale)
