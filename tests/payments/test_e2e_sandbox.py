"""The whole path through the sandbox, on the production path: API → outbox relay → real Celery
worker (provider session) → pay page → sandbox sender (3 deliveries per event, shuffled) →
webhook endpoint → relay → worker (state machine, entitlements, wallet credits, receipt) →
ledger projector → entitlements API → signed download of the original."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from django.core import mail
from django.core.files.storage import default_storage
from django.test import Client, override_settings

from apps.commerce.models import Checkout, Entitlement, Receipt
from apps.commerce.services import platform_fee_minor
from apps.ledger.models import AccountBalance, LedgerAccount, LedgerEvent
from apps.ledger.projection import Projector
from apps.outbox.models import InboxEntry
from apps.payments.models import WebhookEvent
from apps.tenancy.context import tenant_context
from tests.commerce.fixtures import checkout_body, outbox_idle, post_checkout, running_relay, wait_until, worker_running
from tests.commerce.helpers import system_count

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def worker() -> Iterator[None]:
    with worker_running():
        yield


def checkout_status(client, checkout_id: str) -> str:
    return client.get(f"/api/v1/checkouts/{checkout_id}").json()["status"]


def receipt_sent(tenant_id: int, checkout_id: str) -> bool:
    with tenant_context(tenant_id):
        return Receipt.objects.filter(checkout_id=checkout_id, status="sent").exists()


@override_settings(SANDBOX_WEBHOOK_DUPLICATES=3, SANDBOX_WEBHOOK_SHUFFLE=True)
def test_checkout_pay_webhook_paid_entitlements_wallet_credit_exactly_once(tenant_a, shop, worker, caplog):
    api = tenant_a.client()
    lines = [
        {"product": shop.download.pk, "photo": shop.photo.pk},
        {"product": shop.print.pk, "quantity": 2},
        # all photos of another event (the shop's own event's would include the download)
        {"product": shop.add_event_bulk().pk},
    ]
    with running_relay(), caplog.at_level(logging.INFO, logger="darkroom.request"):
        # given: a checkout created through the API (one transaction, outbox row)
        created = post_checkout(api, checkout_body(shop, *lines, email="Ann@Example.test"))
        assert created.status_code == 201, created.content
        checkout_id = created.json()["id"]
        # when: the relay and the worker create the provider session after commit
        wait_until(lambda: checkout_status(api, checkout_id) == "awaiting_payment")
        payment_url = api.get(f"/api/v1/checkouts/{checkout_id}").json()["payment_url"]
        pay_path = payment_url.split("://", 1)[1].split("/", 1)[1]
        shopper = Client()
        page = shopper.get(f"/{pay_path}")
        assert page.status_code == 200
        assert b"108.00 EUR" in page.content and b"Pay" in page.content and b"Fail" in page.content
        # and: the shopper presses Pay; the sandbox sends 3 signed deliveries of its event
        paid = shopper.post(f"/{pay_path}", {"action": "pay"})
        assert paid.status_code == 302 and paid["Location"] == f"/sandbox/checkouts/{checkout_id}"
        # then: the webhook is processed and the receipt goes out
        wait_until(lambda: receipt_sent(tenant_a.org.pk, checkout_id))
        wait_until(
            lambda: (
                sum(1 for r in caplog.records if getattr(r, "path", "") == "/webhooks/sandbox") == 3 and outbox_idle()
            )
        )
    deliveries = [r for r in caplog.records if getattr(r, "path", "") == "/webhooks/sandbox"]
    assert [r.status for r in deliveries] == [200, 200, 200]
    assert Client().get(f"/sandbox/checkouts/{checkout_id}").status_code == 200

    # and: every effect exists exactly once
    assert system_count(lambda: WebhookEvent.objects.filter(status="processed")) == 1
    assert system_count(lambda: WebhookEvent.objects.all()) == 1
    assert system_count(lambda: InboxEntry.objects.filter(consumer="payments.process_webhook")) == 1
    with tenant_context(tenant_a.org.pk):
        checkout = Checkout.objects.get(pk=checkout_id)
        assert (checkout.status, checkout.transaction.status) == ("paid", "paid")
        assert Entitlement.objects.filter(checkout=checkout).count() == 2  # the photo + the event
        sales = list(LedgerEvent.objects.filter(reference=f"checkout:{checkout_id}"))
        lines_by_pk = {line.pk: line for line in checkout.lines.all()}
    assert len(sales) == 3
    assert sorted(e.idempotency_key for e in sales) == sorted(f"sale:{checkout_id}:{pk}" for pk in lines_by_pk)
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["Ann@Example.test"]

    # and: the projector folds the credits into the wallets' balances
    projector = Projector(name="e2e-test")
    try:
        projector.catch_up()
    finally:
        projector.close()
    net = {kind: 0 for kind in ("download", "print", "bulk")}
    for line in lines_by_pk.values():
        net[line.kind] += line.amount_minor - platform_fee_minor(line.amount_minor)
    with tenant_context(tenant_a.org.pk):
        photographer_wallet = LedgerAccount.objects.get(owner=shop.photographer, kind="wallet")
        owner_wallet = LedgerAccount.objects.get(owner=tenant_a.owner, kind="wallet")
        balance = {
            account.pk: sum(AccountBalance.objects.filter(account=account).values_list("balance_minor", flat=True))
            for account in (photographer_wallet, owner_wallet)
        }
    assert balance == {photographer_wallet.pk: net["download"] + net["print"], owner_wallet.pk: net["bulk"]}

    # and: the shopper's downloads are listed and the original streams through a signed link
    listed = api.get("/api/v1/entitlements", {"email": "ann@example.test"}).json()
    assert listed["count"] == 2
    photo_entitlement = next(e for e in listed["results"] if e["scope"] == "photo")
    url = photo_entitlement["downloads"][0]["url"]
    response = Client().get(url.split("testserver", 1)[1])
    assert response.status_code == 200
    streamed = b"".join(response.streaming_content)
    with default_storage.open(shop.photo.original.name, "rb") as handle:
        original = handle.read()
    assert streamed == original and len(original) > 1000


def queued(queue: str) -> list[dict]:
    import json

    from django.conf import settings

    from config.celery_app import app as celery_app

    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("global_keyprefix", "")
    with celery_app.connection_for_write() as conn:
        client = conn.default_channel.client  # prefixes kombu's own commands, not LRANGE
        return [json.loads(raw) for raw in client.lrange(f"{prefix}{queue}", 0, -1)]


@override_settings(
    SANDBOX_WEBHOOK_DUPLICATES=2,
    SANDBOX_WEBHOOK_DELAY_SECONDS=0.5,
    SANDBOX_WEBHOOK_TRANSPORT="tests.commerce.helpers.WsgiTransport",
)
def test_fail_button_sends_delayed_duplicated_webhooks_and_the_checkout_fails(tenant_a, shop):
    from tests.commerce.fixtures import purge_queues
    from tests.commerce.helpers import drain_outbox

    purge_queues()
    api = tenant_a.client()
    checkout_id = post_checkout(api, checkout_body(shop, {"product": shop.print.pk, "quantity": 4})).json()["id"]
    drain_outbox()
    shopper = Client()
    # an unknown checkout has no page; a form without a choice is refused
    assert shopper.get("/sandbox/pay/00000000-0000-0000-0000-000000000001").status_code == 404
    assert shopper.post(f"/sandbox/pay/{checkout_id}", {"action": "steal"}).status_code == 400
    # when: the shopper presses Fail
    response = shopper.post(f"/sandbox/pay/{checkout_id}", {"action": "fail"})
    assert response.status_code == 302
    # then: two deliveries are queued for the sender, each with its delay as an ETA
    messages = queued("payments")
    assert [m["headers"]["task"] for m in messages] == ["payments.sandbox_deliver"] * 2
    assert all(m["headers"]["eta"] for m in messages)
    # and: pressing Pay after Fail is refused by the provider (settled once)
    assert shopper.post(f"/sandbox/pay/{checkout_id}", {"action": "pay"}).status_code == 409
    # when: a worker sends them and the relay hands the event to processing
    with worker_running(purge_first=False), running_relay():
        wait_until(lambda: checkout_status(api, checkout_id) == "failed")
    # then: failed, stock back, one event for two deliveries
    assert shop.stock_quantity() == 10
    assert system_count(lambda: WebhookEvent.objects.all()) == 1
