"""The writer's wake-up path for real: outbox relay -> Celery worker -> drain -> decided events ->
settle; a wake-up dropped as "busy"; and the sweep that rescues a lost wake-up."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection

from apps.commerce.batched import TOPIC_RESERVATIONS_PENDING, inventory_sku_drain
from apps.commerce.batched import writer as batched_writer
from apps.commerce.models import Checkout, InventoryReservation
from apps.outbox.models import InboxEntry, OutboxMessage
from apps.outbox.relay import relay_batch
from apps.tenancy.context import system_context, tenant_context
from config.celery_app import app as celery_app
from tasks.inventory import sweep
from tests.commerce.fixtures import purge_queues
from tests.commerce.helpers import buy_print
from tests.factories.commerce import Shop

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _batched(settings: Any) -> None:
    settings.INVENTORY_STRATEGY = "batched"


@pytest.fixture
def worker() -> Iterator[None]:
    """A real Celery worker (solo pool, in a thread) on the inventory queue and the queue of the
    checkout's other consumers (`default`: settling, provider sessions)."""
    purge_queues()
    with start_worker(
        celery_app,
        pool="solo",
        perform_ping_check=False,
        shutdown_timeout=60,
        queues=["inventory", "default"],
        loglevel="WARNING",
    ):
        yield
    connection.close()
    purge_queues()


def statuses(shop: Shop) -> dict[str, int]:
    with tenant_context(shop.org.pk):
        result: dict[str, int] = {}
        for status in Checkout.objects.values_list("status", flat=True):
            result[status] = result.get(status, 0) + 1
        return result


def relay_until(done: Any, *, timeout: float = 60.0) -> None:
    """Run the outbox relay (as `manage.py outbox_relay` does) until `done()` or the timeout."""
    celery_app.loader.import_default_modules()  # consumers register their topics on import
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with system_context("test relay"):
            relay_batch(batch_size=100)
        if done():
            return
        time.sleep(0.05)
    raise AssertionError("the pipeline did not finish in time")


def test_checkouts_are_decided_and_settled_through_the_outbox_and_a_real_worker(shop_a: Shop, worker: None) -> None:
    # given: 10 prints and 12 shoppers (the writer is not running)
    for n in range(12):
        buy_print(shop_a, n)
    assert statuses(shop_a) == {"reserving": 12}

    # when: the relay publishes the outbox and the worker consumes it
    def settled() -> bool:
        return "reserving" not in statuses(shop_a)

    relay_until(settled)

    # then: the coalesced wake-up woke the writer once, which decided every reservation; the
    # decided events settled the checkouts: 10 payable (sessions follow), 2 sold out, uncharged
    with system_context("test"):
        wake_ups = OutboxMessage.objects.filter(topic=TOPIC_RESERVATIONS_PENDING).count()
        settles = InboxEntry.objects.filter(consumer="inventory.settle_checkout").count()
    assert wake_ups == 1
    assert settles == 12
    after = statuses(shop_a)
    assert after.get("sold_out") == 2
    assert sum(after.get(s, 0) for s in ("awaiting_payment_session", "awaiting_payment")) == 10
    assert shop_a.stock_quantity() == 0
    with tenant_context(shop_a.org.pk):
        assert not InventoryReservation.objects.filter(writer_epoch__isnull=True).exists()
        sold_out = Checkout.objects.filter(status="sold_out")
        assert set(sold_out.values_list("amount_minor", "sandbox_reference", "payment_url")) == {(0, None, "")}


def test_the_sweep_wakes_the_writer_when_a_wake_up_was_lost(shop_a: Shop, worker: None, settings: Any) -> None:
    # given: a pending reservation whose wake-up message was dead-lettered
    checkout = buy_print(shop_a, 1)
    with system_context("test"):
        OutboxMessage.objects.filter(topic=TOPIC_RESERVATIONS_PENDING).update(status=OutboxMessage.Status.DEAD)
    settings.INVENTORY_SWEEP_MIN_AGE_SECONDS = 0

    # when: the beat sweep runs
    assert sweep() == 1

    # then: the worker's writer decided it
    def decided() -> bool:
        with tenant_context(shop_a.org.pk):
            return InventoryReservation.objects.get(checkout=checkout).status != "pending"

    deadline = time.monotonic() + 60
    while not decided():
        assert time.monotonic() < deadline, "the sweep did not wake the writer"
        time.sleep(0.05)
    assert shop_a.stock_quantity() == 9


def test_a_wake_up_dropped_as_busy_is_covered_by_the_holders_recheck(
    shop_a: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a writer draining the SKU; right after its final check found nothing (and before it
    # releases the lock) a checkout commits and that checkout's wake-up finds the lock busy
    buy_print(shop_a, 1)
    real_final_check = batched_writer._final_check
    competitor: dict[str, Any] = {}

    def final_check(**kwargs: Any) -> Any:
        result = real_final_check(**kwargs)
        if result == "empty" and not competitor:

            def late_shopper() -> None:
                try:
                    competitor["checkout"] = buy_print(shop_a, 2)
                    competitor["drain"] = inventory_sku_drain(tenant_id=shop_a.org.pk, product_id=shop_a.print.pk)
                finally:
                    connection.close()

            thread = threading.Thread(target=late_shopper)
            thread.start()
            thread.join()
        return result

    monkeypatch.setattr(batched_writer, "_final_check", final_check)

    # when: the writer finishes its tenure
    report = inventory_sku_drain(tenant_id=shop_a.org.pk, product_id=shop_a.print.pk)

    # then: the late wake-up's drain was refused as busy, and the holder's re-check after
    # releasing took the lock again and decided the late reservation
    assert competitor["drain"].status == "busy"
    assert (report.status, report.tenures, report.confirmed) == ("drained", 2, 2)
    with tenant_context(shop_a.org.pk):
        assert InventoryReservation.objects.get(checkout=competitor["checkout"]).status == "confirmed"


def test_the_api_shows_reserved_then_the_writers_decision_per_line(tenant_a: Any, shop_a: Shop, worker: None) -> None:
    from tests.commerce.fixtures import checkout_body, post_checkout

    api = tenant_a.client()
    # given: 10 prints in stock; a shopper takes all 10, a second wants 1 more (default strategy)
    first = post_checkout(api, checkout_body(shop_a, {"product": shop_a.print.pk, "quantity": 10}))
    second = post_checkout(api, checkout_body(shop_a, {"product": shop_a.print.pk, "quantity": 1}))
    # then: the POST answers at once, undecided: the checkout is reserving and its line reserved
    for created in (first, second):
        assert created.status_code == 201, created.content
        assert created.json()["status"] == "reserving"
        assert [line["state"] for line in created.json()["lines"]] == ["reserved"]
        assert created.json()["payment_url"] is None
    assert shop_a.stock_quantity() == 10  # the checkout never touched the stock row

    # when: the relay and the worker run the SKU's writer and settle the checkouts
    def decided() -> bool:
        return all(
            api.get(f"/api/v1/checkouts/{c.json()['id']}").json()["status"] != "reserving" for c in (first, second)
        )

    relay_until(decided)

    # then: GET shows the decision per line; the sold-out checkout is never charged
    got_first = api.get(f"/api/v1/checkouts/{first.json()['id']}").json()
    got_second = api.get(f"/api/v1/checkouts/{second.json()['id']}").json()
    assert [line["state"] for line in got_first["lines"]] == ["confirmed"]
    assert got_first["amount_minor"] == 10 * shop_a.prices["print"]
    assert [line["state"] for line in got_second["lines"]] == ["sold_out"]
    assert (got_second["status"], got_second["amount_minor"], got_second["payment_url"]) == ("sold_out", 0, None)
    assert shop_a.stock_quantity() == 0
