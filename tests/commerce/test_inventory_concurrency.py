"""Hot stock under concurrency: 500 buyers, 100 prints, both strategies; coalesced wake-ups.

Buyers are real threads with their own connections calling `checkout_create`; for `batched`
the SKU's writer runs concurrently in another thread, as the `inventory.drain_sku` task would,
and the `inventory.reservation_decided` messages are then run through their consumer's code.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from apps.catalog.models import Stock
from apps.commerce.batched import (
    TOPIC_RESERVATION_DECIDED,
    TOPIC_RESERVATIONS_PENDING,
    BatchedStrategy,
    inventory_sku_drain,
)
from apps.commerce.batched import writer as batched_writer
from apps.commerce.inventory import get_strategy
from apps.commerce.models import Checkout, CheckoutLine, InventoryReservation
from apps.outbox.models import OutboxMessage
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.helpers import buy_print, drain_outbox
from tests.factories.commerce import Shop, make_shop
from tests.fixtures import TenantBundle

pytestmark = pytest.mark.django_db(transaction=True)

BUYERS = 500
STOCK = 100
THREADS = 16


def run_in_threads(jobs: list[Callable[[], Any]], *, threads: int = THREADS) -> list[BaseException]:
    """Run `jobs` on `threads` real threads (each with its own connection, closed at the end)."""
    work: queue.SimpleQueue[Callable[[], Any]] = queue.SimpleQueue()
    for job in jobs:
        work.put(job)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while True:
                try:
                    job = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    job()
                except BaseException as exc:  # noqa: BLE001 - reported by the test
                    errors.append(exc)
        finally:
            connection.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return errors


def counts(shop: Shop) -> dict[str, Any]:
    with tenant_context(shop.org.pk):
        reservations = InventoryReservation.objects.filter(product_id=shop.print.pk)
        return {
            "stock": Stock.objects.get(pk=shop.stock.pk).quantity,
            "reservations": {s: reservations.filter(status=s).count() for s in InventoryReservation.Status.values},
            "lines": {s: CheckoutLine.objects.filter(state=s).count() for s in CheckoutLine.State.values},
            "checkouts": {s: Checkout.objects.filter(status=s).count() for s in Checkout.Status.values},
            "units_confirmed": sum(r.quantity for r in reservations.filter(status="confirmed")),
        }


@pytest.mark.parametrize("strategy", ["row_lock", "batched"])
def test_500_concurrent_checkouts_for_100_prints_confirm_exactly_100(
    strategy: str, tenant_a: TenantBundle, settings: Any
) -> None:
    # given: one print with stock 100 and the strategy under test
    settings.INVENTORY_STRATEGY = strategy
    shop = make_shop(org=tenant_a.org, stock=STOCK)
    buyers_done = threading.Event()
    writer_errors: list[BaseException] = []

    def writer() -> None:
        # The SKU's writer, woken again and again while buyers arrive (as drain tasks would be).
        try:
            while True:
                finished = buyers_done.is_set()
                report = inventory_sku_drain(tenant_id=shop.org.pk, product_id=shop.print.pk)
                if finished and report.status == "drained":
                    return
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            writer_errors.append(exc)
        finally:
            connection.close()

    writer_thread = threading.Thread(target=writer) if strategy == "batched" else None
    if writer_thread is not None:
        writer_thread.start()

    # when: 500 shoppers check out one print each, 16 at a time
    errors = run_in_threads([lambda n=n: buy_print(shop, n) for n in range(BUYERS)])
    buyers_done.set()
    if writer_thread is not None:
        writer_thread.join(timeout=120)
        assert not writer_thread.is_alive()
    assert errors == [] and writer_errors == []
    if strategy == "batched":
        drain_outbox(topics={TOPIC_RESERVATION_DECIDED})

    # then: exactly 100 confirmed, 400 sold out, nothing pending, stock 0 (never below: the
    # check constraint), and the checkouts settled accordingly (sold-out ones charge nothing)
    after = counts(shop)
    assert after["reservations"] == {"pending": 0, "confirmed": STOCK, "rejected": BUYERS - STOCK, "released": 0}
    assert after["units_confirmed"] == STOCK
    assert after["stock"] == 0
    assert after["lines"]["confirmed"] == STOCK and after["lines"]["sold_out"] == BUYERS - STOCK
    assert after["checkouts"]["awaiting_payment_session"] == STOCK
    assert after["checkouts"]["sold_out"] == BUYERS - STOCK
    with tenant_context(shop.org.pk):
        assert not Checkout.objects.filter(status="sold_out", amount_minor__gt=0).exists()
        decided_by_writer = InventoryReservation.objects.filter(writer_epoch__isnull=False).count()
    assert decided_by_writer == (BUYERS if strategy == "batched" else 0)
    out = StringIO()
    call_command("inventory_reconcile", stdout=out)  # SystemExit(1) on drift
    assert "0 drifting" in out.getvalue()


def test_batched_checkout_never_touches_the_stock_row(shop_a: Shop, settings: Any) -> None:
    # given: the batched strategy and another transaction holding the stock row lock
    settings.INVENTORY_STRATEGY = "batched"
    holding = threading.Event()
    release = threading.Event()

    def hold_stock_row() -> None:
        try:
            with tenant_context(shop_a.org.pk), transaction.atomic():
                Stock.objects.select_for_update().get(pk=shop_a.stock.pk)
                holding.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_stock_row)
    holder.start()
    assert holding.wait(30)
    try:
        # when: a shopper checks out the print (a lock wait would hit the 2 s lock_timeout)
        with tenant_context(shop_a.org.pk), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
            checkout = buy_print(shop_a, 1)
    finally:
        release.set()
        holder.join()

    # then: the checkout committed with a pending reservation; the stock is untouched
    with tenant_context(shop_a.org.pk):
        reservation = InventoryReservation.objects.get(checkout=checkout)
        assert reservation.status == "pending" and reservation.writer_epoch is None
        assert Checkout.objects.get(pk=checkout.pk).status == "reserving"
        assert CheckoutLine.objects.get(checkout=checkout).state == "reserved"
    assert shop_a.stock_quantity() == 10


def wake_ups(shop: Shop) -> int:
    with system_context("test wake-up count"):
        return OutboxMessage.objects.filter(topic=TOPIC_RESERVATIONS_PENDING, aggregate_id=str(shop.print.pk)).count()


def test_many_reservations_publish_one_wake_up_until_the_writer_drained(shop_a: Shop, settings: Any) -> None:
    # given: the batched strategy and no writer running
    settings.INVENTORY_STRATEGY = "batched"
    assert isinstance(get_strategy(), BatchedStrategy)

    # when: eight shoppers check out one after the other
    for n in range(8):
        buy_print(shop_a, n)

    # then: one wake-up for the SKU (the first reservation's); the rest found it pending
    assert wake_ups(shop_a) == 1

    # when: the writer drains, and a ninth shopper arrives afterwards
    report = inventory_sku_drain(tenant_id=shop_a.org.pk, product_id=shop_a.print.pk)
    buy_print(shop_a, 9)

    # then: the writer decided all eight in one batch and stepped down; the newcomer woke it again
    assert (report.status, report.batches, report.confirmed, report.rejected) == ("drained", 1, 8, 0)
    assert wake_ups(shop_a) == 2


def test_a_checkout_committing_during_the_writers_final_check_is_not_stranded(
    shop_a: Shop, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: one committed pending reservation (its wake-up published), and a second checkout
    # that has inserted its reservation, saw the first one pending (so published nothing) and
    # has not committed yet
    settings.INVENTORY_STRATEGY = "batched"
    first = buy_print(shop_a, 1)
    inserted = threading.Event()
    commit = threading.Event()
    late: dict[str, Any] = {}

    def slow_checkout() -> None:
        try:
            with tenant_context(shop_a.org.pk), transaction.atomic():
                late["checkout"] = buy_print(shop_a, 2)
                inserted.set()
                commit.wait(30)
        finally:
            connection.close()

    buyer = threading.Thread(target=slow_checkout)
    buyer.start()
    assert inserted.wait(30)

    # when: the writer drains (deciding the first) while the second is in flight; the second
    # commits only once the writer's final check has seen it in flight
    seen: list[str] = []
    real_final_check = batched_writer._final_check

    def final_check(**kwargs: Any) -> Any:
        result = real_final_check(**kwargs)
        seen.append(result)
        if result == "in_flight":
            commit.set()
        return result

    monkeypatch.setattr(batched_writer, "_final_check", final_check)
    report = inventory_sku_drain(tenant_id=shop_a.org.pk, product_id=shop_a.print.pk)
    commit.set()
    buyer.join()

    # then: the writer did not step down while the second checkout was in flight: it decided
    # both, and no second wake-up was needed
    with tenant_context(shop_a.org.pk):
        statuses = dict(InventoryReservation.objects.values_list("checkout_id", "status"))
    assert seen[0] == "in_flight" and seen[-1] == "empty"
    assert statuses == {first.pk: "confirmed", late["checkout"].pk: "confirmed"}
    assert report.status == "drained" and report.confirmed == 2
    assert wake_ups(shop_a) == 1


def test_the_stock_check_constraint_refuses_the_writers_decrement_past_zero(shop_a: Shop) -> None:
    # given: a print with 10 left
    # when: the writer's decrement statement asks for 11
    # then: Postgres refuses it (zero oversell whatever the code computes)
    with pytest.raises(IntegrityError), tenant_context(shop_a.org.pk), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE catalog_stock SET quantity = quantity - %s WHERE tenant_id = %s AND product_id = %s",
                [11, shop_a.org.pk, shop_a.print.pk],
            )
    assert shop_a.stock_quantity() == 10
