"""PayPal has no call that closes an order; an expired checkout is protected by never capturing its
order: the buyer's approval moves no money, so nothing is charged and nothing must be refunded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.commerce.models import Checkout, Entitlement, Refund
from apps.commerce.services import checkouts_expire_due
from apps.commerce.services.checkout import TOPIC_PAYMENT_SESSION_CLOSE_REQUESTED
from apps.payments.models import WebhookEvent
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.helpers import drain_outbox
from tests.payments.test_webhook_paypal_capture import (  # noqa: F401 - `paypal` is a fixture
    approved_event,
    deliver,
    paypal,
    paypal_checkout,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_expired_checkouts_approved_order_is_never_captured(tenant_a, shop, paypal):  # noqa: F811
    # given: a PayPal checkout whose order exists, then expired unpaid
    checkout_id, order_id = paypal_checkout(tenant_a, shop)
    requests_before = len(paypal.requests)
    assert checkouts_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    # when: its close message is handled (PayPal: nothing to call), and the buyer approves late
    assert drain_outbox() == [TOPIC_PAYMENT_SESSION_CLOSE_REQUESTED]
    deliver(approved_event(order_id=order_id, checkout_id=checkout_id))
    drain_outbox()
    # then: PayPal was not called at all: no capture, so no charge, and no refund is needed
    assert paypal.requests[requests_before:] == []
    with system_context("test: webhook ledger"):
        [approval] = WebhookEvent.objects.filter(provider="paypal", event_type="CHECKOUT.ORDER.APPROVED")
    assert approval.outcome == "approved after its checkout closed: not captured"
    with tenant_context(tenant_a.org.pk):
        checkout = Checkout.objects.select_related("transaction").get(pk=checkout_id)
        assert (checkout.status, checkout.transaction.status) == ("expired", "expired")
        assert checkout.capture_requested_at is None  # the attempt concluded: no sweep asks again
        assert Refund.objects.count() == 0
        assert Entitlement.objects.count() == 0


def test_an_overdue_checkout_not_yet_swept_is_not_captured_either(tenant_a, shop, paypal):  # noqa: F811
    # given: a PayPal checkout past its expiry that the sweep has not reached yet
    checkout_id, order_id = paypal_checkout(tenant_a, shop)
    with tenant_context(tenant_a.org.pk):
        Checkout.objects.filter(pk=checkout_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    # when: the buyer's approval arrives
    deliver(approved_event(order_id=order_id, checkout_id=checkout_id))
    drain_outbox()
    # then: no capture request went out
    assert not [r for r in paypal.requests if r["path"].endswith("/capture")]
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=checkout_id).status == "awaiting_payment"
