"""A writer that has caught up lingers (INVENTORY_WRITER_LINGER_SECONDS) before its next batch,
so reservations arriving meanwhile share one transaction; a full batch is followed at once."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from apps.commerce.batched import BatchOutcome, inventory_sku_drain
from apps.commerce.batched import writer as batched_writer
from tests.commerce.helpers import buy_print
from tests.factories.commerce import Shop

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _batched(settings: Any) -> None:
    settings.INVENTORY_STRATEGY = "batched"


def test_reservations_arriving_while_the_writer_lingers_share_one_batch(
    shop_a: Shop, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: one pending reservation and a writer that lingers 0.5 s after a partial batch; its
    # linger lasts until the shoppers below have bought (three checkouts can take longer than
    # 0.5 s on a loaded machine, and then the test would measure the machine, not the writer)
    settings.INVENTORY_WRITER_LINGER_SECONDS = 0.5
    buy_print(shop_a, 0)
    sizes: list[int] = []
    lingered: list[float] = []
    first_batch, bought = threading.Event(), threading.Event()
    real_sleep = batched_writer.time.sleep

    def on_batch(outcome: BatchOutcome) -> None:
        sizes.append(outcome.decided)
        first_batch.set()

    def drain() -> None:
        try:
            inventory_sku_drain(tenant_id=shop_a.org.pk, product_id=shop_a.print.pk, on_batch=on_batch)
        finally:
            connection.close()

    writer = threading.Thread(target=drain)

    def linger_until_bought(seconds: float) -> None:
        if threading.current_thread() is writer and seconds == settings.INVENTORY_WRITER_LINGER_SECONDS:
            lingered.append(seconds)
            bought.wait(60)
        else:
            real_sleep(seconds)

    monkeypatch.setattr(batched_writer.time, "sleep", linger_until_bought)
    writer.start()
    # when: three more shoppers buy while it lingers after deciding the first one
    try:
        assert first_batch.wait(timeout=60)
        for n in range(1, 4):
            buy_print(shop_a, n)
    finally:
        bought.set()
    writer.join(timeout=60)
    # then: the writer lingered after its partial batch, and the three were decided together, in
    # the same tenure
    assert not writer.is_alive()
    assert lingered and lingered[0] == 0.5
    assert sizes == [1, 3]


def test_a_full_batch_is_followed_at_once_and_only_a_partial_one_lingers(
    shop_a: Shop, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: five pending reservations, batches of two, a 0.5 s linger; sleeps are recorded
    settings.INVENTORY_WRITER_LINGER_SECONDS = 0.5
    for n in range(5):
        buy_print(shop_a, n)
    slept: list[float] = []
    monkeypatch.setattr(batched_writer.time, "sleep", slept.append)
    sizes: list[int] = []
    # when
    report = inventory_sku_drain(
        tenant_id=shop_a.org.pk, product_id=shop_a.print.pk, batch_size=2, on_batch=lambda o: sizes.append(o.decided)
    )
    # then: 2 + 2 back to back, then 1 (partial), one linger, and the SKU is handed back
    assert report.status == "drained"
    assert sizes == [2, 2, 1]
    assert slept == [0.5]
