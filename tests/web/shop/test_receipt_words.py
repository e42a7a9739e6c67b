"""The receipt a shopper reads after paying in the shop (QA walkthrough): its words fit the order,
no download links promised for prints alone, and prints said to go to the address given."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.test import Client

from tests.commerce.helpers import deliver, drain_outbox, sandbox_paid
from tests.factories.commerce import Shop
from tests.web.shop.test_order_shipping_state import order_with_a_print

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


@pytest.fixture(autouse=True)
def _row_lock(settings: Any) -> None:
    settings.INVENTORY_STRATEGY = "row_lock"


def test_the_receipt_of_a_print_alone_promises_no_downloads_and_says_where_it_goes(
    browser: Client, tenant_a: Any, shop: Shop
) -> None:
    # given: an order of one print, shipped to the address the checkout form was given
    _, checkout = order_with_a_print(browser, tenant_a, shop)
    mail.outbox.clear()
    # when: it is paid and its receipt sent
    assert deliver([sandbox_paid(str(checkout.pk))]) == [200]
    drain_outbox()
    [receipt] = [m for m in mail.outbox if "receipt" in m.subject.lower()]
    # then: the receipt speaks of the order, not of downloads it does not have
    assert "download" not in receipt.body.lower()
    assert "Your order, from any device:" in receipt.body
    # and: it says where the print is sent, and that tracking follows
    assert "Your prints are sent to:\nAnn Example\nHauptstrasse 1\n10115 Berlin\nGermany" in receipt.body
    assert "tracking" in receipt.body
