"""The cart and the order page speak of prints only when prints are in them (QA walkthrough: a cart
and an order of downloads alone said that prints are reserved at checkout, or were released)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from apps.catalog.models import Product
from apps.commerce.services import checkouts_expire_due
from tests.commerce.fixtures import row_lock_strategy  # noqa: F401 - fixture, used by name
from tests.commerce.helpers import deliver, drain_outbox, sandbox_paid
from tests.factories.commerce import Shop
from tests.web.shop.conftest import checkouts_of, url
from tests.web.shop.html_tree import Element, parse
from tests.web.shop.test_checkout import add, checkout_form, submit

PRINTS_NOTE = "Prints are reserved when you check out; a print that sells out meanwhile is not charged."


def main_of(browser: Client, page_url: str) -> Element:
    response = browser.get(page_url)
    assert response.status_code == 200
    main = parse(response.content.decode()).find("main")
    assert main is not None
    return main


def products(shop: Shop, names: str) -> list[Product]:
    return [{"download": shop.download, "print": shop.print, "bulk": shop.bulk}[name] for name in names.split("+")]


@pytest.mark.django_db
@pytest.mark.parametrize(("cart", "prints_said"), [("download", False), ("bulk", False), ("download+print", True)])
def test_the_cart_notes_how_prints_are_reserved_only_with_a_print_in_it(
    browser: Client, tenant_a: Any, shop: Shop, cart: str, prints_said: bool
) -> None:
    # given: a cart of those items
    for product in products(shop, cart):
        add(browser, tenant_a, shop, product)
    # when: the shopper opens it
    main = main_of(browser, url(tenant_a.org.slug, "cart"))
    # then: the note on reserving prints (and any word of prints) is there only with a print
    notes = [p.text for p in main.find_all("p")]
    assert (PRINTS_NOTE in notes) is prints_said
    if not prints_said:
        assert "print" not in main.text.lower()


def status_block(browser: Client, page_url: str) -> Element:
    block = main_of(browser, page_url).find("section", **{"aria-labelledby": "status-heading"})
    assert block is not None
    return block


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker", "row_lock_strategy")
@pytest.mark.parametrize(
    ("order", "paid_late", "said"),
    [
        ("download", False, "This order expired before it was paid."),
        ("download", True, "Your payment arrived after this order expired; it is being refunded."),
        ("bulk", False, "This order expired before it was paid."),
        ("download+print", False, "This order expired before it was paid; any reserved prints were released."),
        (
            "download+print",
            True,
            "Your payment arrived after this order expired; it is being refunded. Any reserved prints were released.",
        ),
    ],
)
def test_an_expired_order_says_prints_were_released_only_when_it_had_prints(
    browser: Client, tenant_a: Any, shop: Shop, order: str, paid_late: bool, said: str
) -> None:
    # given: an order of those items, left unpaid until it expired (then paid late, or not)
    for product in products(shop, order):
        add(browser, tenant_a, shop, product)
    page_url = str(submit(browser, tenant_a, checkout_form(browser, tenant_a))["Location"])
    drain_outbox()
    [checkout] = checkouts_of(tenant_a.org.pk)
    assert checkouts_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    if paid_late:
        assert deliver([sandbox_paid(str(checkout.pk))]) == [200]
        drain_outbox()
    # when: the shopper opens the order
    block = status_block(browser, page_url)
    # then: it says why nothing is theirs, and speaks of prints only when the order had some
    assert said in [p.text for p in block.find_all("p")]
    if "print" not in order:
        assert "print" not in block.text.lower()
