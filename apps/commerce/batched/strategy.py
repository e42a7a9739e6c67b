"""`BatchedStrategy`: reserve without touching the stock row; release exactly once.

See the package docstring for the protocol (shared advisory lock, coalesced wake-ups).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import connection
from django.db.transaction import TransactionManagementError

from apps.commerce.batched.common import (
    ADVISORY_KEY,
    CONFIRMED,
    LINES,
    PENDING,
    RELEASED,
    RESERVATIONS,
    STOCK,
    publish_wake_up,
)
from apps.commerce.inventory import InventoryStrategy
from apps.commerce.models import Checkout, CheckoutLine, InventoryReservation

_RESERVE_SQL = f"""
    WITH inserted AS (
        INSERT INTO {RESERVATIONS}
               (tenant_id, checkout_id, line_id, product_id, quantity, status, expires_at, created_at)
        SELECT %(tenant_id)s, %(checkout_id)s, l.line_id, l.product_id, l.quantity, '{PENDING}',
               %(expires_at)s, %(now)s
          FROM unnest(%(line_ids)s::bigint[], %(product_ids)s::bigint[], %(quantities)s::int[])
               AS l(line_id, product_id, quantity)
        RETURNING product_id
    )
    SELECT DISTINCT i.product_id FROM inserted i
     WHERE NOT EXISTS (SELECT 1 FROM {RESERVATIONS} r
                        WHERE r.tenant_id = %(tenant_id)s AND r.product_id = i.product_id
                          AND r.status = '{PENDING}')
"""


class BatchedStrategy(InventoryStrategy):
    """Defer every decision to the SKU's writer; never touch the stock row in a checkout."""

    name = "batched"

    def reserve(self, *, checkout: Checkout, lines: Sequence[CheckoutLine], now: datetime) -> None:
        """Insert one pending reservation per print line and wake the SKUs' writers (coalesced).

        Joins the checkout's transaction. Lines keep their state `reserved`; the checkout stays
        `reserving` until the writer decided and `checkout_reservations_settle` ran. Takes a
        shared advisory lock per SKU until commit (see the module docstring); never waits.
        """
        if not lines:
            return
        if not connection.in_atomic_block:
            raise TransactionManagementError("BatchedStrategy.reserve joins the checkout's transaction")
        product_ids = sorted({line.product_id for line in lines})
        with connection.cursor() as cursor:
            # First, in its own statement: the writer's final check must see this transaction
            # as in flight before we look for other pending reservations below.
            cursor.execute(
                f"SELECT pg_advisory_xact_lock_shared({ADVISORY_KEY.format('p')}) "
                "FROM unnest(%s::bigint[]) AS p ORDER BY p",
                [product_ids],
            )
        ordered = sorted(lines, key=lambda line: line.position)
        with connection.cursor() as cursor:
            # Insert, and list the SKUs that had no OTHER pending reservation, in one statement:
            # its NOT EXISTS reads the statement's snapshot, which excludes the rows it inserts.
            cursor.execute(
                _RESERVE_SQL,
                {
                    "tenant_id": checkout.tenant_id,
                    "checkout_id": checkout.pk,
                    "expires_at": checkout.expires_at,
                    "now": now,
                    "line_ids": [line.pk for line in ordered],
                    "product_ids": [line.product_id for line in ordered],
                    "quantities": [line.quantity for line in ordered],
                },
            )
            to_wake = sorted(int(row[0]) for row in cursor.fetchall())
        for product_id in to_wake:
            publish_wake_up(tenant_id=checkout.tenant_id, product_id=product_id, reason="first pending")

    def release(self, *, reservations: Sequence[InventoryReservation], now: datetime) -> int:
        """Give back the stock of confirmed `reservations` exactly once; return how many.

        Runs in the caller's transaction, which holds the checkout's row lock and has locked
        these reservations (commerce's close path). The status-conditional UPDATE is what makes
        it once: a second call (or a racing expiry) finds them `released` and adds nothing.
        Pending ones (closed before their writer ran) are released unused, their lines marked
        `released`, and their writer woken so no other waiting reservation depends on them.
        """
        ids = [r.pk for r in reservations]
        if not ids:
            return 0
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {RESERVATIONS} SET status = '{RELEASED}', released_at = %s"
                f" WHERE id = ANY(%s::bigint[]) AND status = '{CONFIRMED}'"
                " RETURNING tenant_id, product_id, quantity",
                [now, ids],
            )
            given_back: dict[tuple[int, int], int] = {}
            released = 0
            for tenant_id, product_id, quantity in cursor.fetchall():
                given_back[(tenant_id, product_id)] = given_back.get((tenant_id, product_id), 0) + quantity
                released += 1
            for (tenant_id, product_id), quantity in sorted(given_back.items()):
                cursor.execute(
                    f"UPDATE {STOCK} SET quantity = quantity + %s, updated_at = %s"
                    " WHERE tenant_id = %s AND product_id = %s",
                    [quantity, now, tenant_id, product_id],
                )
            cursor.execute(
                f"UPDATE {RESERVATIONS} SET status = '{RELEASED}', decided_at = %s, released_at = %s"
                f" WHERE id = ANY(%s::bigint[]) AND status = '{PENDING}' RETURNING tenant_id, product_id, line_id",
                [now, now, ids],
            )
            unused = cursor.fetchall()
            if unused:
                cursor.execute(
                    f"UPDATE {LINES} SET state = %s WHERE id = ANY(%s::bigint[])",
                    [CheckoutLine.State.RELEASED.value, [row[2] for row in unused]],
                )
        for tenant_id, product_id in sorted({(row[0], row[1]) for row in unused}):
            publish_wake_up(tenant_id=tenant_id, product_id=product_id, reason="pending released")
        return released
