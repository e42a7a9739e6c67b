"""Restocking a print while it sells: no drift, no oversell, under both inventory strategies.

`stock_restock` adds to `quantity` and `initial_quantity` with one relative UPDATE and does not
take the SKU writer's fenced lease (apps/catalog/products.py explains why that is safe). These
tests hold it to that with real threads, real connections and the real writer:

* the race: hundreds of shoppers check out one print while the SKU's writer drains their
  reservations (batched) or each checkout decides under the row lock (row_lock), and restocks
  land throughout; afterwards nothing is pending, the books balance (`inventory_reconcile`),
  stock never went below zero, and exactly the restocked units were added;
* the two exact interleavings with the batched writer: a restock that commits while the writer
  waits for the stock row is seen by that batch; a restock that arrives while the writer's batch
  transaction holds the row waits for its commit and adds on top of the decrement.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from apps.catalog.models import Stock, StockRestock
from apps.catalog.products import Actor, stock_restock
from apps.commerce.batched import (
    TOPIC_RESERVATION_DECIDED,
    inventory_batch_decide,
    inventory_sku_drain,
    writer_lock_name,
)
from apps.commerce.batched import writer as batched_writer
from apps.commerce.models import InventoryReservation
from apps.core.locks import try_fenced_lock
from apps.tenancy.context import tenant_context
from tests.commerce.helpers import buy_print, drain_outbox
from tests.commerce.test_inventory_concurrency import run_in_threads
from tests.factories.commerce import Shop, make_shop
from tests.fixtures import TenantBundle, backend_pid, wait_until_blocked

pytestmark = pytest.mark.django_db(transaction=True)

BUYERS = 300
INITIAL = 40
RESTOCKS = 12
UNITS_PER_RESTOCK = 10


def books(shop: Shop) -> dict[str, int]:
    with tenant_context(shop.org.pk):
        stock = Stock.objects.get(pk=shop.stock.pk)
        reservations = InventoryReservation.objects.filter(product_id=shop.print.pk)
        restocked = list(StockRestock.objects.filter(product_id=shop.print.pk).values_list("added_quantity", flat=True))
        return {
            "quantity": stock.quantity,
            "initial": stock.initial_quantity,
            "confirmed_units": sum(r.quantity for r in reservations.filter(status="confirmed")),
            "pending": reservations.filter(status="pending").count(),
            "rejected": reservations.filter(status="rejected").count(),
            "restocks": len(restocked),
            "restocked_units": sum(restocked),
        }


def assert_reconciled() -> None:
    out = StringIO()
    call_command("inventory_reconcile", stdout=out)  # SystemExit(1) on drift
    assert "0 drifting" in out.getvalue(), out.getvalue()


def restock(shop: Shop, units: int, actor: Actor) -> StockRestock:
    """One restock in its own transaction, as a studio form or an API request would commit it."""
    with tenant_context(shop.org.pk), transaction.atomic():
        return stock_restock(tenant_id=shop.org.pk, product_id=shop.print.pk, add_quantity=units, actor=actor)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["row_lock", "batched"])
def test_restocks_while_hundreds_of_reservations_drain_leave_no_drift_and_no_oversell(
    strategy: str, tenant_a: TenantBundle, settings: Any
) -> None:
    # given: a print with 40 units, the strategy under test, and for `batched` its writer running
    settings.INVENTORY_STRATEGY = strategy
    shop = make_shop(org=tenant_a.org, stock=INITIAL)
    actor = Actor.member(tenant_a.owner)
    buyers_done = threading.Event()
    bought = [0]
    bought_lock = threading.Lock()
    errors: list[BaseException] = []
    seen_mid_sale: list[tuple[int, int]] = []  # (checkouts made, reservations decided) per restock

    def writer() -> None:
        try:
            while True:
                finished = buyers_done.is_set()
                report = inventory_sku_drain(tenant_id=shop.org.pk, product_id=shop.print.pk)
                if finished and report.status == "drained":
                    return
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    def restocker() -> None:
        # Restocks spread over the sale: each waits for more checkouts to have been made.
        try:
            for n in range(RESTOCKS):
                target = (n + 1) * BUYERS // (RESTOCKS + 2)
                while bought[0] < target and not buyers_done.is_set():
                    time.sleep(0.005)
                with tenant_context(shop.org.pk):
                    decided = InventoryReservation.objects.exclude(status="pending").count()
                seen_mid_sale.append((bought[0], decided))
                restock(shop, UNITS_PER_RESTOCK, actor)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    def buyer(n: int) -> Callable[[], None]:
        def job() -> None:
            buy_print(shop, n)
            with bought_lock:
                bought[0] += 1

        return job

    helpers = [threading.Thread(target=restocker)]
    if strategy == "batched":
        helpers.append(threading.Thread(target=writer))
    for thread in helpers:
        thread.start()

    # when: 300 shoppers check out one print each, 12 at a time, while 12 restocks of 10 land
    errors += run_in_threads([buyer(n) for n in range(BUYERS)], threads=12)
    buyers_done.set()
    for thread in helpers:
        thread.join(timeout=180)
        assert not thread.is_alive()
    assert errors == []
    if strategy == "batched":
        drain_outbox(topics={TOPIC_RESERVATION_DECIDED})

    # then: every restock landed, in full, and while the SKU was selling
    after = books(shop)
    assert (after["restocks"], after["restocked_units"]) == (RESTOCKS, RESTOCKS * UNITS_PER_RESTOCK)
    assert after["initial"] == INITIAL + RESTOCKS * UNITS_PER_RESTOCK
    assert any(0 < made < BUYERS for made, _ in seen_mid_sale)
    # and: nothing is left pending, the books balance, and no unit was sold twice
    assert after["pending"] == 0
    assert after["quantity"] + after["confirmed_units"] == after["initial"]
    assert 0 <= after["quantity"] and after["confirmed_units"] <= after["initial"]
    assert after["confirmed_units"] + after["rejected"] == BUYERS
    # and: demand (300) exceeds supply (160), so a sold-out print was restocked and sold again:
    # every restocked unit found a buyer except those that came after the last shopper
    assert after["confirmed_units"] > INITIAL
    assert_reconciled()


def _pending(shop: Shop, count: int) -> None:
    for n in range(count):
        buy_print(shop, n)


def test_a_restock_committed_while_the_writer_waits_for_the_row_is_seen_by_that_batch(
    tenant_a: TenantBundle, settings: Any
) -> None:
    # given: 2 units, 5 pending reservations of one unit, and a restock of 3 holding the stock row
    settings.INVENTORY_STRATEGY = "batched"
    shop = make_shop(org=tenant_a.org, stock=2)
    _pending(shop, 5)
    holding, release = threading.Event(), threading.Event()

    def restocker() -> None:
        try:
            with tenant_context(shop.org.pk), transaction.atomic():
                stock_restock(
                    tenant_id=shop.org.pk, product_id=shop.print.pk, add_quantity=3, actor=Actor(label="test")
                )
                holding.set()
                release.wait(120)
        finally:
            connection.close()

    thread = threading.Thread(target=restocker)
    thread.start()
    assert holding.wait(30)
    outcome: list[Any] = []
    writer_pid: list[int] = []

    def batch() -> None:
        try:
            writer_pid.append(backend_pid())
            with try_fenced_lock(writer_lock_name(shop.print.pk), ttl=30) as lease:
                assert lease is not None
                outcome.append(inventory_batch_decide(lease=lease, tenant_id=shop.org.pk, product_id=shop.print.pk))
        finally:
            connection.close()

    # when: the writer's batch starts (it must wait for the row), then the restock commits
    writer = threading.Thread(target=batch)
    writer.start()
    wait_until_blocked(writer_pid, writer, "the writer's batch (it should wait for the restock's row lock)")
    release.set()
    thread.join(60)
    writer.join(60)

    # then: the batch decided on the restocked quantity: all 5 confirmed, none sold out
    assert len(outcome) == 1 and (len(outcome[0].confirmed), len(outcome[0].rejected)) == (5, 0)
    after = books(shop)
    assert (after["quantity"], after["initial"], after["confirmed_units"]) == (0, 5, 5)
    assert_reconciled()


def test_a_restock_during_the_writers_batch_waits_and_adds_on_top(
    tenant_a: TenantBundle, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: 3 units and 5 pending reservations; the writer's batch pauses just before COMMIT
    settings.INVENTORY_STRATEGY = "batched"
    shop = make_shop(org=tenant_a.org, stock=3)
    _pending(shop, 5)
    in_batch, go_on = threading.Event(), threading.Event()
    record = batched_writer._record_decisions

    def record_then_pause(cursor: Any, **kwargs: Any) -> None:
        record(cursor, **kwargs)
        in_batch.set()
        go_on.wait(120)

    monkeypatch.setattr(batched_writer, "_record_decisions", record_then_pause)
    outcome: list[Any] = []

    def batch() -> None:
        try:
            with try_fenced_lock(writer_lock_name(shop.print.pk), ttl=30) as lease:
                assert lease is not None
                outcome.append(inventory_batch_decide(lease=lease, tenant_id=shop.org.pk, product_id=shop.print.pk))
        finally:
            connection.close()

    writer = threading.Thread(target=batch)
    writer.start()
    assert in_batch.wait(30)
    restocked: list[StockRestock] = []
    restocker_pid: list[int] = []

    def restocker() -> None:
        try:
            restocker_pid.append(backend_pid())
            restocked.append(restock(shop, 4, Actor(label="test")))
        finally:
            connection.close()

    # when: a restock of 4 arrives while the batch (3 confirmed, 2 sold out) is uncommitted
    thread = threading.Thread(target=restocker)
    thread.start()
    wait_until_blocked(restocker_pid, thread, "the restock (it should wait for the writer's row lock)")
    go_on.set()
    writer.join(60)
    thread.join(60)

    # then: the batch decided on 3 units; the restock added its 4 to what the batch left (0)
    assert (len(outcome[0].confirmed), len(outcome[0].rejected)) == (3, 2)
    assert (restocked[0].quantity_after, restocked[0].initial_quantity_after) == (4, 7)
    after = books(shop)
    assert (after["quantity"], after["initial"], after["confirmed_units"]) == (4, 7, 3)
    assert_reconciled()
