"""The SKU's single fenced writer: batch decisions, the drain loop, the straggler query.

See the package docstring for the batch transaction, the fences and the hand-over protocol.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from apps.commerce.batched.common import (
    ADVISORY_KEY,
    CHECKOUTS,
    CONFIRMED,
    PENDING,
    REJECTED,
    RELEASED,
    RESERVATIONS,
    STOCK,
    TOPIC_RESERVATION_DECIDED,
    publish_wake_up,
    writer_lock_name,
)
from apps.commerce.models import Checkout, InventoryReservation
from apps.core.locks import FencedLease, LockLost, StaleLeaseError, try_fenced_lock
from apps.core.request_context import get_request_id
from apps.outbox.models import OutboxMessage, uuid7
from apps.tenancy.context import tenant_context

logger = logging.getLogger("darkroom.inventory")


@dataclass
class BatchOutcome:
    """What one batch transaction decided (ids are reservation ids)."""

    product_id: int
    epoch: int
    batch_size: int  # the most reservations this batch could take
    confirmed: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    units_taken: int = 0
    stock_after: int | None = None
    checkout_ids: list[str] = field(default_factory=list)

    @property
    def decided(self) -> int:
        return len(self.confirmed) + len(self.rejected) + len(self.released)

    @property
    def full(self) -> bool:
        """The batch took all it could: more may be waiting right now."""
        return self.decided >= self.batch_size


DrainStatus = Literal["drained", "busy", "lost", "budget"]


@dataclass
class DrainReport:
    """The outcome of one `inventory_sku_drain` call.

    `status`: `drained` (nothing pending, writer role handed back), `busy` (another writer
    holds the SKU: it covers what is pending), `lost` (our lease was superseded mid-way: the
    new holder covers), `budget` (time budget spent; a fresh wake-up was published).
    """

    product_id: int
    status: DrainStatus = "drained"
    batches: int = 0
    confirmed: int = 0
    rejected: int = 0
    released: int = 0
    tenures: int = 0

    @property
    def decided(self) -> int:
        return self.confirmed + self.rejected + self.released


def inventory_batch_decide(
    *, lease: FencedLease, tenant_id: int, product_id: int, batch_size: int | None = None, now: datetime | None = None
) -> BatchOutcome:
    """Decide the next batch of pending reservations of one SKU in ONE transaction.

    Must be called by the holder of `writer_lock_name(product_id)`, outside any transaction
    (its commit is the decision), in `tenant_id`'s context or with that id (it enters it).
    Returns an empty outcome when nothing is pending (or every pending row is locked by a
    closing checkout). Raises StaleLeaseError (nothing written) when the lease was superseded or
    the stock row carries a newer writer's epoch.
    """
    size = int(batch_size or settings.INVENTORY_BATCH_SIZE)
    moment = now or timezone.now()
    outcome = BatchOutcome(product_id=product_id, epoch=lease.epoch, batch_size=size)
    with tenant_context(tenant_id), transaction.atomic(durable=True):
        lease.check()
        with connection.cursor() as cursor:
            # The checkout's status comes from a correlated primary-key probe, not a join, so
            # the plan stays an index lookup per row whatever the statistics say. Checkout rows
            # are read, never locked here (lock order: checkout -> reservations -> stock).
            cursor.execute(
                f"SELECT r.id, r.quantity, r.checkout_id,"
                f" (SELECT c.status FROM {CHECKOUTS} c WHERE c.id = r.checkout_id)"
                f" FROM {RESERVATIONS} r WHERE r.tenant_id = %s AND r.product_id = %s AND r.status = '{PENDING}'"
                " ORDER BY r.id LIMIT %s FOR UPDATE OF r SKIP LOCKED",
                [tenant_id, product_id, size],
            )
            batch = cursor.fetchall()
            if not batch:
                return outcome
            cursor.execute(
                f"SELECT quantity, epoch FROM {STOCK} WHERE tenant_id = %s AND product_id = %s FOR UPDATE",
                [tenant_id, product_id],
            )
            stock = cursor.fetchone()
            if stock is not None and stock[1] > lease.epoch:
                raise StaleLeaseError(
                    f"stock of product {product_id} was written by epoch {stock[1]} > ours {lease.epoch}"
                )
            left = int(stock[0]) if stock is not None else 0
            statuses: list[str] = []
            for reservation_id, quantity, checkout_id, checkout_status in batch:
                if checkout_status != Checkout.Status.RESERVING:
                    status = RELEASED
                    outcome.released.append(reservation_id)
                elif quantity <= left:
                    status = CONFIRMED
                    left -= quantity
                    outcome.units_taken += quantity
                    outcome.confirmed.append(reservation_id)
                else:
                    status = REJECTED
                    outcome.rejected.append(reservation_id)
                statuses.append(status)
                outcome.checkout_ids.append(str(checkout_id))
            if outcome.units_taken:
                cursor.execute(
                    f"UPDATE {STOCK} SET quantity = quantity - %s, epoch = %s, updated_at = %s"
                    " WHERE tenant_id = %s AND product_id = %s AND epoch <= %s",
                    [outcome.units_taken, lease.epoch, moment, tenant_id, product_id, lease.epoch],
                )
                if cursor.rowcount != 1:
                    raise StaleLeaseError(f"stock of product {product_id} refused epoch {lease.epoch}")
            outcome.stock_after = left if stock is not None else None
            _record_decisions(
                cursor,
                tenant_id=tenant_id,
                product_id=product_id,
                epoch=lease.epoch,
                now=moment,
                reservation_ids=[row[0] for row in batch],
                statuses=statuses,
            )
    return outcome


# The reservations' decisions and their outbox messages in ONE statement. Each row's status and
# message id are looked up by its position in the id array (a batch is small), which keeps the
# plan a primary-key probe per id with no join (a join against unnest() cost a third more). The
# INSERT writes the
# columns `outbox_publish` writes (apps/outbox/models.py: ids are uuid7, status pending, due now;
# the statement trigger NOTIFYs the relay); the drain tests run these rows through the relay's
# routing and consumer, so a change of the outbox table shows up there.
_DECIDE_SQL = f"""
    WITH decided AS (
        UPDATE {RESERVATIONS} AS r
           SET status = (%(statuses)s::text[])[array_position(%(ids)s::bigint[], r.id)],
               writer_epoch = %(epoch)s, decided_at = %(now)s,
               released_at = CASE WHEN (%(statuses)s::text[])[array_position(%(ids)s::bigint[], r.id)]
                                       = '{RELEASED}' THEN %(now)s::timestamptz END
         WHERE r.id = ANY(%(ids)s::bigint[]) AND r.status = '{PENDING}'
     RETURNING r.id, r.checkout_id, r.quantity, r.status,
               (%(message_ids)s::uuid[])[array_position(%(ids)s::bigint[], r.id)] AS message_id
    )
    INSERT INTO {OutboxMessage._meta.db_table}
           (id, tenant_id, topic, aggregate_type, aggregate_id, payload, headers, status, attempts,
            next_attempt_at, created_at, published_at, last_error)
    SELECT message_id, %(tenant_id)s, %(topic)s, 'inventory_reservation', id::text,
           jsonb_build_object('tenant_id', %(tenant_id)s, 'reservation_id', id, 'checkout_id', checkout_id::text,
                              'product_id', %(product_id)s, 'quantity', quantity, 'status', status,
                              'writer_epoch', %(epoch)s),
           %(headers)s::jsonb, 'pending', 0, %(now)s, %(now)s, NULL, ''
      FROM decided ORDER BY decided.id
"""


def _record_decisions(
    cursor: Any,
    *,
    tenant_id: int,
    product_id: int,
    epoch: int,
    now: datetime,
    reservation_ids: Sequence[int],
    statuses: Sequence[str],
) -> None:
    """Decide the locked reservations and publish one `inventory.reservation_decided` message per
    decision, in the writer's transaction (after its stock UPDATE, before its COMMIT)."""
    cursor.execute(
        _DECIDE_SQL,
        {
            "epoch": epoch,
            "now": now,
            "ids": list(reservation_ids),
            "statuses": list(statuses),
            "message_ids": [uuid7() for _ in reservation_ids],
            "tenant_id": tenant_id,
            "product_id": product_id,
            "topic": TOPIC_RESERVATION_DECIDED,
            "headers": json.dumps({"request_id": get_request_id()}),
        },
    )
    if cursor.rowcount != len(reservation_ids):
        # Every row is pending and locked by this transaction; anything else is a bug: roll back.
        raise RuntimeError(f"decided {cursor.rowcount} of {len(reservation_ids)} locked reservations")


def inventory_sku_drain(
    *,
    tenant_id: int,
    product_id: int,
    batch_size: int | None = None,
    max_seconds: float | None = None,
    on_batch: Callable[[BatchOutcome], None] | None = None,
) -> DrainReport:
    """Be the SKU's writer until nothing is pending: batch after batch, then hand back.

    Outside any transaction (each batch is its own durable transaction). Takes
    `try_fenced_lock(writer_lock_name(product_id))`; if another writer holds it, returns
    `busy` at once (that writer loops until empty and re-checks after releasing). Ends a
    tenure only after the exclusive advisory check (package docstring) found nothing pending,
    re-checks after releasing (also after losing the lease: it takes the SKU again if nobody
    else holds it), and publishes a fresh wake-up when `max_seconds`
    (INVENTORY_DRAIN_MAX_SECONDS) runs out with work left. `on_batch` is called after each
    committed batch. Raises LockBusy when the previous holder's transaction outlived the
    acquisition wait; database errors propagate (the task retries, the sweep is the backstop).
    """
    budget = float(max_seconds if max_seconds is not None else settings.INVENTORY_DRAIN_MAX_SECONDS)
    ttl = float(settings.INVENTORY_WRITER_LOCK_TTL_SECONDS)
    poll = float(settings.INVENTORY_WRITER_POLL_SECONDS)
    linger = float(settings.INVENTORY_WRITER_LINGER_SECONDS)
    deadline = time.monotonic() + budget
    report = DrainReport(product_id=product_id)
    if connection.in_atomic_block:
        raise TransactionManagementError("inventory_sku_drain must run outside any transaction")
    with tenant_context(tenant_id):
        while True:
            with try_fenced_lock(writer_lock_name(product_id), ttl=ttl) as lease:
                if lease is None:
                    report.status = "busy"
                    return report
                report.tenures += 1
                report.status = _hold_writer_role(
                    lease=lease,
                    tenant_id=tenant_id,
                    product_id=product_id,
                    batch_size=batch_size,
                    deadline=deadline,
                    poll=poll,
                    linger=linger,
                    report=report,
                    on_batch=on_batch,
                )
            # "drained": a wake-up delivered while we still held the lock was dropped as busy.
            # "lost": our lease was superseded or our Redis key expired; whoever holds the SKU
            # now covers what is pending, and if nobody does, we take it again. Either way, look.
            if not _pending_exists(tenant_id=tenant_id, product_id=product_id):
                return report
            if report.status == "budget" or time.monotonic() >= deadline:
                report.status = "budget"
                with transaction.atomic(durable=True):
                    publish_wake_up(tenant_id=tenant_id, product_id=product_id, reason="writer budget spent")
                return report


def _hold_writer_role(
    *,
    lease: FencedLease,
    tenant_id: int,
    product_id: int,
    batch_size: int | None,
    deadline: float,
    poll: float,
    linger: float,
    report: DrainReport,
    on_batch: Callable[[BatchOutcome], None] | None,
) -> DrainStatus:
    """Decide batch after batch while the lease holds. A full batch is followed by the next at
    once (a backlog drains at full speed); after a partial one the writer has caught up and
    waits `linger` seconds, so that what arrives meanwhile goes into one batch rather than one
    transaction per reservation."""
    extended_at = time.monotonic()
    try:
        while True:
            if time.monotonic() - extended_at > lease.ttl / 3:
                lease.extend()
                extended_at = time.monotonic()
            outcome = inventory_batch_decide(
                lease=lease, tenant_id=tenant_id, product_id=product_id, batch_size=batch_size
            )
            if outcome.decided:
                report.batches += 1
                report.confirmed += len(outcome.confirmed)
                report.rejected += len(outcome.rejected)
                report.released += len(outcome.released)
                if on_batch is not None:
                    on_batch(outcome)
                if time.monotonic() >= deadline:
                    return "budget"
                if not outcome.full and linger > 0:
                    time.sleep(linger)
                continue
            final = _final_check(tenant_id=tenant_id, product_id=product_id)
            if final == "empty":
                return "drained"
            if time.monotonic() >= deadline:
                return "budget"
            if final == "in_flight":
                # Checkouts of this SKU are committing right now; they may have skipped their
                # wake-up because ours was pending. Poll instead of blocking them.
                time.sleep(poll)
    except (StaleLeaseError, LockLost):
        logger.warning("inventory writer superseded", extra={"product_id": product_id, "epoch": lease.epoch})
        return "lost"


def _final_check(*, tenant_id: int, product_id: int) -> Literal["empty", "pending", "in_flight"]:
    """Whether the writer may step down: no checkout of the SKU in flight, nothing pending."""
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_try_advisory_xact_lock({ADVISORY_KEY.format('%s')})", [product_id])
        row = cursor.fetchone()
        if not (row and row[0]):
            return "in_flight"
        return "pending" if _pending_exists(tenant_id=tenant_id, product_id=product_id) else "empty"


def _pending_exists(*, tenant_id: int, product_id: int) -> bool:
    with tenant_context(tenant_id):
        return InventoryReservation.objects.filter(
            tenant_id=tenant_id, product_id=product_id, status=InventoryReservation.Status.PENDING
        ).exists()


# --- stragglers -----------------------------------------------------------------------------


def inventory_skus_with_stale_pending(*, older_than_seconds: float, limit: int = 1000) -> list[tuple[int, int]]:
    """(tenant_id, product_id) of SKUs with a pending reservation older than the threshold.

    Read across tenants: the caller acts in the system context (else RLS limits it to one).
    """
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    rows = (
        InventoryReservation.objects.filter(status=InventoryReservation.Status.PENDING, created_at__lt=cutoff)
        .values_list("tenant_id", "product_id")
        .order_by("tenant_id", "product_id")
        .distinct()[:limit]
    )
    return [(int(t), int(p)) for t, p in rows]
