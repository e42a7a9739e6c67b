"""Every commerce constraint refuses bad data (Postgres is the arbiter)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.commerce.models import Checkout, CheckoutLine, Entitlement, InventoryReservation, Receipt, Refund, Transaction
from apps.commerce.services import LineIn, checkout_create
from apps.payments.models import WebhookEvent
from apps.tenancy.context import system_context, tenant_context
from tests.factories.commerce import shipping_in

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("row_lock_strategy")]


@pytest.fixture
def made(tenant_a, shop_a):
    """A checkout with a download and a print line (its transaction and reservation)."""
    with tenant_context(tenant_a.org.pk):
        checkout = checkout_create(
            tenant_id=tenant_a.org.pk,
            email="ann@example.test",
            provider="sandbox",
            lines=[LineIn(product_id=shop_a.download.pk), LineIn(product_id=shop_a.print.pk, quantity=2)],
            shipping=shipping_in(),
        )
        return {
            "checkout": checkout,
            "lines": list(checkout.lines.order_by("position")),
            "txn": Transaction.objects.get(checkout=checkout),
            "reservation": InventoryReservation.objects.get(checkout=checkout),
        }


def refused(tenant_id, fn, match: str) -> None:
    with tenant_context(tenant_id), pytest.raises(IntegrityError, match=match), transaction.atomic():
        fn()


def new_checkout(tenant_id, **overrides):
    values = {
        "tenant_id": tenant_id,
        "email": "x@example.test",
        "provider": "stripe",
        "status": "awaiting_payment",
        "currency": "EUR",
        "amount_minor": 100,
        "expires_at": timezone.now() + timedelta(minutes=15),
        **overrides,
    }
    return Checkout.objects.create(**values)


def test_provider_references_are_unique(tenant_a, tenant_b):
    with tenant_context(tenant_a.org.pk):
        new_checkout(tenant_a.org.pk, stripe_checkout_session_id="cs_1", paypal_order_id=None)
        new_checkout(tenant_a.org.pk)  # NULLs never collide
        new_checkout(tenant_a.org.pk)
    refused(tenant_a.org.pk, lambda: new_checkout(tenant_a.org.pk, stripe_checkout_session_id="cs_1"), "unique_stripe")
    # across tenants too: a webhook names only the reference
    with system_context("test"):
        with pytest.raises(IntegrityError, match="unique_stripe"), transaction.atomic():
            new_checkout(tenant_b.org.pk, stripe_checkout_session_id="cs_1")
    for field, name in [
        ("flutterwave_tx_ref", "unique_flutterwave"),
        ("paypal_order_id", "unique_paypal"),
        ("sandbox_reference", "unique_sandbox"),
    ]:
        with tenant_context(tenant_a.org.pk):
            new_checkout(tenant_a.org.pk, **{field: "ref-1"})
        refused(tenant_a.org.pk, lambda field=field: new_checkout(tenant_a.org.pk, **{field: "ref-1"}), name)


def test_checkout_checks(tenant_a):
    refused(tenant_a.org.pk, lambda: new_checkout(tenant_a.org.pk, status="lost"), "status_valid")
    refused(tenant_a.org.pk, lambda: new_checkout(tenant_a.org.pk, provider="cash"), "provider_valid")
    refused(tenant_a.org.pk, lambda: new_checkout(tenant_a.org.pk, currency="eur"), "currency_iso4217")
    refused(tenant_a.org.pk, lambda: new_checkout(tenant_a.org.pk, amount_minor=0), "amount_positive_if_payable")
    refused(
        tenant_a.org.pk, lambda: new_checkout(tenant_a.org.pk, amount_minor=-1, status="sold_out"), "amount_non_neg"
    )
    # a reason to close early goes with `expired` only, and is from its closed set
    with tenant_context(tenant_a.org.pk):
        new_checkout(tenant_a.org.pk, status="expired", closed_reason="photo_withdrawn")
    for status in ("awaiting_payment", "paid", "refunded"):
        refused(
            tenant_a.org.pk,
            lambda status=status: new_checkout(tenant_a.org.pk, status=status, closed_reason="photo_withdrawn"),
            "closed_reason_valid",
        )
    refused(
        tenant_a.org.pk, lambda: new_checkout(tenant_a.org.pk, status="expired", closed_reason="bored"), "closed_reason"
    )


def test_line_checks(tenant_a, made):
    line = made["lines"][0]

    def copy(**changes):
        values = {f.attname: getattr(line, f.attname) for f in CheckoutLine._meta.concrete_fields if f.attname != "id"}
        values.update({"position": 9, **changes})
        return CheckoutLine.objects.create(**values)

    refused(tenant_a.org.pk, lambda: copy(amount_minor=1), "amount_is_unit_times_quantity")
    refused(
        tenant_a.org.pk, lambda: copy(quantity=2, amount_minor=line.unit_amount_minor * 2), "quantity_one_unless_print"
    )
    refused(tenant_a.org.pk, lambda: copy(photo_id=None), "photo_unless_bulk")
    refused(tenant_a.org.pk, lambda: copy(state="lost"), "state_valid")
    refused(tenant_a.org.pk, lambda: copy(position=line.position), "unique_position")


def test_line_cannot_point_at_another_tenants_product(tenant_a, made, shop_b):
    line = made["lines"][0]
    with (
        tenant_context(tenant_a.org.pk),
        pytest.raises(IntegrityError, match="product_same_tenant"),
        transaction.atomic(),
    ):
        CheckoutLine.objects.filter(pk=line.pk).update(product_id=shop_b.download.pk)


def test_reservation_checks(tenant_a, made):
    reservation = made["reservation"]
    refused(
        tenant_a.org.pk,
        lambda: InventoryReservation.objects.filter(pk=reservation.pk).update(decided_at=None),
        "decided_iff_not_pending",
    )
    refused(
        tenant_a.org.pk,
        lambda: InventoryReservation.objects.filter(pk=reservation.pk).update(status="released"),
        "released_at_iff_released",
    )
    refused(
        tenant_a.org.pk,
        lambda: InventoryReservation.objects.create(
            tenant_id=tenant_a.org.pk,
            checkout=made["checkout"],
            line=made["lines"][1],
            product_id=reservation.product_id,
            quantity=1,
            status="confirmed",
            expires_at=timezone.now(),
            decided_at=timezone.now(),
        ),
        "line_id_key|unique",
    )


def test_transaction_status_must_match_its_facts(tenant_a, made):
    txn = made["txn"]
    now = timezone.now()
    refused(
        tenant_a.org.pk, lambda: Transaction.objects.filter(pk=txn.pk).update(status="paid"), "status_matches_facts"
    )
    refused(
        tenant_a.org.pk,
        lambda: Transaction.objects.filter(pk=txn.pk).update(paid_at=now, refunded_at=now, status="paid"),
        "status_matches_facts",
    )
    refused(
        tenant_a.org.pk,
        lambda: Transaction.objects.filter(pk=txn.pk).update(fulfilled_at=now),
        "fulfilled_only_if_paid",
    )
    refused(
        tenant_a.org.pk,
        lambda: Transaction.objects.create(
            tenant_id=tenant_a.org.pk, checkout=made["checkout"], provider="sandbox", amount_minor=1, currency="EUR"
        ),
        "checkout_id_key|unique",
    )


def test_one_entitlement_per_transaction_and_photo_or_event(tenant_a, shop_a, made):
    def grant(**changes):
        values = {
            "tenant_id": tenant_a.org.pk,
            "transaction": made["txn"],
            "checkout": made["checkout"],
            "scope": "photo",
            "event_id": shop_a.event.pk,
            "photo_id": shop_a.photo.pk,
            "email": "ann@example.test",
            "granted_at": timezone.now(),
            **changes,
        }
        return Entitlement.objects.create(**values)

    with tenant_context(tenant_a.org.pk):
        grant()
        grant(scope="event", photo_id=None)
    refused(tenant_a.org.pk, grant, "unique_transaction_photo")
    refused(tenant_a.org.pk, lambda: grant(scope="event", photo_id=None), "unique_transaction_event")
    refused(tenant_a.org.pk, lambda: grant(scope="event"), "photo_matches_scope")


def test_one_receipt_per_checkout_and_one_refund_per_reason(tenant_a, made):
    with tenant_context(tenant_a.org.pk):
        Receipt.objects.create(tenant_id=tenant_a.org.pk, checkout=made["checkout"], email="a@x.test", message_id="<m>")
        Refund.objects.create(
            tenant_id=tenant_a.org.pk,
            transaction=made["txn"],
            reason="late_payment",
            amount_minor=1,
            currency="EUR",
            idempotency_key="k1",
        )
    refused(
        tenant_a.org.pk,
        lambda: Receipt.objects.create(
            tenant_id=tenant_a.org.pk, checkout=made["checkout"], email="a@x.test", message_id="<n>"
        ),
        "checkout_id_key|unique",
    )
    refused(
        tenant_a.org.pk,
        lambda: Refund.objects.create(
            tenant_id=tenant_a.org.pk,
            transaction=made["txn"],
            reason="late_payment",
            amount_minor=1,
            currency="EUR",
            idempotency_key="k2",
        ),
        "unique_reason",
    )
    refused(
        tenant_a.org.pk,
        lambda: Receipt.objects.filter(checkout=made["checkout"]).update(status="sent"),
        "sent_at_iff_sent",
    )


def test_webhook_event_unique_per_provider_and_event_id():
    def record(provider: str, event_id: str) -> None:
        WebhookEvent.objects.create(
            provider=provider, event_id=event_id, event_type="x", raw_body=b"{}", received_at=timezone.now()
        )

    with system_context("test"):
        record("stripe", "evt_1")
        record("paypal", "evt_1")  # another provider's id space
        with pytest.raises(IntegrityError, match="unique_provider_event"), transaction.atomic():
            record("stripe", "evt_1")
        with pytest.raises(IntegrityError, match="status_valid"), transaction.atomic():
            WebhookEvent.objects.filter(provider="paypal").update(status="lost")
