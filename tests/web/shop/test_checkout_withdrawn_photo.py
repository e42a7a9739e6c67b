"""The order page of a checkout closed because the studio withdrew a photo in it: the shopper is
told why it closed, not only that it expired, and, when a payment arrived anyway, that it is
being refunded and then that it has been refunded."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from apps.catalog.products import Actor
from apps.catalog.withdrawal import photo_withdraw
from apps.payments.providers.base import PaymentStatus
from apps.payments.providers.sandbox import build_event
from apps.tenancy.context import tenant_context
from tests.commerce.helpers import deliver, drain_outbox, sandbox_paid, sandbox_provider
from tests.factories.commerce import Shop
from tests.web.shop.conftest import checkouts_of
from tests.web.shop.test_checkout import add, checkout_form, submit
from tests.web.shop.test_checkout_late_payment import EXPIRED_UNPAID, LATE, status_block

WITHDRAWN = "The studio withdrew a photo in this order, so the order was closed"

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


def withdraw(shop: Shop) -> None:
    with tenant_context(shop.org.pk), transaction.atomic():
        photo_withdraw(tenant_id=shop.org.pk, photo_id=shop.photo.pk, reason="asked to", actor=Actor("test"))


def ordered(browser: Client, tenant: Any, shop: Shop) -> str:
    """The shopper checks out the photo's download and a print; returns the order page's path."""
    add(browser, tenant, shop, shop.download)
    add(browser, tenant, shop, shop.print)
    location = submit(browser, tenant, checkout_form(browser, tenant))["Location"]
    drain_outbox()
    return str(location)


def test_an_order_closed_for_a_withdrawn_photo_says_so_then_shows_the_late_payment_refunded(
    browser: Client, tenant_a: Any, shop: Shop
) -> None:
    # given: an order awaiting payment
    location = ordered(browser, tenant_a, shop)
    [checkout] = checkouts_of(tenant_a.org.pk)
    assert status_block(browser, location).startswith("Ready to pay\n")
    # when: the studio withdraws the photo and the withdrawal's consumer runs
    withdraw(shop)
    drain_outbox()
    # then: the page says the order was closed because of it, unpaid; no pay link, no polling
    page = status_block(browser, location)
    assert page.startswith("Closed: a photo was withdrawn\n")
    assert f"{WITHDRAWN} before it was paid; any reserved prints were released." in page
    assert EXPIRED_UNPAID not in page and LATE not in page
    assert "Total (not charged)" in page and "hx-get" not in page and "Pay " not in page
    # when: the shopper had paid at the provider just before its session was closed
    paid = build_event(
        status=PaymentStatus.PAID,
        reference=f"sbx_{checkout.pk}",
        checkout_id=str(checkout.pk),
        amount_minor=checkout.amount_minor,
        currency=checkout.currency,
    )
    deliver([paid])
    drain_outbox(topics={"webhook.received"})
    # then: the page says the payment is being refunded, for the same reason
    page = status_block(browser, location)
    assert page.startswith("Closed: a photo was withdrawn, payment being refunded\n")
    assert f"{WITHDRAWN}; your payment is being refunded." in page
    assert "Total paid (being refunded)" in page and LATE not in page


def test_a_payment_refused_for_a_withdrawn_photo_is_shown_refunded(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: an order awaiting payment whose photo the studio withdrew (its consumer not run yet)
    location = ordered(browser, tenant_a, shop)
    [checkout] = checkouts_of(tenant_a.org.pk)
    withdraw(shop)
    # when: the shopper pays; the payment is refused and refunded, and the provider confirms
    deliver([sandbox_paid(str(checkout.pk))])
    drain_outbox()
    deliver([sandbox_provider().refunded_event(reference=f"sbx_{checkout.pk}")])
    drain_outbox()
    # then: the page says the order closed because of the withdrawal and the money went back
    page = status_block(browser, location)
    assert page.startswith("Closed: a photo was withdrawn, payment refunded\n")
    assert f"{WITHDRAWN}; your payment has been refunded." in page
    assert "Total paid (refunded)" in page
    assert EXPIRED_UNPAID not in page and LATE not in page and "Download photo" not in page
