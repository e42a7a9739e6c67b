"""Hot stock: the `batched` inventory strategy and its single fenced writer per SKU.

A checkout never touches the stock row. `BatchedStrategy.reserve` inserts `pending`
reservations in the checkout's transaction; one writer per SKU (`inventory_sku_drain`, run by
the Celery task `inventory.drain_sku` on the `inventory` queue) decides them first come, first
served, in batches, and applies ONE `UPDATE catalog_stock SET quantity = quantity - n` per batch.

Batch transaction (`inventory_batch_decide`), all or nothing:
1. `lease.check()`: the fenced lock's epoch is still current (FOR SHARE on its `core_lease` row,
   held to the end of the transaction; see apps/core/locks.py);
2. lock up to INVENTORY_BATCH_SIZE pending reservations of the SKU, `ORDER BY id FOR UPDATE
   SKIP LOCKED` (a row being closed by an expiry is skipped, never waited for), and read (not
   lock) their checkouts' statuses;
3. lock the stock row (`FOR UPDATE`; only the writer and releases write it), decide greedily in
   id order: a reservation is confirmed when its quantity still fits, else rejected (sold out);
   one whose checkout is no longer `reserving` (closed while it waited) is released unused;
4. `UPDATE catalog_stock SET quantity = quantity - n, epoch = :mine WHERE ... AND epoch <= :mine`;
5. one UPDATE deciding every reservation of the batch (`writer_epoch = :mine`, `decided_at`);
6. one `inventory.reservation_decided` outbox message per decided reservation (5 and 6 are one
   statement, `writer._record_decisions`). Its consumer (`inventory.settle_checkout`) calls
   `checkout_reservations_settle`, which copies outcomes to the lines and makes the checkout
   payable (confirmed lines only: a sold-out line is never charged) or `sold_out`. Settling
   runs after this commit in other workers, so the per-SKU serial section stays short and
   never takes checkout row locks (whose lock order is checkout -> reservations -> stock).

Batching under load: a backlog drains in full batches back to back. Once a batch comes back
partial, the writer has caught up, and it waits INVENTORY_WRITER_LINGER_SECONDS (10 ms) before
the next: reservations arriving meanwhile share one transaction instead of taking one each.

Fencing: two fences, both inside the batch transaction. The primary one is `lease.check()`:
a writer whose epoch was superseded gets StaleLeaseError before it reads anything, and a newer
acquisition cannot commit its epoch bump while this transaction is open (so two writers' batches
never interleave). The second is `catalog_stock.epoch`: it records the epoch of the last writer
that changed the quantity, and the decrement carries `AND epoch <= :mine`, so a write from an
epoch older than one that already wrote is refused by the row itself (StaleLeaseError), even if
a lease row were ever reset (releases add stock back without touching `epoch`). The check
constraint `quantity >= 0` stops an oversell whatever happens; a crash before COMMIT rolls
everything back (nothing lost, nothing doubled).

Wake-ups (coalesced, never lost). A reservation publishes an `inventory.reservations_pending`
outbox message only when no OTHER committed pending reservation of its SKU exists: under load
one message covers a whole backlog. Why no reservation is ever stranded:
* a checkout takes `pg_advisory_xact_lock_shared(k)` (k = hash of the SKU's lock name) before
  it looks; shared holders never wait for each other;
* a writer ends its tenure only after `pg_try_advisory_xact_lock(k)` (exclusive) succeeded and,
  in the same transaction, no pending reservation was found. Success means no checkout that
  may have skipped its wake-up is still open: each such checkout committed before that check
  and is seen by it. While checkouts are in flight the try fails and the writer keeps polling
  (it never blocks them);
* the writer re-checks after releasing the lock (a wake-up delivered while the lock was still
  held is dropped as "busy"), and publishes a fresh wake-up if its time budget runs out;
* `inventory.sweep` (beat) wakes the writer of any SKU whose pending reservations are older
  than INVENTORY_SWEEP_MIN_AGE_SECONDS: the last resort after crashes or dead-lettered messages.

Release (expiry and failure, `BatchedStrategy.release`, called by the commerce close path with
the checkout row and its reservations locked): `UPDATE ... SET status = 'released' WHERE id IN
(...) AND status = 'confirmed' RETURNING quantity`, then `quantity = quantity + n` per SKU, in
the same transaction: a reservation gives its stock back once, however many expiry runs race.
Pending reservations of a closed checkout are released unused (they never held stock).

Reconciliation (`manage.py inventory_reconcile`): pending reservations hold no stock under any
strategy here, so for every SKU `stock.quantity + Σ confirmed = stock.initial_quantity`.

Modules: `strategy` (reserve, release), `writer` (batch, drain loop, straggler query), `reads`
(reconciliation balances, operator page), `common` (topics, table names, lock names).
"""

from apps.commerce.batched.common import (
    TOPIC_RESERVATION_DECIDED,
    TOPIC_RESERVATIONS_PENDING,
    writer_lock_name,
)
from apps.commerce.batched.reads import SkuActivity, SkuBalance, inventory_activity, inventory_balances
from apps.commerce.batched.strategy import BatchedStrategy
from apps.commerce.batched.writer import (
    BatchOutcome,
    DrainReport,
    inventory_batch_decide,
    inventory_sku_drain,
    inventory_skus_with_stale_pending,
)

__all__ = [
    "TOPIC_RESERVATIONS_PENDING",
    "TOPIC_RESERVATION_DECIDED",
    "BatchOutcome",
    "BatchedStrategy",
    "DrainReport",
    "SkuActivity",
    "SkuBalance",
    "inventory_activity",
    "inventory_balances",
    "inventory_batch_decide",
    "inventory_sku_drain",
    "inventory_skus_with_stale_pending",
    "writer_lock_name",
]
