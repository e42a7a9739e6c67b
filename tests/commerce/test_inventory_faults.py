"""Hot stock when things go wrong: a writer killed mid-batch, a stale writer, racing expiries,
late payments, and the reconciliation that must balance after all of it (and catch drift)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.utils import timezone
from django_redis import get_redis_connection

from apps.catalog.models import Stock
from apps.commerce.batched import (
    TOPIC_RESERVATION_DECIDED,
    TOPIC_RESERVATIONS_PENDING,
    BatchedStrategy,
    inventory_batch_decide,
    inventory_sku_drain,
    writer_lock_name,
)
from apps.commerce.batched import writer as batched_writer
from apps.commerce.models import Checkout, CheckoutLine, InventoryReservation, Refund, Transaction
from apps.commerce.services import PaymentFact, checkouts_expire_due, transaction_apply_fact
from apps.core.locks import StaleLeaseError, redis_key, try_fenced_lock
from apps.core.models import Lease
from apps.outbox.models import OutboxMessage
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.helpers import buy_print, drain_outbox
from tests.factories.commerce import Shop
from tests.fixtures import subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _batched(settings: Any) -> None:
    settings.INVENTORY_STRATEGY = "batched"


def reservation_statuses(shop: Shop) -> dict[str, int]:
    with tenant_context(shop.org.pk):
        qs = InventoryReservation.objects.filter(product_id=shop.print.pk)
        return {s: qs.filter(status=s).count() for s in InventoryReservation.Status.values if qs.filter(status=s)}


def decided_events(shop: Shop) -> int:
    with system_context("test outbox read"):
        return OutboxMessage.objects.filter(topic=TOPIC_RESERVATION_DECIDED, payload__product_id=shop.print.pk).count()


def reconcile() -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("inventory_reconcile", "--all", stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


# --- a writer killed mid-batch -------------------------------------------------------------

_CRASHING_WRITER = """
import os, sys
import django
django.setup()
from apps.commerce.batched import writer as batched_writer

def crash(*args, **kwargs):
    # Between the stock UPDATE (already executed) and COMMIT: the process dies, no cleanup.
    os._exit(9)

batched_writer._record_decisions = crash
batched_writer.inventory_sku_drain(tenant_id=int(sys.argv[1]), product_id=int(sys.argv[2]))
"""


def _subprocess_env(lock_ttl: float) -> dict[str, str]:
    return subprocess_env(DARKROOM_INVENTORY_WRITER_LOCK_TTL_SECONDS=str(lock_ttl))


def test_a_writer_killed_mid_batch_loses_and_doubles_nothing(shop_a: Shop) -> None:
    # given: 4 pending reservations of 3 units each for a print with 10 left
    for n in range(4):
        buy_print(shop_a, n, quantity=3)

    # when: a writer process dies after its stock UPDATE, before COMMIT
    crashed = subprocess.run(
        [sys.executable, "-c", _CRASHING_WRITER, str(shop_a.org.pk), str(shop_a.print.pk)],
        cwd=Path(django_settings.BASE_DIR),
        env=_subprocess_env(lock_ttl=1.0),
        capture_output=True,
        timeout=120,
    )

    # then: it died there, and Postgres rolled its batch back: stock, reservations, no events
    assert crashed.returncode == 9, crashed.stderr.decode()[-2000:]
    assert shop_a.stock_quantity() == 10
    assert reservation_statuses(shop_a) == {"pending": 4}
    assert decided_events(shop_a) == 0
    dead_epoch = Lease.objects.get(name=writer_lock_name(shop_a.print.pk)).epoch

    # when: its Redis key expires (TTL 1 s) and the next writer drains
    report = inventory_sku_drain(tenant_id=shop_a.org.pk, product_id=shop_a.print.pk)
    deadline = time.monotonic() + 60  # the key is gone about a second after the crash
    while report.status == "busy" and time.monotonic() < deadline:
        time.sleep(0.1)
        report = inventory_sku_drain(tenant_id=shop_a.org.pk, product_id=shop_a.print.pk)

    # then: every reservation decided exactly once by the new epoch: 3 fit (9 units), 1 sold out
    assert report.status == "drained"
    assert reservation_statuses(shop_a) == {"confirmed": 3, "rejected": 1}
    assert shop_a.stock_quantity() == 1
    assert decided_events(shop_a) == 4
    with tenant_context(shop_a.org.pk):
        epochs = set(InventoryReservation.objects.values_list("writer_epoch", flat=True))
        assert epochs == {dead_epoch + 1}
        assert Stock.objects.get(pk=shop_a.stock.pk).epoch == dead_epoch + 1
    assert reconcile()[0] == 0


def test_a_writer_that_fails_mid_batch_rolls_back_and_hands_the_sku_back(
    shop_a: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: 2 pending reservations, and an error raised after the stock UPDATE
    buy_print(shop_a, 1)
    buy_print(shop_a, 2)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("outbox insert failed")

    monkeypatch.setattr(batched_writer, "_record_decisions", broken)

    # when: the writer runs into it
    with pytest.raises(RuntimeError):
        inventory_sku_drain(tenant_id=shop_a.org.pk, product_id=shop_a.print.pk)

    # then: nothing was written, and the lock was released: the next writer starts at once
    assert shop_a.stock_quantity() == 10
    assert reservation_statuses(shop_a) == {"pending": 2}
    monkeypatch.undo()
    report = inventory_sku_drain(tenant_id=shop_a.org.pk, product_id=shop_a.print.pk)
    assert (report.status, report.confirmed) == ("drained", 2)
    assert shop_a.stock_quantity() == 8
    assert reconcile()[0] == 0


# --- a stale writer ------------------------------------------------------------------------


def test_a_stale_writer_is_refused_by_its_epoch_and_writes_nothing(shop_a: Shop) -> None:
    # given: writer A holds the SKU, its Redis key is lost, and writer B takes over
    buy_print(shop_a, 1)
    buy_print(shop_a, 2)
    name = writer_lock_name(shop_a.print.pk)
    with try_fenced_lock(name, ttl=30) as stale:
        assert stale is not None
        get_redis_connection("default").delete(redis_key(name))
        with try_fenced_lock(name, ttl=30) as current:
            assert current is not None and current.epoch == stale.epoch + 1

            # when: A, unaware, runs a batch
            with pytest.raises(StaleLeaseError):
                inventory_batch_decide(lease=stale, tenant_id=shop_a.org.pk, product_id=shop_a.print.pk)

            # then: nothing was written
            assert shop_a.stock_quantity() == 10
            assert reservation_statuses(shop_a) == {"pending": 2}
            assert decided_events(shop_a) == 0

            # and B's batch goes through under its own epoch
            outcome = inventory_batch_decide(lease=current, tenant_id=shop_a.org.pk, product_id=shop_a.print.pk)
            assert (len(outcome.confirmed), outcome.epoch) == (2, current.epoch)
    assert shop_a.stock_quantity() == 8
    assert reconcile()[0] == 0


def test_the_stock_rows_epoch_refuses_a_writer_older_than_its_last_writer(shop_a: Shop) -> None:
    # given: a current lease, but the stock row was last written under a newer epoch
    buy_print(shop_a, 1)
    with try_fenced_lock(writer_lock_name(shop_a.print.pk), ttl=30) as lease:
        assert lease is not None
        with tenant_context(shop_a.org.pk):
            Stock.objects.filter(pk=shop_a.stock.pk).update(epoch=lease.epoch + 1)

        # when: the writer decides a batch
        # then: the stock row's fence refuses it and the whole batch rolls back
        with pytest.raises(StaleLeaseError):
            inventory_batch_decide(lease=lease, tenant_id=shop_a.org.pk, product_id=shop_a.print.pk)
    assert shop_a.stock_quantity() == 10
    assert reservation_statuses(shop_a) == {"pending": 1}
    assert decided_events(shop_a) == 0


# --- expiry --------------------------------------------------------------------------------


def _sell(shop: Shop, buyers: int) -> list[Checkout]:
    checkouts = [buy_print(shop, n) for n in range(buyers)]
    inventory_sku_drain(tenant_id=shop.org.pk, product_id=shop.print.pk)
    drain_outbox(topics={TOPIC_RESERVATION_DECIDED})
    return checkouts


def test_two_concurrent_expiry_runs_release_the_stock_exactly_once(shop_a: Shop) -> None:
    # given: 6 unpaid checkouts holding 6 confirmed prints (4 left)
    checkouts = _sell(shop_a, 6)
    assert shop_a.stock_quantity() == 4
    later = timezone.now() + timedelta(seconds=django_settings.INVENTORY_RESERVATION_TTL_SECONDS + 1)
    barrier = threading.Barrier(2)
    expired: list[int] = []

    def expire() -> None:
        try:
            barrier.wait(60)
            expired.append(checkouts_expire_due(now=later))
        finally:
            connection.close()

    # when: two expiry sweeps run at the same moment
    runs = [threading.Thread(target=expire) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()

    # then: each checkout expired once, and each print came back once
    assert sum(expired) == 6
    assert shop_a.stock_quantity() == 10
    assert reservation_statuses(shop_a) == {"released": 6}
    with tenant_context(shop_a.org.pk):
        assert set(Checkout.objects.filter(pk__in=[c.pk for c in checkouts]).values_list("status", flat=True)) == {
            "expired"
        }
        assert set(CheckoutLine.objects.values_list("state", flat=True)) == {"released"}
        assert set(Transaction.objects.values_list("status", flat=True)) == {"expired"}

    # and a third sweep has nothing left to do
    assert checkouts_expire_due(now=later) == 0
    assert shop_a.stock_quantity() == 10
    assert reconcile()[0] == 0


def test_racing_releases_of_the_same_reservations_give_the_stock_back_once(shop_a: Shop) -> None:
    # given: 3 confirmed reservations (7 left)
    _sell(shop_a, 3)
    with tenant_context(shop_a.org.pk):
        reservations = list(InventoryReservation.objects.order_by("pk"))
    barrier = threading.Barrier(2)
    released: list[int] = []

    def release() -> None:
        try:
            with tenant_context(shop_a.org.pk), transaction.atomic():
                barrier.wait(60)
                released.append(BatchedStrategy().release(reservations=reservations, now=timezone.now()))
        finally:
            connection.close()

    # when: two transactions release the same reservations at once (no checkout lock held)
    threads = [threading.Thread(target=release) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then: the status-conditional UPDATE let exactly one of them give the 3 prints back
    assert sorted(released) == [0, 3]
    assert shop_a.stock_quantity() == 10
    assert reconcile()[0] == 0


def test_a_checkout_expiring_before_its_writer_ran_releases_its_pending_reservation_unused(shop_a: Shop) -> None:
    # given: a checkout whose reservation is still pending (the writer is down)
    checkout = buy_print(shop_a, 1)
    later = timezone.now() + timedelta(seconds=django_settings.INVENTORY_RESERVATION_TTL_SECONDS + 1)

    # when: it expires, and the writer runs afterwards
    assert checkouts_expire_due(now=later) == 1
    report = inventory_sku_drain(tenant_id=shop_a.org.pk, product_id=shop_a.print.pk)

    # then: the reservation was released without ever taking stock; the writer had nothing to do
    assert report.decided == 0
    assert reservation_statuses(shop_a) == {"released": 1}
    assert shop_a.stock_quantity() == 10
    with tenant_context(shop_a.org.pk):
        assert Checkout.objects.get(pk=checkout.pk).status == "expired"
        assert CheckoutLine.objects.get(checkout=checkout).state == "released"
    assert reconcile()[0] == 0


def test_a_payment_after_expiry_is_refunded_and_the_released_stock_stays_released(shop_a: Shop) -> None:
    # given: a confirmed, unpaid checkout that expired (its print went back)
    (checkout,) = _sell(shop_a, 1)
    later = timezone.now() + timedelta(seconds=django_settings.INVENTORY_RESERVATION_TTL_SECONDS + 1)
    assert checkouts_expire_due(now=later) == 1
    assert shop_a.stock_quantity() == 10

    # when: the provider reports the payment afterwards
    with tenant_context(shop_a.org.pk), transaction.atomic():
        transaction_apply_fact(
            tenant_id=shop_a.org.pk,
            checkout_id=checkout.pk,
            fact=PaymentFact(
                status="paid", source="test:late", amount_minor=shop_a.prices["print"], currency=shop_a.currency
            ),
        )

    # then: a late-payment refund is requested, and no stock is taken again
    with tenant_context(shop_a.org.pk):
        refund = Refund.objects.get(transaction__checkout=checkout)
        assert refund.reason == "late_payment"
        assert Checkout.objects.get(pk=checkout.pk).status == "expired"
    assert shop_a.stock_quantity() == 10
    assert reconcile()[0] == 0


# --- reconciliation ------------------------------------------------------------------------


def test_reconciliation_balances_after_sales_and_expiry_and_reports_corrupted_stock(shop_a: Shop) -> None:
    # given: sales, a sold-out rejection, an expiry, and a pending reservation
    _sell(shop_a, 4)
    buy_print(shop_a, 10, quantity=7)  # 6 left: rejected
    inventory_sku_drain(tenant_id=shop_a.org.pk, product_id=shop_a.print.pk)
    buy_print(shop_a, 11)  # pending: holds no stock
    assert reconcile()[0] == 0

    # when: someone changes the stock behind the writer's back (the owner role)
    with tenant_context(shop_a.org.pk), transaction.atomic(using="owner"):
        with connections["owner"].cursor() as cursor:
            cursor.execute("UPDATE catalog_stock SET quantity = quantity - 2 WHERE id = %s", [shop_a.stock.pk])

    # then: the command reports the SKU's drift and exits 1
    code, output = reconcile()
    assert code == 1
    assert "1 drifting" in output
    row = next(line for line in output.splitlines() if line.split()[1:2] == [shop_a.print.sku])
    assert row.split()[2:6] == ["4", "4", "10", "2"]  # stock, confirmed, initial, drift


def test_wake_ups_are_published_through_the_outbox(shop_a: Shop) -> None:
    # given / when: a checkout of a print under the batched strategy
    buy_print(shop_a, 1)
    # then: the SKU's writer is asked for through the outbox (durably, with the checkout)
    with system_context("test outbox read"):
        message = OutboxMessage.objects.get(topic=TOPIC_RESERVATIONS_PENDING)
    assert message.payload["product_id"] == shop_a.print.pk and message.tenant_id == shop_a.org.pk
