"""Reads of hot stock: the reconciliation balances and the operator page's activity."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from apps.commerce.batched.common import CONFIRMED, PENDING, RESERVATIONS, STOCK, writer_lock_name


@dataclass(frozen=True)
class SkuBalance:
    """One SKU's books: `stock + confirmed_units` must equal `initial` (`drift` = the difference).

    Pending reservations hold no stock under either strategy (`row_lock` decides at once;
    `batched` decrements only when it confirms), so they are reported, not counted. Released
    and rejected reservations gave back, or never took, their units.
    """

    tenant_id: int
    product_id: int
    quantity: int | None
    initial: int | None
    confirmed_units: int
    pending_count: int
    pending_units: int
    oldest_pending_at: datetime | None

    @property
    def drift(self) -> int:
        """initial - (stock + confirmed); a SKU with reservations but no stock row counts its
        confirmed units as drift."""
        return (self.initial or 0) - ((self.quantity or 0) + self.confirmed_units)


def inventory_balances(*, tenant_id: int | None = None) -> list[SkuBalance]:
    """Every SKU with a stock row or reservations, from ONE statement (one snapshot, so a batch
    or release that commits meanwhile is seen entirely or not at all).

    Cross-tenant when the caller acts in the system context; RLS limits it to the current
    tenant otherwise. `tenant_id` narrows it further.
    """
    where = "WHERE tenant_id = %s" if tenant_id is not None else ""
    params: list[Any] = [tenant_id, tenant_id] if tenant_id is not None else []
    sql = f"""
        WITH r AS (
            SELECT tenant_id, product_id,
                   COALESCE(SUM(quantity) FILTER (WHERE status = '{CONFIRMED}'), 0) AS confirmed_units,
                   COUNT(*) FILTER (WHERE status = '{PENDING}') AS pending_count,
                   COALESCE(SUM(quantity) FILTER (WHERE status = '{PENDING}'), 0) AS pending_units,
                   MIN(created_at) FILTER (WHERE status = '{PENDING}') AS oldest_pending_at
              FROM {RESERVATIONS} {where}
             GROUP BY tenant_id, product_id
        ), s AS (SELECT tenant_id, product_id, quantity, initial_quantity FROM {STOCK} {where})
        SELECT COALESCE(s.tenant_id, r.tenant_id), COALESCE(s.product_id, r.product_id),
               s.quantity, s.initial_quantity, COALESCE(r.confirmed_units, 0),
               COALESCE(r.pending_count, 0), COALESCE(r.pending_units, 0), r.oldest_pending_at
          FROM s FULL OUTER JOIN r ON r.tenant_id = s.tenant_id AND r.product_id = s.product_id
         ORDER BY 1, 2
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [
            SkuBalance(
                tenant_id=int(row[0]),
                product_id=int(row[1]),
                quantity=None if row[2] is None else int(row[2]),
                initial=None if row[3] is None else int(row[3]),
                confirmed_units=int(row[4]),
                pending_count=int(row[5]),
                pending_units=int(row[6]),
                oldest_pending_at=row[7],
            )
            for row in cursor.fetchall()
        ]


@dataclass(frozen=True)
class SkuActivity:
    """What the operator page shows for one hot SKU."""

    tenant_id: int
    product_id: int
    sku: str
    pending_count: int
    oldest_pending_age_seconds: float | None
    decided_in_window: int
    drain_rate_per_second: float
    quantity: int | None
    initial: int | None
    writer_epoch: int | None
    writer_holder: str
    writer_state: str


def inventory_activity(*, window_seconds: int) -> list[SkuActivity]:
    """SKUs with pending reservations or writer decisions in the last `window_seconds`, busiest
    first: pending depth, age of the oldest pending, drain rate (writer decisions per second
    over the window), stock, and the writer's lease. The caller acts in the system context.

    Cost: the pending part uses the partial index; the window part scans reservations decided
    recently (no index on `decided_at`), acceptable for an operator page.
    """
    from apps.catalog.models import Product, Stock
    from apps.core.models import Lease

    now = timezone.now()
    cutoff = now - timedelta(seconds=window_seconds)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT tenant_id, product_id, COUNT(*) FILTER (WHERE status = '{PENDING}'),"
            f" MIN(created_at) FILTER (WHERE status = '{PENDING}'),"
            " COUNT(*) FILTER (WHERE decided_at >= %s AND writer_epoch IS NOT NULL)"
            f" FROM {RESERVATIONS} WHERE status = '{PENDING}' OR decided_at >= %s"
            " GROUP BY tenant_id, product_id",
            [cutoff, cutoff],
        )
        rows = cursor.fetchall()
    product_ids = [int(row[1]) for row in rows]
    skus = dict(Product.objects.filter(pk__in=product_ids).values_list("pk", "sku"))
    stock = {s.product_id: s for s in Stock.objects.filter(product_id__in=product_ids)}
    leases = {lease.name: lease for lease in Lease.objects.filter(name__in=[writer_lock_name(p) for p in product_ids])}
    activity = []
    for tenant_id, product_id, pending, oldest, decided in rows:
        lease = leases.get(writer_lock_name(product_id))
        row = stock.get(product_id)
        activity.append(
            SkuActivity(
                tenant_id=int(tenant_id),
                product_id=int(product_id),
                sku=skus.get(product_id, "?"),
                pending_count=int(pending),
                oldest_pending_age_seconds=(now - oldest).total_seconds() if oldest else None,
                decided_in_window=int(decided),
                drain_rate_per_second=int(decided) / window_seconds,
                quantity=row.quantity if row else None,
                initial=row.initial_quantity if row else None,
                writer_epoch=lease.epoch if lease else None,
                writer_holder=lease.holder if lease else "",
                writer_state=lease.state if lease else "never",
            )
        )
    activity.sort(key=lambda a: (-a.pending_count, -a.decided_in_window, a.product_id))
    return activity
