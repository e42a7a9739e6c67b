"""The cart and the order page speak of downloads only when downloads are in them (QA walkthrough: a
cart of prints alone asked for an e-mail address "for your receipt and downloads", and its order,
awaiting payment, said "your downloads appear here"). The twin of test_prints_words_only_with_prints.py."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.commerce.fixtures import row_lock_strategy  # noqa: F401 - fixture, used by name
from tests.commerce.helpers import drain_outbox
from tests.factories.commerce import Shop
from tests.web.shop.conftest import url
from tests.web.shop.test_checkout import add, checkout_form, submit
from tests.web.shop.test_prints_words_only_with_prints import main_of, products, status_block


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("cart", "label"),
    [
        ("print", "E-mail address (for your receipt)"),
        ("download", "E-mail address (for your receipt and downloads)"),
        ("bulk", "E-mail address (for your receipt and downloads)"),
        ("download+print", "E-mail address (for your receipt and downloads)"),
    ],
)
def test_the_cart_asks_for_the_e_mail_address_for_downloads_only_with_a_download_in_it(
    browser: Client, tenant_a: Any, shop: Shop, cart: str, label: str
) -> None:
    # given: a cart of those items
    for product in products(shop, cart):
        add(browser, tenant_a, shop, product)
    # when: the shopper opens it
    main = main_of(browser, url(tenant_a.org.slug, "cart"))
    # then: the e-mail address is asked for the downloads only when there are some
    email_label = main.find("label", **{"for": "email"})
    assert email_label is not None and email_label.text == label
    if cart == "print":
        assert "download" not in main.text.lower()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker", "row_lock_strategy")
@pytest.mark.parametrize(
    ("order", "said"),
    [
        ("print", "After paying, come back to this page: it shows when your prints are shipped."),
        ("download", "After paying, come back to this page: your downloads appear here."),
        ("download+print", "After paying, come back to this page: your downloads appear here."),
    ],
)
def test_an_order_awaiting_payment_promises_downloads_only_when_it_has_some(
    browser: Client, tenant_a: Any, shop: Shop, order: str, said: str
) -> None:
    # given: an order of those items, ready to pay
    for product in products(shop, order):
        add(browser, tenant_a, shop, product)
    page_url = str(submit(browser, tenant_a, checkout_form(browser, tenant_a))["Location"])
    drain_outbox()
    # when: the shopper opens it
    block = status_block(browser, page_url)
    # then: it says what comes after paying, and speaks of downloads only when the order has some
    assert block.text.startswith("Ready to pay")
    assert said in [p.text for p in block.find_all("p")]
    if "download" not in order:
        assert "download" not in block.text.lower()
