"""Open checkouts whose next step's message the broker lost (a Redis restart) are moved on by the
`commerce.checkouts_requeue_stale` sweep: settled once their stock is decided, or asked again
for their payment session. Checkouts still waiting for the writer, or changed recently, are left
alone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.commerce.batched import inventory_sku_drain
from apps.commerce.models import Checkout
from apps.outbox.models import OutboxMessage
from apps.tenancy.context import system_context, tenant_context
from tasks.commerce import checkouts_requeue_stale_task
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import buy_print, drain_outbox
from tests.factories.commerce import Shop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


def lose_pending_messages() -> None:
    """What a Redis restart does: the relay had marked the messages published, the broker forgot them."""
    with system_context("test: the broker forgets the messages"):
        OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING).update(
            status=OutboxMessage.Status.PUBLISHED, published_at=timezone.now()
        )


def last_changed(checkout_id: Any, *, minutes_ago: int) -> None:
    with system_context("test: time passes"):
        Checkout.objects.filter(pk=checkout_id).update(updated_at=timezone.now() - timedelta(minutes=minutes_ago))


def status_of(shop: Shop, checkout_id: Any) -> str:
    with tenant_context(shop.org.pk):
        return Checkout.objects.get(pk=checkout_id).status


def test_a_reserving_checkout_whose_decision_message_was_lost_is_settled_once(shop_a: Shop, settings: Any) -> None:
    settings.INVENTORY_STRATEGY = "batched"
    # given: three checkouts whose stock the writer decided, but whose decision messages were lost
    # (one 11 minutes ago, one just now, one 11 minutes ago but past its expiry), and one still
    # waiting for the writer for 11 minutes
    decided_long_ago, decided_now, overdue = buy_print(shop_a, 1), buy_print(shop_a, 2), buy_print(shop_a, 4)
    with tenant_context(shop_a.org.pk):
        report = inventory_sku_drain(tenant_id=shop_a.org.pk, product_id=shop_a.print.pk)
    assert report.confirmed == 3
    waiting = buy_print(shop_a, 3)
    lose_pending_messages()
    last_changed(decided_long_ago.pk, minutes_ago=11)
    last_changed(waiting.pk, minutes_ago=11)
    last_changed(overdue.pk, minutes_ago=11)
    with system_context("test: its reservation ran out"):
        Checkout.objects.filter(pk=overdue.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    # when: the beat sweep runs twice (the second pass finds nothing due)
    assert checkouts_requeue_stale_task() == {"settled": 1, "sessions_requested": 0, "session_closes_requested": 0}
    assert checkouts_requeue_stale_task() == {"settled": 0, "sessions_requested": 0, "session_closes_requested": 0}

    # then: only the old decided checkout was settled (the overdue one is the expiry sweep's);
    # its payment session follows as usual
    assert [status_of(shop_a, c.pk) for c in (decided_long_ago, decided_now, waiting, overdue)] == [
        "awaiting_payment_session",
        "reserving",
        "reserving",
        "reserving",
    ]
    assert drain_outbox() == ["checkout.payable"]
    assert status_of(shop_a, decided_long_ago.pk) == "awaiting_payment"


def test_a_checkout_whose_payment_session_message_was_lost_is_asked_again(tenant_a: Any, shop_a: Shop) -> None:
    # given: two download checkouts whose `checkout.created` messages were lost, 11 minutes and 1 minute ago
    old, recent = (
        post_checkout(tenant_a.client(), checkout_body(shop_a, {"product": shop_a.download.pk})).json()["id"]
        for _ in range(2)
    )
    lose_pending_messages()
    last_changed(old, minutes_ago=11)
    last_changed(recent, minutes_ago=1)

    # when: the beat sweep runs twice
    assert checkouts_requeue_stale_task() == {"settled": 0, "sessions_requested": 1, "session_closes_requested": 0}
    assert checkouts_requeue_stale_task() == {"settled": 0, "sessions_requested": 0, "session_closes_requested": 0}

    # then: the old checkout gets its session from the new message; the recent one still waits
    assert drain_outbox() == ["checkout.payment_session_requested"]
    assert [status_of(shop_a, c) for c in (old, recent)] == ["awaiting_payment", "awaiting_payment_session"]
