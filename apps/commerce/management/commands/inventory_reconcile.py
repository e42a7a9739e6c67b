"""`manage.py inventory_reconcile`: prove the stock books balance for every SKU.

For every SKU: `stock.quantity + Σ confirmed reservation units = stock.initial_quantity`.
Pending reservations hold no stock under either strategy (`row_lock` decides inside the
checkout; `batched` decrements only when its writer confirms), so they are listed (depth and
age) but not counted; released and rejected reservations gave back, or never took, their units.
All figures come from one statement, i.e. one snapshot. Exit status 1 when any SKU drifts.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from apps.commerce.batched import inventory_balances
from apps.tenancy.context import system_context


class Command(BaseCommand):
    help = "Check stock + confirmed = initial for every SKU; list drift; exit 1 on drift."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant-id", type=int, default=None, help="only this tenant's SKUs")
        parser.add_argument("--all", action="store_true", help="list every SKU, not only drifting or pending ones")
        parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")

    def handle(self, *args: Any, **options: Any) -> None:
        with system_context("inventory reconciliation"):
            balances = inventory_balances(tenant_id=options["tenant_id"])
        now = timezone.now()
        drifting = [b for b in balances if b.drift != 0]
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "skus": len(balances),
                        "drifting": len(drifting),
                        "rows": [
                            {
                                "tenant_id": b.tenant_id,
                                "product_id": b.product_id,
                                "stock": b.quantity,
                                "initial": b.initial,
                                "confirmed_units": b.confirmed_units,
                                "pending_count": b.pending_count,
                                "pending_units": b.pending_units,
                                "drift": b.drift,
                            }
                            for b in balances
                            if options["all"] or b.drift or b.pending_count
                        ],
                    }
                )
            )
        else:
            shown = [b for b in balances if options["all"] or b.drift or b.pending_count]
            if shown:
                self.stdout.write(
                    f"{'tenant':>7} {'product':>9} {'stock':>8} {'confirmed':>10} {'initial':>8} "
                    f"{'drift':>6} {'pending':>8} {'oldest':>8}"
                )
            for b in shown:
                age = f"{(now - b.oldest_pending_at).total_seconds():.0f}s" if b.oldest_pending_at else "-"
                line = (
                    f"{b.tenant_id:>7} {b.product_id:>9} {_n(b.quantity):>8} {b.confirmed_units:>10} "
                    f"{_n(b.initial):>8} {b.drift:>6} {b.pending_count:>8} {age:>8}"
                )
                self.stdout.write(self.style.ERROR(line) if b.drift else line)
            summary = f"{len(balances)} SKU(s) checked: {len(drifting)} drifting"
            self.stdout.write(self.style.ERROR(summary) if drifting else self.style.SUCCESS(summary))
        if drifting:
            raise SystemExit(1)


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)
