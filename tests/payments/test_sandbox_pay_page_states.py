"""The sandbox pay page says what pressing Pay will do in each state of the checkout's session:
an open one says "To pay" and offers Pay and Fail; a paid one says "Total charged" and offers
nothing more (Pay would only re-send the same payment); a failed one says it failed, claims no
charge, and offers no Pay (which the sandbox refuses, 409); one without a session yet offers
nothing either."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import deliver, drain_outbox, sandbox_failed, sandbox_paid, sandbox_refunded
from tests.payments.test_sandbox_pay_page import new_checkout, offers_to_pay, pay_page

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


def press(checkout_id: str, action: str):
    return Client().post(reverse("sandbox-pay", args=[checkout_id]), {"action": action})


def test_before_payment_the_total_is_to_pay_not_charged(tenant_a, shop):
    checkout_id = new_checkout(tenant_a, shop, {"product": shop.download.pk}, {"product": shop.print.pk, "quantity": 2})
    page = pay_page(checkout_id)
    assert "Pay 59.00 EUR" in page and "To pay" in page and "59.00 EUR" in page
    assert "Total charged" not in page and "refunded" not in page
    assert offers_to_pay(page)


def test_a_failed_payments_page_offers_no_pay_and_claims_no_charge(tenant_a, shop):
    # given: the shopper pressed Fail and Darkroom marked the checkout failed
    checkout_id = new_checkout(tenant_a, shop, {"product": shop.download.pk})
    assert deliver([sandbox_failed(checkout_id)]) == [200]
    drain_outbox()
    # when: the pay page is opened again
    page = pay_page(checkout_id)
    # then: it says the payment failed, nothing was charged, and offers no Pay (no "refunded" promise)
    assert "This payment failed" in page and "nothing was charged" in page
    assert "would be refunded" not in page and "Total charged" not in page and "Pay 9.00" not in page
    assert not offers_to_pay(page)
    # and: Pay pressed on an old page is refused as the page said, which still offers nothing
    refused = press(checkout_id, "pay")
    assert refused.status_code == 409
    assert "is already failed" in refused.content.decode() and not offers_to_pay(refused.content.decode())


def test_a_paid_payments_page_shows_the_charge_and_offers_nothing_more(tenant_a, shop):
    # given: a paid checkout
    checkout_id = new_checkout(tenant_a, shop, {"product": shop.download.pk})
    assert deliver([sandbox_paid(checkout_id)]) == [200]
    drain_outbox()
    # then: "Total charged", no buttons
    page = pay_page(checkout_id)
    assert "Paid 9.00 EUR" in page and "Total charged" in page and "nothing more can be charged" in page
    assert not offers_to_pay(page)
    # and: Fail on an old page is refused; Pay only re-sends the same payment
    assert press(checkout_id, "fail").status_code == 409
    assert press(checkout_id, "pay").status_code == 302
    # when: the payment is refunded
    assert deliver([sandbox_refunded(checkout_id, 900)]) == [200]
    drain_outbox()
    # then: the page says so, still offering nothing
    page = pay_page(checkout_id)
    assert "then refunded" in page and "Total charged" not in page and not offers_to_pay(page)


def test_a_checkout_without_a_session_yet_offers_no_payment(tenant_a, shop):
    # given: a checkout whose payment session is not created yet (its outbox not run)
    response = post_checkout(tenant_a.client(), checkout_body(shop, {"product": shop.download.pk}))
    assert response.status_code == 201, response.content
    checkout_id = str(response.json()["id"])
    # then: the page says to come back, claims nothing, and offers no Pay (which the sandbox refuses)
    page = pay_page(checkout_id)
    assert "not ready yet" in page and "Total charged" not in page and not offers_to_pay(page)
    assert press(checkout_id, "pay").status_code == 409
