"""`manage.py inventory_reconcile`: prove the stock books balance for every SKU.

For every SKU: `stock.quantity + Σ confirmed reservation units = stock.initial_quantity`.
Pending reservations hold no stock under either strategy (`row_lock` decides inside the
checkout; `batched` decrements only when its writer confirms), so they are listed (depth and
age) but not counted; released and rejected reservations gave back, or never took, their units.
All figures come from one statement, i.e. one snapshot. Exit status 1 when any SKU drifts.

Each SKU is listed as the studio knows it: the SKU, the studio's slug, the print ("Print A4 of
photo 12", its event's title) and the studio and product ids the README's runbook "Stock drift"
works with; names are read after the figures (a second statement: they do not count).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from apps.catalog.models import Product, ProductKind
from apps.commerce.batched import SkuBalance, inventory_balances
from apps.tenancy.context import system_context

DRIFT_MEANS = (
    "drift = initial - (stock + confirmed). Above 0: units missing from sale; below 0: more units on sale than the "
    'print has. Next step: README, runbook "Stock drift".'
)


@dataclass(frozen=True)
class Named:
    """How the output names a SKU."""

    sku: str
    studio: str
    product: str
    event: str


def _names(balances: list[SkuBalance]) -> dict[int, Named]:
    """Each listed product's SKU, studio slug, description and event title, by product id."""
    products = Product.objects.filter(pk__in=[b.product_id for b in balances]).select_related("tenant", "event")
    return {
        p.pk: Named(sku=p.sku, studio=p.tenant.slug, product=_describe(p), event=p.event.title)
        for p in products.only("pk", "sku", "kind", "size", "photo_id", "tenant__slug", "event__title")
    }


def _describe(product: Product) -> str:
    if product.kind == ProductKind.PRINT:
        return f"Print {product.size} of photo {product.photo_id}"
    if product.kind == ProductKind.DOWNLOAD:
        return f"Download of photo {product.photo_id}"
    return "All photos of the event"


UNNAMED = Named(sku="?", studio="?", product="?", event="?")


class Command(BaseCommand):
    help = "Check stock + confirmed = initial for every SKU; list drift; exit 1 on drift."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant-id", type=int, default=None, help="only this tenant's SKUs")
        parser.add_argument("--all", action="store_true", help="list every SKU, not only drifting or pending ones")
        parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")

    def handle(self, *args: Any, **options: Any) -> None:
        with system_context("inventory reconciliation"):
            balances = inventory_balances(tenant_id=options["tenant_id"])
            shown = [b for b in balances if options["all"] or b.drift or b.pending_count]
            names = _names(shown)
        now = timezone.now()
        drifting = [b for b in balances if b.drift != 0]
        if options["json"]:
            rows = []
            for b in shown:
                named = names.get(b.product_id, UNNAMED)
                rows.append(
                    {
                        "tenant_id": b.tenant_id,
                        "product_id": b.product_id,
                        "sku": named.sku,
                        "studio": named.studio,
                        "product": named.product,
                        "event": named.event,
                        "stock": b.quantity,
                        "initial": b.initial,
                        "confirmed_units": b.confirmed_units,
                        "pending_count": b.pending_count,
                        "pending_units": b.pending_units,
                        "drift": b.drift,
                    }
                )
            self.stdout.write(json.dumps({"skus": len(balances), "drifting": len(drifting), "rows": rows}))
        else:
            studio_width = max([len("studio")] + [len(names.get(b.product_id, UNNAMED).studio) for b in shown])
            sku_width = max([len("SKU")] + [len(names.get(b.product_id, UNNAMED).sku) for b in shown])
            if shown:
                self.stdout.write(
                    f"{'studio':<{studio_width}} {'SKU':<{sku_width}} {'stock':>8} {'confirmed':>10} {'initial':>8} "
                    f"{'drift':>6} {'pending':>8} {'oldest':>8}  print"
                )
            for b in shown:
                named = names.get(b.product_id, UNNAMED)
                age = f"{(now - b.oldest_pending_at).total_seconds():.0f}s" if b.oldest_pending_at else "-"
                line = (
                    f"{named.studio:<{studio_width}} {named.sku:<{sku_width}} {_n(b.quantity):>8} "
                    f"{b.confirmed_units:>10} {_n(b.initial):>8} {b.drift:>6} {b.pending_count:>8} {age:>8}  "
                    f'{named.product}, event "{named.event}" (studio id {b.tenant_id}, product id {b.product_id})'
                )
                self.stdout.write(self.style.ERROR(line) if b.drift else line)
            summary = f"{len(balances)} SKU(s) checked: {len(drifting)} drifting"
            self.stdout.write(self.style.ERROR(summary) if drifting else self.style.SUCCESS(summary))
            if drifting:
                self.stdout.write(DRIFT_MEANS)
        if drifting:
            raise SystemExit(1)


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)
