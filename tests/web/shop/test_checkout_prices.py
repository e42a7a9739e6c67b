"""The checkout form buys what the cart page showed, at the prices it showed: its digest covers
each line's unit price and currency and the totals, so a price changed after the page was shown
gets the "your cart changed" page (409) and writes nothing, also when the change lands between
the form's check and the service's own read of the price."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from apps.catalog.models import Price, ProductKind
from apps.commerce.models import CheckoutLine
from apps.commerce.services import checkout_create
from apps.tenancy.context import tenant_context
from apps.web.shop.presenters import cart_view
from apps.web.shop.selectors import ShopProduct
from apps.web.shop.session import CartLine
from tests.factories.commerce import Shop
from tests.web.shop.conftest import checkouts_of, written
from tests.web.shop.test_checkout import add, cart_of, checkout_form, submit


def set_download_price(shop: Shop, amount_minor: int) -> None:
    with tenant_context(shop.org.pk):
        Price.objects.filter(price_list__event=shop.event, kind=ProductKind.DOWNLOAD).update(amount_minor=amount_minor)


def line_amounts(tenant: Any) -> list[tuple[int, int]]:
    [checkout] = checkouts_of(tenant.org.pk)
    with tenant_context(tenant.org.pk):
        return list(CheckoutLine.objects.filter(checkout=checkout).values_list("product_id", "amount_minor"))


@pytest.mark.django_db
def test_a_price_changed_after_the_cart_was_shown_is_not_charged(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: the download at 16.00 EUR in the cart, and the page's checkout form
    set_download_price(shop, 1600)
    add(browser, tenant_a, shop, shop.download)
    form = checkout_form(browser, tenant_a)
    # when: the studio sets the price to 99.00 before the shopper presses "Place order"
    set_download_price(shop, 9900)
    before = written()
    response = submit(browser, tenant_a, form)
    # then: the "your cart changed" page, showing the new price; nothing written, the cart kept
    assert response.status_code == 409
    body = response.content.decode()
    assert "Your cart changed" in body and "99.00 EUR" in body
    assert written() == before
    assert cart_of(browser, tenant_a) == {str(shop.download.pk): 1}
    # when: the shopper reviews the new price and places the order from that page
    response = submit(browser, tenant_a, checkout_form(browser, tenant_a))
    # then: the order is placed at the price shown
    assert response.status_code == 303
    assert line_amounts(tenant_a) == [(shop.download.pk, 9900)]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_price_changed_while_the_order_is_placed_is_refused(browser: Client, tenant_a: Any, shop: Shop,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    # given: the download in the cart at 9.00 EUR, and its checkout form
    add(browser, tenant_a, shop, shop.download)
    form = checkout_form(browser, tenant_a)

    # and: the studio's new price commits (another connection) after the form's digest check,
    # just before the checkout service prices the lines
    def competitor() -> None:
        try:
            set_download_price(shop, 9900)
        finally:
            connection.close()

    def create_after_the_price_change(**kwargs: Any) -> Any:
        thread = threading.Thread(target=competitor)
        thread.start()
        thread.join(60)
        assert not thread.is_alive(), "the studio's price change did not commit in time"
        return checkout_create(**kwargs)

    monkeypatch.setattr("apps.web.shop.views.cart.checkout_create", create_after_the_price_change)
    before = written()
    # when: the form is submitted
    response = submit(browser, tenant_a, form)
    # then: refused as a changed cart; the checkout the service wrote is rolled back
    assert response.status_code == 409
    assert "Your cart changed" in response.content.decode()
    assert written() == before
    assert cart_of(browser, tenant_a) == {str(shop.download.pk): 1}


def _product(*, amount_minor: int, currency: str, product_id: int = 7) -> ShopProduct:
    return ShopProduct(
        id=product_id,
        kind=ProductKind.DOWNLOAD,
        size="",
        photo_id=product_id - 4,
        event_id=1,
        event_slug="gala",
        event_title="Gala",
        event_protected=False,
        amount_minor=amount_minor,
        currency=currency,
        stock_left=None,
        thumbnail_url=None,
    )


def test_the_cart_digest_covers_the_price_and_currency_of_each_line() -> None:
    # given: one cart line, its product at three prices
    lines = [CartLine(product_id=7, quantity=1)]
    shown = cart_view(lines, {7: _product(amount_minor=1600, currency="EUR")}).digest
    # then: the same cart at the same price has the same digest; another price or currency, another
    assert cart_view(lines, {7: _product(amount_minor=1600, currency="EUR")}).digest == shown
    assert cart_view(lines, {7: _product(amount_minor=9900, currency="EUR")}).digest != shown
    assert cart_view(lines, {7: _product(amount_minor=1600, currency="USD")}).digest != shown
    # and: an item no longer on sale changes it too
    assert cart_view(lines, {}).digest != shown


def test_the_cart_digest_covers_each_lines_price_not_only_the_total() -> None:
    # given: two lines whose prices trade places (the total stays 26.00 EUR)
    lines = [CartLine(product_id=7, quantity=1), CartLine(product_id=8, quantity=1)]

    def priced(first: int, second: int) -> dict[int, ShopProduct]:
        return {
            7: _product(amount_minor=first, currency="EUR"),
            8: _product(amount_minor=second, currency="EUR", product_id=8),
        }

    # then: another digest
    assert cart_view(lines, priced(1000, 1600)).totals == cart_view(lines, priced(1600, 1000)).totals
    assert cart_view(lines, priced(1000, 1600)).digest != cart_view(lines, priced(1600, 1000)).digest
