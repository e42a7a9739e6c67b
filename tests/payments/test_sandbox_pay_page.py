"""The sandbox's pay page of a session that can no longer be paid (its checkout expired, or the
session closed or past its expiry before the sweep caught up) says so: no "Pay <amount>", no
"Total charged", no Pay or Fail buttons, also on the 409 answer to a late Pay. An open session's
page still offers both, with its total "To pay" (tests/payments/test_sandbox_pay_page_states.py
covers the other states)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.commerce.services import checkouts_expire_due
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import deliver, drain_outbox, sandbox_paid, sandbox_provider

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]

CLOSED = "This checkout can no longer be paid"


def new_checkout(tenant, shop, *lines) -> str:
    response = post_checkout(tenant.client(), checkout_body(shop, *lines))
    assert response.status_code == 201, response.content
    checkout_id = str(response.json()["id"])
    drain_outbox()  # the print's reservation decided, the sandbox session created
    return checkout_id


def pay_page(checkout_id: str) -> str:
    response = Client().get(reverse("sandbox-pay", args=[checkout_id]))
    assert response.status_code == 200
    return response.content.decode()


def offers_to_pay(page: str) -> bool:
    return 'value="pay"' in page or 'value="fail"' in page


def test_an_open_sessions_page_offers_to_pay_its_total(tenant_a, shop):
    checkout_id = new_checkout(tenant_a, shop, {"product": shop.download.pk})
    page = pay_page(checkout_id)
    assert "Pay 9.00 EUR" in page and "To pay" in page
    assert "Total charged" not in page  # nothing is charged before Pay
    assert offers_to_pay(page) and CLOSED not in page


def test_an_expired_checkouts_page_claims_no_charge_and_offers_no_payment(tenant_a, shop):
    # given: a 59.00 EUR checkout (the download and 2 prints) that expired unpaid, prints released
    checkout_id = new_checkout(tenant_a, shop, {"product": shop.download.pk}, {"product": shop.print.pk, "quantity": 2})
    assert "Pay 59.00 EUR" in pay_page(checkout_id)
    assert checkouts_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    drain_outbox()
    # when: its pay page is opened
    page = pay_page(checkout_id)
    # then: it can no longer be paid, and nothing claims a charge
    assert CLOSED in page and "Nothing was charged" in page
    assert "Pay 59.00" not in page and "Total charged" not in page
    assert not offers_to_pay(page)


def test_a_late_pay_before_the_sweep_gets_a_page_without_buttons(tenant_a, shop, monkeypatch):
    # given: an open checkout whose expiry passed; the sweep has not expired it yet
    checkout_id = new_checkout(tenant_a, shop, {"product": shop.download.pk})
    monkeypatch.setattr(sandbox_provider(), "_now", lambda: time.time() + 3600)
    # then: its page already offers no payment
    page = pay_page(checkout_id)
    assert CLOSED in page and not offers_to_pay(page)
    # when: the shopper presses Pay anyway (a page rendered before the expiry)
    response = Client().post(reverse("sandbox-pay", args=[checkout_id]), {"action": "pay"})
    # then: 409, nothing charged, and the answer offers no Pay or Fail either
    assert response.status_code == 409
    page = response.content.decode()
    assert "has expired; nothing was charged" in page
    assert CLOSED in page and "Pay 9.00" not in page and "Total charged" not in page
    assert not offers_to_pay(page)


def test_a_payment_that_beat_the_close_is_shown_as_paid_late(tenant_a, shop):
    # given: a checkout that expired, whose shopper paid before the session was closed
    checkout_id = new_checkout(tenant_a, shop, {"product": shop.download.pk})
    assert checkouts_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    deliver([sandbox_paid(checkout_id)])
    drain_outbox()
    # when / then: the page says it was paid late (and is refunded), offering nothing more
    page = pay_page(checkout_id)
    assert "Paid after this checkout expired" in page and "the payment is refunded" in page
    assert not offers_to_pay(page)
