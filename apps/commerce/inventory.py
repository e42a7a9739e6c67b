"""Stock reservation strategies for print lines, chosen by `settings.INVENTORY_STRATEGY`.

A strategy is called by the checkout services, never by the API, so a new one plugs in through
settings alone (`INVENTORY_STRATEGY_CLASSES` maps a name to a dotted class path):

* `reserve` runs inside the checkout transaction. It writes one `InventoryReservation` per
  print line and sets each line's state: `confirmed` or `sold_out` when it decides at once,
  `reserved` when a writer decides later (the checkout then stays `reserving` until that writer
  calls `apps.commerce.services.checkout_reservations_settle`).
* `release` runs inside the expiry/failure transaction, with the checkout row locked; it gives
  the stock of confirmed reservations back exactly once and marks them `released`.

`row_lock` (here) is the classic baseline: `SELECT ... FOR UPDATE` on the stock rows inside the
checkout transaction (locked in primary-key order, so two checkouts never deadlock), decrement,
decide. Correct, but every buyer of one SKU queues behind that row lock until its checkout
commits. The `batched` strategy (hot stock, one fenced writer per SKU) leaves reservations
`pending` and never touches the stock row in the checkout transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import F
from django.utils.module_loading import import_string

from apps.catalog.models import Stock
from apps.commerce.models import Checkout, CheckoutLine, InventoryReservation


class InventoryStrategy(ABC):
    name: str

    @abstractmethod
    def reserve(self, *, checkout: Checkout, lines: Sequence[CheckoutLine], now: datetime) -> None:
        """Reserve stock for `lines` (print lines of `checkout`, already saved).

        Runs in the checkout's transaction (joins it). Must create exactly one reservation per
        line and save each line's `state`. Raises nothing for a sold-out line: it is marked.
        """

    @abstractmethod
    def release(self, *, reservations: Sequence[InventoryReservation], now: datetime) -> int:
        """Give the stock of confirmed `reservations` back, each exactly once; return how many.

        Runs in the caller's transaction, which holds the checkout's row lock.
        """


def _lock_stock(*, tenant_id: int, product_ids: set[int]) -> dict[int, Stock]:
    """Lock the stock rows of `product_ids` (FOR UPDATE, primary-key order). Caller's transaction."""
    rows = Stock.objects.select_for_update().filter(tenant_id=tenant_id, product_id__in=product_ids).order_by("pk")
    return {row.product_id: row for row in rows}


class RowLockStrategy(InventoryStrategy):
    """Per-request row locks: decide every reservation inside the checkout transaction."""

    name = "row_lock"

    def reserve(self, *, checkout: Checkout, lines: Sequence[CheckoutLine], now: datetime) -> None:
        if not lines:
            return
        stock = _lock_stock(tenant_id=checkout.tenant_id, product_ids={line.product_id for line in lines})
        taken: dict[int, int] = {}
        reservations = []
        for line in sorted(lines, key=lambda line: line.position):
            row = stock.get(line.product_id)
            left = (row.quantity if row is not None else 0) - taken.get(line.product_id, 0)
            fits = row is not None and left >= line.quantity
            if fits:
                taken[line.product_id] = taken.get(line.product_id, 0) + line.quantity
            line.state = CheckoutLine.State.CONFIRMED if fits else CheckoutLine.State.SOLD_OUT
            line.save(update_fields=["state"])
            reservations.append(
                InventoryReservation(
                    tenant_id=checkout.tenant_id,
                    checkout=checkout,
                    line=line,
                    product_id=line.product_id,
                    quantity=line.quantity,
                    status=InventoryReservation.Status.CONFIRMED if fits else InventoryReservation.Status.REJECTED,
                    expires_at=checkout.expires_at,
                    decided_at=now,
                )
            )
        for product_id, quantity in taken.items():
            # The check constraint (quantity >= 0) is the last line of defence against oversell.
            Stock.objects.filter(pk=stock[product_id].pk).update(quantity=F("quantity") - quantity)
        InventoryReservation.objects.bulk_create(reservations)

    def release(self, *, reservations: Sequence[InventoryReservation], now: datetime) -> int:
        confirmed = [r for r in reservations if r.status == InventoryReservation.Status.CONFIRMED]
        if not confirmed:
            return 0
        stock = _lock_stock(tenant_id=confirmed[0].tenant_id, product_ids={r.product_id for r in confirmed})
        released = 0
        for reservation in sorted(confirmed, key=lambda r: r.pk):
            # Conditional on the status: a reservation gives its stock back once, whoever asks.
            moved = InventoryReservation.objects.filter(
                pk=reservation.pk, status=InventoryReservation.Status.CONFIRMED
            ).update(status=InventoryReservation.Status.RELEASED, released_at=now)
            if moved and reservation.product_id in stock:
                Stock.objects.filter(pk=stock[reservation.product_id].pk).update(
                    quantity=F("quantity") + reservation.quantity
                )
                released += 1
        return released


@cache
def _strategy(name: str) -> InventoryStrategy:
    classes: dict[str, str] = settings.INVENTORY_STRATEGY_CLASSES
    if name not in classes:
        raise ImproperlyConfigured(f"INVENTORY_STRATEGY {name!r} is not one of {sorted(classes)}")
    strategy = import_string(classes[name])()
    if not isinstance(strategy, InventoryStrategy):
        raise ImproperlyConfigured(f"{classes[name]} is not an InventoryStrategy")
    return strategy


def get_strategy(name: str | None = None) -> InventoryStrategy:
    """The configured strategy (or `name`). Raises ImproperlyConfigured for an unknown name."""
    return _strategy(name or settings.INVENTORY_STRATEGY)
