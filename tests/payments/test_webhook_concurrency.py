"""20 concurrent deliveries of one event id (threads, real connections): one WebhookEvent, one
outbox message, one processing, every delivery answered 200. And concurrent redeliveries of
the one message to the consumer: one inbox row, effects once."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client

from apps.commerce.models import Checkout, Entitlement, Receipt
from apps.ledger.models import LedgerEvent
from apps.outbox.models import InboxEntry, OutboxMessage
from apps.payments.models import WebhookEvent
from apps.tenancy.context import system_context, tenant_context
from tasks.payments import process_webhook
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import drain_outbox, sandbox_paid, system_count
from tests.payments.signing_helpers import sandbox_headers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.usefixtures("empty_broker")]


def run_threads(count: int, target) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = target()
        except Exception as exc:  # noqa: BLE001 - reported through the results
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_twenty_concurrent_deliveries_of_one_event_record_and_process_it_once(tenant_a, shop):
    # given: a checkout awaiting payment and the provider's signed paid event
    checkout_id = post_checkout(tenant_a.client(), checkout_body(shop, {"product": shop.download.pk})).json()["id"]
    drain_outbox()
    event = sandbox_paid(checkout_id)

    def deliver() -> int:
        headers = sandbox_headers(event.body)
        headers.pop("Content-Type")
        return (
            Client()
            .post("/webhooks/sandbox", data=event.body, content_type="application/json", headers=headers)
            .status_code
        )

    # when: 20 threads deliver it at the same moment, each on its own connection
    statuses = run_threads(20, deliver)
    # then: all answered 200; one event and one outbox message exist
    assert statuses == [200] * 20
    assert system_count(lambda: WebhookEvent.objects.all()) == 1
    assert system_count(lambda: OutboxMessage.objects.filter(topic="webhook.received")) == 1
    # and: processing ran once
    assert drain_outbox().count("webhook.received") == 1
    assert system_count(lambda: InboxEntry.objects.filter(consumer="payments.process_webhook")) == 1
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=checkout_id).status == "paid"
        assert Entitlement.objects.count() == 1
        assert LedgerEvent.objects.filter(reference=f"checkout:{checkout_id}").count() == 1


def test_concurrent_redeliveries_of_one_message_apply_it_once(tenant_a, shop):
    # given: a recorded paid event whose outbox message is about to be consumed
    checkout_id = post_checkout(tenant_a.client(), checkout_body(shop, {"product": shop.download.pk})).json()["id"]
    drain_outbox()
    event = sandbox_paid(checkout_id)
    headers = sandbox_headers(event.body)
    headers.pop("Content-Type")
    assert (
        Client()
        .post("/webhooks/sandbox", data=event.body, content_type="application/json", headers=headers)
        .status_code
        == 200
    )
    with system_context("test"):
        message = OutboxMessage.objects.get(topic="webhook.received")

    # when: 8 workers run the consumer for that same message at once (broker redelivery)
    outcomes = run_threads(8, lambda: process_webhook(message_id=str(message.pk), payload=message.payload))
    # then: exactly one applied it; the others found the inbox row
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert sum(1 for o in outcomes if o.startswith("pending -> paid")) == 1
    assert sum(1 for o in outcomes if o == "duplicate message: skipped") == 7
    with tenant_context(tenant_a.org.pk):
        assert Entitlement.objects.count() == 1
        assert Receipt.objects.count() == 1
        assert LedgerEvent.objects.filter(reference=f"checkout:{checkout_id}").count() == 1
