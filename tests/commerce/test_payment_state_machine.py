"""The transaction state machine through the real webhook endpoint and consumers: duplicates
and out-of-order events change nothing twice; every effect exists exactly once."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from apps.commerce.models import Checkout, Entitlement, InventoryReservation, Receipt, Refund, Transaction
from apps.commerce.services import PaymentFact, checkouts_expire_due, platform_fee_minor, transaction_apply_fact
from apps.ledger.models import LedgerAccount, LedgerEvent
from apps.outbox.models import OutboxMessage
from apps.payments.models import WebhookEvent
from apps.payments.providers.base import PaymentStatus
from apps.payments.providers.registry import get_provider
from apps.payments.providers.sandbox import build_event
from apps.payments.services import webhook_event_process, webhook_event_record
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import (
    deliver,
    drain_outbox,
    sandbox_failed,
    sandbox_paid,
    sandbox_provider,
    sandbox_refunded,
    system_count,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


def open_checkout(tenant, shop, *lines) -> Checkout:
    """A committed checkout whose sandbox session exists (the consumer ran)."""
    response = post_checkout(tenant.client(), checkout_body(shop, *lines))
    assert response.status_code == 201, response.content
    drain_outbox()
    with tenant_context(tenant.org.pk):
        return Checkout.objects.get(pk=response.json()["id"])


def state(tenant, checkout_id) -> dict:
    with tenant_context(tenant.org.pk):
        checkout = Checkout.objects.get(pk=checkout_id)
        txn = Transaction.objects.get(checkout_id=checkout_id)
        return {
            "checkout": checkout.status,
            "transaction": txn.status,
            "entitlements": Entitlement.objects.filter(checkout_id=checkout_id, revoked_at__isnull=True).count(),
            "revoked": Entitlement.objects.filter(checkout_id=checkout_id, revoked_at__isnull=False).count(),
            "credits": LedgerEvent.objects.filter(reference=f"checkout:{checkout_id}", kind="credit").count(),
            "debits": LedgerEvent.objects.filter(reference=f"checkout:{checkout_id}", kind="debit").count(),
            "receipts": Receipt.objects.filter(checkout_id=checkout_id).count(),
            "refunds": Refund.objects.filter(transaction=txn).count(),
            "reservations": sorted(
                InventoryReservation.objects.filter(checkout_id=checkout_id).values_list("status", flat=True)
            ),
        }


ALL_LINES = ({"product": "download"}, {"product": "print", "quantity": 2}, {"product": "bulk"})


def lines_of(shop, *specs):
    """Lines of the shop's products by name; "bulk" is the bulk product of another event of the
    studio (the shop's own would include the photo's download, which a checkout refuses)."""
    bulk = shop.add_event_bulk() if any(spec["product"] == "bulk" for spec in specs) else None
    return [
        {**spec, "product": (bulk if spec["product"] == "bulk" else getattr(shop, spec["product"])).pk}
        for spec in specs
    ]


def test_paid_event_delivered_three_times_grants_everything_once(tenant_a, shop_a):
    # given: a checkout with a download and two prints of one photo, and an event's bulk product
    checkout = open_checkout(tenant_a, shop_a, *lines_of(shop_a, *ALL_LINES))
    # when: the shopper pays and the provider delivers the event three times
    statuses = deliver([sandbox_paid(str(checkout.pk))], duplicates=3)
    handled = drain_outbox()
    # then: every delivery answered 200, one event recorded and processed once
    assert statuses == [200, 200, 200]
    assert handled.count("webhook.received") == 1
    assert system_count(lambda: WebhookEvent.objects.filter(status="processed")) == 1
    # and: paid; one entitlement per photo plus one for the event; one credit per line; one receipt
    assert state(tenant_a, checkout.pk) == {
        "checkout": "paid",
        "transaction": "paid",
        "entitlements": 2,
        "revoked": 0,
        "credits": 3,
        "debits": 0,
        "receipts": 1,
        "refunds": 0,
        "reservations": ["confirmed"],
    }
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ann@example.test"]
    assert mail.outbox[0].extra_headers["Message-ID"].startswith(f"<receipt-{checkout.pk}@")
    # and: the photographer is credited net of the platform fee; the bulk line goes to the owner
    with tenant_context(tenant_a.org.pk):
        credits = dict(
            LedgerEvent.objects.filter(reference=f"checkout:{checkout.pk}").values_list(
                "idempotency_key", "amount_minor"
            )
        )
        wallet = LedgerAccount.objects.get(owner=shop_a.photographer, kind="wallet")
        owner_wallet = LedgerAccount.objects.get(owner=tenant_a.owner, kind="wallet")
    with tenant_context(tenant_a.org.pk):
        by_kind = {line.kind: line for line in Checkout.objects.get(pk=checkout.pk).lines.all()}
    assert credits == {
        f"sale:{checkout.pk}:{line.pk}": line.amount_minor - platform_fee_minor(line.amount_minor)
        for line in by_kind.values()
    }
    with tenant_context(tenant_a.org.pk):
        accounts = set(
            LedgerEvent.objects.filter(reference=f"checkout:{checkout.pk}").values_list("account_id", flat=True)
        )
    assert accounts == {wallet.pk, owner_wallet.pk}
    # and: processing the same event again (a replayed message) changes nothing
    from apps.payments.services import webhook_events_replay

    with system_context("test replay"):
        webhook_events_replay(failed=False, ids=list(WebhookEvent.objects.values_list("pk", flat=True)))
    drain_outbox()
    assert state(tenant_a, checkout.pk)["credits"] == 3
    assert len(mail.outbox) == 1


def test_refund_arriving_before_the_payment_ends_refunded_and_grants_nothing(tenant_a, shop_a):
    # given: a checkout paid and refunded at the provider
    checkout = open_checkout(tenant_a, shop_a, *lines_of(shop_a, {"product": "download"}, {"product": "print"}))
    paid = sandbox_paid(str(checkout.pk))
    refunded = sandbox_refunded(str(checkout.pk), checkout.amount_minor)
    # when: the refund is delivered and processed first, the payment after it
    deliver([refunded])
    drain_outbox()
    deliver([paid])
    drain_outbox()
    # then: refunded, nothing granted, the stock back
    assert state(tenant_a, checkout.pk) == {
        "checkout": "refunded",
        "transaction": "refunded",
        "entitlements": 0,
        "revoked": 0,
        "credits": 0,
        "debits": 0,
        "receipts": 0,
        "refunds": 0,
        "reservations": ["released"],
    }
    assert shop_a.stock_quantity() == 10
    # and: the shopper's only e-mail says the payment was refunded (no receipt)
    assert [m.subject.split(" (")[0] for m in mail.outbox] == [f"Your payment to {tenant_a.org.name} was refunded"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_paid_and_refunded_shuffled_three_times_each_end_refunded_with_effects_balanced(tenant_a, shop_a, seed):
    # given: paid and refunded events of one checkout
    checkout = open_checkout(tenant_a, shop_a, *lines_of(shop_a, {"product": "download"}))
    events = [sandbox_paid(str(checkout.pk)), sandbox_refunded(str(checkout.pk), checkout.amount_minor)]
    # when: each is delivered three times, all shuffled, processed in delivery order
    assert deliver(events, duplicates=3, shuffle=True, seed=seed) == [200] * 6
    drain_outbox()
    # then: refunded whatever the order; two events recorded; anything granted was taken back once
    result = state(tenant_a, checkout.pk)
    assert (result["checkout"], result["transaction"]) == ("refunded", "refunded")
    assert system_count(lambda: WebhookEvent.objects.all()) == 2
    assert result["entitlements"] == 0
    assert result["credits"] == result["debits"] <= 1
    assert result["revoked"] == result["credits"]


def test_refund_after_fulfilment_revokes_entitlements_and_reverses_credits(tenant_a, shop_a):
    checkout = open_checkout(tenant_a, shop_a, *lines_of(shop_a, {"product": "download"}, {"product": "bulk"}))
    deliver([sandbox_paid(str(checkout.pk))])
    drain_outbox()
    deliver([sandbox_refunded(str(checkout.pk), checkout.amount_minor)], duplicates=2)
    drain_outbox()
    result = state(tenant_a, checkout.pk)
    assert (result["checkout"], result["transaction"]) == ("refunded", "refunded")
    assert (result["entitlements"], result["revoked"], result["credits"], result["debits"]) == (0, 2, 2, 2)


def test_a_print_is_shipped_not_downloaded(tenant_a, shop_a):
    # given: an order of a print alone, and one of the print and the download of the same photo
    assert shop_a.print.photo_id == shop_a.download.photo_id
    print_only = open_checkout(tenant_a, shop_a, *lines_of(shop_a, {"product": "print"}))
    both = open_checkout(tenant_a, shop_a, *lines_of(shop_a, {"product": "print"}, {"product": "download"}))
    # when: both are paid
    deliver([sandbox_paid(str(print_only.pk)), sandbox_paid(str(both.pk))])
    drain_outbox()
    # then: the print alone grants no download of the original (the download is sold apart);
    # with the download, one entitlement; every line credits its photographer
    alone, with_download = state(tenant_a, print_only.pk), state(tenant_a, both.pk)
    assert (alone["checkout"], alone["entitlements"], alone["credits"]) == ("paid", 0, 1)
    assert (with_download["checkout"], with_download["entitlements"], with_download["credits"]) == ("paid", 1, 2)


def test_failed_payment_closes_the_checkout_and_releases_stock_once(tenant_a, shop_a):
    checkout = open_checkout(tenant_a, shop_a, *lines_of(shop_a, {"product": "print", "quantity": 3}))
    assert shop_a.stock_quantity() == 7
    deliver([sandbox_failed(str(checkout.pk))], duplicates=3)
    drain_outbox()
    result = state(tenant_a, checkout.pk)
    assert (result["checkout"], result["transaction"], result["reservations"]) == ("failed", "failed", ["released"])
    assert shop_a.stock_quantity() == 10
    # and: a payment event arriving afterwards is not kept: a refund is requested
    late = build_event(
        status=PaymentStatus.PAID,
        reference=f"sbx_{checkout.pk}",
        checkout_id=str(checkout.pk),
        amount_minor=checkout.amount_minor,
        currency="EUR",
    )
    deliver([late])
    drain_outbox(topics={"webhook.received"})
    result = state(tenant_a, checkout.pk)
    assert (result["transaction"], result["entitlements"], result["refunds"]) == ("paid", 0, 1)
    assert shop_a.stock_quantity() == 10


def test_late_payment_after_expiry_is_refunded_through_the_adapter(tenant_a, shop_a):
    # given: a checkout whose reservation expired unpaid (stock released)
    checkout = open_checkout(tenant_a, shop_a, *lines_of(shop_a, {"product": "print", "quantity": 2}))
    assert checkouts_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    assert state(tenant_a, checkout.pk)["reservations"] == ["released"]
    assert shop_a.stock_quantity() == 10
    # when: the shopper pays anyway at the provider, and the event is processed
    deliver([sandbox_paid(str(checkout.pk))])
    handled = drain_outbox()
    # then: nothing granted; a refund was requested and submitted to the provider, once
    assert handled.count("payment.refund_requested") == 1
    result = state(tenant_a, checkout.pk)
    assert (result["checkout"], result["transaction"], result["entitlements"], result["credits"]) == (
        "expired",
        "paid",
        0,
        0,
    )
    with tenant_context(tenant_a.org.pk):
        refund = Refund.objects.get()
    assert (refund.reason, refund.status, refund.amount_minor) == ("late_payment", "submitted", checkout.amount_minor)
    provider_view = sandbox_provider().fetch_status(reference=f"sbx_{checkout.pk}")
    assert provider_view.status == PaymentStatus.REFUNDED
    assert refund.provider_refund_id.startswith("re_sbx_")
    # and: the provider's refund webhook then ends the transaction refunded; stock stays released
    deliver([sandbox_provider().refunded_event(reference=f"sbx_{checkout.pk}")])
    drain_outbox()
    assert state(tenant_a, checkout.pk)["transaction"] == "refunded"
    assert shop_a.stock_quantity() == 10


def test_a_late_payment_partly_refunded_in_the_dashboard_ends_refunded_with_nothing_failed(tenant_a, shop_a):
    # given: a checkout paid after it expired; its late-payment refund is not sent yet
    checkout = open_checkout(tenant_a, shop_a, *lines_of(shop_a, {"product": "print", "quantity": 2}))
    assert checkouts_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    deliver([sandbox_paid(str(checkout.pk))])
    drain_outbox(topics={"webhook.received"})
    # when: the studio refunds 10.00 of it in the provider's dashboard first, so the provider
    # refuses Darkroom's refund of the whole amount
    reference = f"sbx_{checkout.pk}"
    made = sandbox_provider().refund(reference=reference, amount_minor=1000, idempotency_key="dashboard-1")
    drain_outbox(topics={"payment.refund_requested"})
    with tenant_context(tenant_a.org.pk):
        assert Refund.objects.get(reason="late_payment").status == "failed"
    deliver([sandbox_provider().refunded_event(reference=reference, refund_id=made.refund_id)])
    drain_outbox()
    # then: the 10.00 is recorded as refunded at the provider
    with tenant_context(tenant_a.org.pk):
        parts = list(Refund.objects.filter(reason="provider_partial").values_list("amount_minor", flat=True))
    assert parts == [1000]
    # when: the studio refunds the rest in the dashboard
    rest = sandbox_provider().refund(
        reference=reference, amount_minor=checkout.amount_minor - 1000, idempotency_key="dashboard-2"
    )
    deliver([sandbox_provider().refunded_event(reference=reference, refund_id=rest.refund_id)])
    drain_outbox()
    # then: the payment is refunded whole and nothing is left failed (the refused refund is moot)
    assert state(tenant_a, checkout.pk)["transaction"] == "refunded"
    with tenant_context(tenant_a.org.pk):
        assert Refund.objects.get(reason="late_payment").status == "not_needed"


def test_charged_amount_differing_from_the_checkout_is_refunded_not_fulfilled(tenant_a, shop_a):
    checkout = open_checkout(tenant_a, shop_a, *lines_of(shop_a, {"product": "download"}))
    wrong = build_event(
        status=PaymentStatus.PAID,
        reference=f"sbx_{checkout.pk}",
        checkout_id=str(checkout.pk),
        amount_minor=1,
        currency="EUR",
        event_id="evt_sbx_wrong_amount",
    )
    deliver([wrong])
    drain_outbox(topics={"webhook.received"})
    result = state(tenant_a, checkout.pk)
    assert (result["checkout"], result["entitlements"], result["refunds"]) == ("failed", 0, 1)
    with tenant_context(tenant_a.org.pk):
        assert Refund.objects.get().reason == "amount_mismatch"


def test_an_underpayment_refunded_in_full_ends_refunded(tenant_a, shop_a):
    # given: the provider charged less than the checkout's total, so the charge is refunded
    checkout = open_checkout(tenant_a, shop_a, *lines_of(shop_a, {"product": "download"}))
    charged = checkout.amount_minor - 100
    facts = {"reference": f"sbx_{checkout.pk}", "checkout_id": str(checkout.pk), "currency": checkout.currency}
    deliver([build_event(status=PaymentStatus.PAID, amount_minor=charged, event_id="evt_sbx_under", **facts)])
    drain_outbox(topics={"webhook.received"})
    with tenant_context(tenant_a.org.pk):
        assert Refund.objects.values_list("reason", "amount_minor").get() == ("amount_mismatch", charged)
    # when: the provider confirms the refund of all it charged (less than the checkout's total)
    deliver([build_event(status=PaymentStatus.REFUNDED, amount_minor=charged, event_id="evt_sbx_under_r", **facts)])
    drain_outbox(topics={"webhook.received"})
    # then: the payment is recorded as given back, not as a partial refund of a kept payment
    with tenant_context(tenant_a.org.pk):
        txn = Transaction.objects.get(checkout_id=checkout.pk)
    assert (txn.status, txn.refunded_at is not None) == ("refunded", True)
    assert state(tenant_a, checkout.pk)["checkout"] == "failed"


def test_a_paypal_refund_naming_only_its_capture_is_applied(tenant_a, shop_a):
    # given: a paid PayPal checkout whose capture id is on its transaction
    response = post_checkout(
        tenant_a.client(), checkout_body(shop_a, {"product": shop_a.download.pk}, provider="paypal")
    )
    assert response.status_code == 201, response.content
    checkout_id = response.json()["id"]
    with tenant_context(tenant_a.org.pk):
        amount = Checkout.objects.get(pk=checkout_id).amount_minor
        paid = transaction_apply_fact(
            tenant_id=tenant_a.org.pk,
            checkout_id=checkout_id,
            fact=PaymentFact(
                status="paid",
                source="paypal:capture",
                amount_minor=amount,
                currency="EUR",
                payment_id="2GG279541U471931P",
                reference="5O190127TN364715T",
            ),
        )
    assert paid.after == "paid"
    # when: PayPal's refund event arrives as its documentation shows it: the refund, with no
    # custom_id and no order id, only the link up to the capture (a refund made in PayPal itself)
    value = f"{amount // 100}.{amount % 100:02d}"
    refund = {
        "id": "1JU08902781691411",
        "status": "COMPLETED",
        "amount": {"currency_code": "EUR", "value": value},
        "seller_payable_breakdown": {"total_refunded_amount": {"currency_code": "EUR", "value": value}},
        "links": [
            {"rel": "up", "href": "https://api-m.paypal.com/v2/payments/captures/2GG279541U471931P", "method": "GET"}
        ],
    }
    body = json.dumps(
        {
            "id": "WH-capture-only",
            "event_type": "PAYMENT.CAPTURE.REFUNDED",
            "resource_type": "refund",
            "resource": refund,
        }
    ).encode()
    envelope = get_provider("paypal").parse_webhook(body=body, headers={})
    recorded = webhook_event_record(provider="paypal", envelope=envelope, body=body, headers={})
    webhook_event_process(webhook_event_id=recorded.webhook_event_id, message_id=uuid.uuid4())
    # then: found by its capture: refunded, the download revoked, the photographer's credit reversed
    result = state(tenant_a, checkout_id)
    assert (result["transaction"], result["entitlements"], result["revoked"]) == ("refunded", 0, 1)
    assert result["debits"] == result["credits"] == 1


def test_expiry_releases_stock_exactly_once_and_skips_paid_checkouts(tenant_a, shop_a):
    unpaid = open_checkout(tenant_a, shop_a, *lines_of(shop_a, {"product": "print", "quantity": 2}))
    paid = open_checkout(tenant_a, shop_a, *lines_of(shop_a, {"product": "print", "quantity": 3}))
    deliver([sandbox_paid(str(paid.pk))])
    drain_outbox()
    later = timezone.now() + timedelta(hours=1)
    assert checkouts_expire_due(now=later) == 1
    assert checkouts_expire_due(now=later) == 0
    assert shop_a.stock_quantity() == 7
    assert state(tenant_a, unpaid.pk)["checkout"] == "expired"
    assert state(tenant_a, paid.pk)["checkout"] == "paid"
    with system_context("test"):  # the one message left closes the expired checkout's session
        pending = OutboxMessage.objects.filter(status="pending")
        assert [(m.topic, m.aggregate_id) for m in pending] == [
            ("checkout.payment_session_close_requested", str(unpaid.pk))
        ]


def test_a_refund_whose_message_the_broker_lost_is_queued_again_and_submitted_once(tenant_a, shop_a):
    from tasks.payments import refunds_requeue_stale_task

    # given: a late payment whose refund was requested, and whose message the broker then lost
    checkout = open_checkout(tenant_a, shop_a, *lines_of(shop_a, {"product": "print", "quantity": 1}))
    assert checkouts_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    deliver([sandbox_paid(str(checkout.pk))])
    drain_outbox(topics={"webhook.received", "checkout.payment_session_close_requested"})
    with system_context("test: the broker forgets the message"):
        OutboxMessage.objects.filter(topic="payment.refund_requested").update(
            status=OutboxMessage.Status.PUBLISHED, published_at=timezone.now()
        )
        Refund.objects.update(queued_at=timezone.now() - timedelta(minutes=11))
    with tenant_context(tenant_a.org.pk):
        assert Refund.objects.get().status == "requested"
    # when: the beat sweep runs twice (the second pass finds it freshly queued)
    assert refunds_requeue_stale_task() == 1
    assert refunds_requeue_stale_task() == 0
    # then: the new message submits the refund to the provider, once
    assert drain_outbox() == ["payment.refund_requested"]
    with tenant_context(tenant_a.org.pk):
        refund = Refund.objects.get()
    assert refund.status == "submitted" and refund.provider_refund_id.startswith("re_sbx_")
    assert sandbox_provider().fetch_status(reference=f"sbx_{checkout.pk}").status == PaymentStatus.REFUNDED
    with system_context("test"):
        assert AuditLog.objects.filter(action="refund.requeue", target_id=str(refund.pk)).count() == 1
