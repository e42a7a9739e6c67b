"""The order page's shipping block follows the studio's rule: an order with prints says where they
are sent while it is open or paid and not shipped yet, and once shipped where they went; a
refunded or unpaid order says that nothing will be shipped, never "Your prints are sent to"."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.test import Client

from apps.commerce.models import Checkout
from tests.commerce.helpers import deliver, drain_outbox, sandbox_failed, sandbox_paid, sandbox_refunded
from tests.factories.commerce import Shop
from tests.web.shop.conftest import checkouts_of
from tests.web.shop.test_checkout import add, checkout_form, submit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]

SENT_TO = "Your prints are sent to:"


@pytest.fixture(autouse=True)
def _row_lock(settings: Any) -> None:
    settings.INVENTORY_STRATEGY = "row_lock"


def order_with_a_print(browser: Client, tenant: Any, shop: Shop) -> tuple[str, Checkout]:
    add(browser, tenant, shop, shop.print)
    page_url = submit(browser, tenant, checkout_form(browser, tenant))["Location"]
    [checkout] = checkouts_of(tenant.org.pk)
    drain_outbox()  # reserved, payment session created
    return page_url, checkout


def test_a_refunded_orders_page_says_nothing_will_be_shipped(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: a paid order of a print, not shipped: its page says where the prints go
    page_url, checkout = order_with_a_print(browser, tenant_a, shop)
    assert deliver([sandbox_paid(str(checkout.pk))]) == [200]
    drain_outbox()
    assert SENT_TO in browser.get(page_url).content.decode()
    # when: the payment is refunded
    assert deliver([sandbox_refunded(str(checkout.pk), 2500)]) == [200]
    drain_outbox()
    # then: the page no longer claims the prints are sent, and says nothing will be
    page = browser.get(page_url).content.decode()
    assert "Refunded" in page
    assert SENT_TO not in page and "Hauptstrasse 1" not in page
    assert "Nothing will be shipped: this order was refunded." in page


def test_a_failed_orders_page_says_nothing_will_be_shipped(browser: Client, tenant_a: Any, shop: Shop) -> None:
    page_url, checkout = order_with_a_print(browser, tenant_a, shop)
    assert SENT_TO in browser.get(page_url).content.decode()  # open: sent once paid
    assert deliver([sandbox_failed(str(checkout.pk))]) == [200]
    drain_outbox()
    page = browser.get(page_url).content.decode()
    assert SENT_TO not in page and "Nothing will be shipped: the payment of this order failed." in page


def test_the_poll_that_says_paid_also_brings_the_shipping_block_up_to_date(
    browser: Client, tenant_a: Any, shop: Shop
) -> None:
    # given: the open order page of a print, whose status block polls and whose shipping block
    # (outside it) says the prints leave once the payment is confirmed
    page_url, checkout = order_with_a_print(browser, tenant_a, shop)
    page = browser.get(page_url).content.decode()
    assert "They are sent once your payment is confirmed." in page
    poll = re.search(r'hx-get="([^"]+/status\?[^"]+)"', page)
    assert poll, "the open order's status block polls"
    # when: the payment lands and the page polls
    assert deliver([sandbox_paid(str(checkout.pk))]) == [200]
    drain_outbox()
    answer = browser.get(html.unescape(poll.group(1)))
    # then: the final status answer replaces the shipping block too (htmx out of band), which now
    # says the studio prepares the prints, as a reload of the page would
    assert answer.status_code == 200
    body = answer.content.decode()
    assert "Paid, thank you!" in body
    shipping = re.search(r'<section id="checkout-shipping"[^>]*hx-swap-oob="true"[^>]*>(.*?)</section>', body, re.S)
    assert shipping, "the paid answer carries the shipping block out of band"
    assert "The studio prepares your prints" in shipping.group(1)
    assert "They are sent once your payment is confirmed." not in body
    # and: the full page's shipping block has the id the answer replaces, without the out-of-band mark
    reloaded = browser.get(page_url).content.decode()
    assert '<section id="checkout-shipping" aria-labelledby="shipping-heading">' in reloaded
