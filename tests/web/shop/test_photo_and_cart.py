"""A photo's page (prices, stock, sold out) and the session cart (add, update, remove, totals)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from apps.catalog.models import PriceList, Product, ProductKind
from apps.tenancy.context import tenant_context
from tests.factories.catalog import PriceFactory, ProductFactory, StockFactory
from tests.factories.commerce import Shop, make_shop
from tests.web.shop.conftest import a_photo, a_priced_download, an_event, make_ready, url

pytestmark = pytest.mark.django_db


def photo_path(tenant: Any, shop: Shop) -> str:
    return url(tenant.org.slug, shop.event.slug, "photos", shop.photo.pk)


def cart_path(tenant: Any) -> str:
    return url(tenant.org.slug, "cart")


def offer_row(body: str, label: str) -> str:
    """The table row of one offer on the photo page."""
    match = re.search(rf"<tr>\s*<th scope=\"row\">{re.escape(label)}</th>.*?</tr>", body, re.S)
    assert match, f"no row {label!r}"
    return match.group(0)


def price_print(shop: Shop, size: str, amount: int) -> None:
    with tenant_context(shop.org.pk):
        price_list = PriceList.objects.select_related("event").get(event=shop.event)
    PriceFactory(price_list=price_list, kind=ProductKind.PRINT, size=size, amount_minor=amount)


def in_cart(browser: Client, tenant: Any) -> dict[str, int]:
    carts = browser.session.get("shop_carts") or {}
    return dict(carts.get(str(tenant.org.pk), {}))


def test_photo_page_shows_the_preview_prices_and_stock(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: a second print size with 2 left, and a product of another photo (not offered here)
    a3 = ProductFactory(event=shop.event, kind=ProductKind.PRINT, photo=shop.photo, size="A3")
    StockFactory(product=a3, initial_quantity=5, quantity=2)
    price_print(shop, "A3", 4000)
    shop.add_photo()
    # when
    response = browser.get(photo_path(tenant_a, shop))
    # then: the watermarked preview, and every offer with its price and availability
    assert response.status_code == 200
    body = response.content.decode()
    assert f"/previews/t{shop.org.pk}/e{shop.event.pk}/{shop.photo.public_token.hex}.jpg" in body
    assert "9.00 EUR" in offer_row(body, "Digital download")
    assert "25.00 EUR" in offer_row(body, "Print A4") and "10 left" in offer_row(body, "Print A4")
    assert "40.00 EUR" in offer_row(body, "Print A3") and "2 left" in offer_row(body, "Print A3")
    assert "49.00 EUR" in offer_row(body, "All photos of this event (downloads)")
    assert body.count(">Add to cart</button>") == 4


def test_a_sold_out_print_is_shown_sold_out_and_cannot_be_added(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: no A4 prints left
    shop.set_stock_quantity(0)
    # when
    body = browser.get(photo_path(tenant_a, shop)).content.decode()
    row = offer_row(body, "Print A4")
    # then: "Sold out" and no form for it
    assert "Sold out" in row
    assert "<form" not in row
    # and: posting it anyway is refused with a 409 and the cart stays empty
    refused = browser.post(photo_path(tenant_a, shop), {"product": shop.print.pk, "quantity": 1})
    assert refused.status_code == 409
    assert "sold out" in refused.content.decode()
    assert in_cart(browser, tenant_a) == {}


def test_unpriced_and_inactive_products_are_not_offered(browser: Client, tenant_a: Any, shop: Shop) -> None:
    ProductFactory(event=shop.event, kind=ProductKind.PRINT, photo=shop.photo, size="A2")  # no A2 price
    with tenant_context(shop.org.pk):
        Product.objects.filter(pk=shop.bulk.pk).update(active=False)
    body = browser.get(photo_path(tenant_a, shop)).content.decode()
    assert "Print A2" not in body
    assert "All photos of this event" not in body
    refused = browser.post(photo_path(tenant_a, shop), {"product": shop.bulk.pk})
    assert refused.status_code == 400
    assert in_cart(browser, tenant_a) == {}


def test_add_update_and_remove_cart_lines(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: the bulk product of another event of the studio
    other = make_shop(org=tenant_a.org)
    make_ready(other.photo)
    other_photo = url(tenant_a.org.slug, other.event.slug, "photos", other.photo.pk)
    # when: the download, 3 prints and the other event's bulk product are added
    for path, data in (
        (photo_path(tenant_a, shop), {"product": shop.download.pk}),
        (photo_path(tenant_a, shop), {"product": shop.print.pk, "quantity": 3}),
        (other_photo, {"product": other.bulk.pk}),
    ):
        response = browser.post(path, data)
        assert (response.status_code, response["Location"]) == (303, cart_path(tenant_a))
    # then: the cart lists them with the amounts and the total, and the header counts 5 items
    body = browser.get(cart_path(tenant_a)).content.decode()
    assert in_cart(browser, tenant_a) == {str(shop.download.pk): 1, str(shop.print.pk): 3, str(other.bulk.pk): 1}
    assert "75.00 EUR" in body  # 3 x 25.00
    assert "133.00 EUR" in body  # 9 + 75 + 49
    assert "Cart (5 items)" in body
    # when: the same "add" is sent again (a double click): the quantity is set, not added to
    browser.post(photo_path(tenant_a, shop), {"product": shop.print.pk, "quantity": 3})
    assert in_cart(browser, tenant_a)[str(shop.print.pk)] == 3
    # when: the print's quantity is changed to 2 and the download removed
    update = browser.post(f"{cart_path(tenant_a)}update", {"product": shop.print.pk, "quantity": 2})
    remove = browser.post(f"{cart_path(tenant_a)}remove", {"product": shop.download.pk})
    # then
    assert (update.status_code, remove.status_code) == (303, 303)
    assert in_cart(browser, tenant_a) == {str(shop.print.pk): 2, str(other.bulk.pk): 1}
    body = browser.get(cart_path(tenant_a)).content.decode()
    assert "99.00 EUR" in body  # 2 x 25 + 49
    assert "Cart (3 items)" in body
    # when: quantity 0 removes a line
    browser.post(f"{cart_path(tenant_a)}update", {"product": shop.print.pk, "quantity": 0})
    assert in_cart(browser, tenant_a) == {str(other.bulk.pk): 1}


def test_bad_cart_changes_are_refused(browser: Client, tenant_a: Any, shop: Shop) -> None:
    browser.post(photo_path(tenant_a, shop), {"product": shop.download.pk})
    # a download cannot be bought twice, a print is capped, an unknown line is not updated
    twice = browser.post(f"{cart_path(tenant_a)}update", {"product": shop.download.pk, "quantity": 2})
    assert twice.status_code == 400
    browser.post(photo_path(tenant_a, shop), {"product": shop.print.pk, "quantity": 1})
    too_many = browser.post(f"{cart_path(tenant_a)}update", {"product": shop.print.pk, "quantity": 999})
    assert too_many.status_code == 400
    over_stock = browser.post(photo_path(tenant_a, shop), {"product": shop.print.pk, "quantity": 11})
    assert over_stock.status_code == 409
    unknown = browser.post(f"{cart_path(tenant_a)}update", {"product": shop.bulk.pk, "quantity": 1})
    assert unknown.status_code == 400
    garbage = browser.post(photo_path(tenant_a, shop), {"product": "x"})
    assert garbage.status_code == 400
    assert in_cart(browser, tenant_a) == {str(shop.download.pk): 1, str(shop.print.pk): 1}


@pytest.mark.parametrize(
    ("stock", "asked", "message"),
    [
        (3, 4, "Only 3 left of this print: choose at most 3."),
        (5, 6, "Only 5 left of this print: choose at most 5."),  # the stock binds as much as the cap
        (8, 6, "You can order at most 5 of this print."),
    ],
)
def test_a_print_over_what_can_be_bought_says_what_binds(browser: Client, tenant_a: Any, shop: Shop, settings: Any,
                                                         stock: int, asked: int, message: str) -> None:  # fmt: skip
    settings.CHECKOUT_MAX_PRINT_QUANTITY = 5
    shop.set_stock_quantity(stock)
    refused = browser.post(photo_path(tenant_a, shop), {"product": shop.print.pk, "quantity": asked})
    assert refused.status_code == 409
    assert message in refused.content.decode()
    assert in_cart(browser, tenant_a) == {}


def test_cart_shows_a_product_no_longer_on_sale_and_mixed_currencies(browser: Client, tenant_a: Any,
                                                                     shop: Shop) -> None:  # fmt: skip
    # given: a download of another event priced in USD, and the shop's download in the cart
    event = an_event(tenant_a.org)
    photo = a_photo(event)
    usd = a_priced_download(event, photo, currency="USD", amount_minor=500)
    browser.post(photo_path(tenant_a, shop), {"product": shop.download.pk})
    browser.post(url(tenant_a.org.slug, event.slug, "photos", photo.pk), {"product": usd.pk})
    # when: the shop's print is added, then withdrawn from sale by the studio
    browser.post(photo_path(tenant_a, shop), {"product": shop.print.pk, "quantity": 1})
    with tenant_context(shop.org.pk):
        Product.objects.filter(pk=shop.print.pk).update(active=False)
    body = browser.get(cart_path(tenant_a)).content.decode()
    # then: totals per currency, and both problems are explained
    assert "9.00 EUR" in body and "5.00 USD" in body
    assert "No longer on sale" in body
    assert "different currencies" in body


def test_a_full_cart_takes_the_bulk_item_in_place_of_its_downloads(browser: Client, tenant_a: Any, shop: Shop,
                                                                    settings: Any) -> None:  # fmt: skip
    # given: a cart holding as many items as one order takes: two downloads of the shop's event
    settings.CHECKOUT_MAX_LINES = 2
    other = a_photo(shop.event)
    other_download = ProductFactory(event=shop.event, kind=ProductKind.DOWNLOAD, photo=other)
    browser.post(photo_path(tenant_a, shop), {"product": shop.download.pk})
    browser.post(url(tenant_a.org.slug, shop.event.slug, "photos", other.pk), {"product": other_download.pk})
    # when: a print (a new item) and then "All photos of this event" (which replaces both) are added
    print_refused = browser.post(photo_path(tenant_a, shop), {"product": shop.print.pk, "quantity": 1})
    bulk_added = browser.post(photo_path(tenant_a, shop), {"product": shop.bulk.pk})
    # then: the print does not fit; the bulk item does, in place of the downloads it includes
    assert print_refused.status_code == 409
    assert "Your cart is full (2 items); check out first." in print_refused.content.decode()
    assert bulk_added.status_code == 303
    assert in_cart(browser, tenant_a) == {str(shop.bulk.pk): 1}


def test_a_cart_holding_more_items_than_one_order_takes_says_so(browser: Client, tenant_a: Any, shop: Shop,
                                                                settings: Any) -> None:  # fmt: skip
    # given: a download and a print in the cart, then the limit of items per order lowered to one
    browser.post(photo_path(tenant_a, shop), {"product": shop.download.pk})
    browser.post(photo_path(tenant_a, shop), {"product": shop.print.pk, "quantity": 1})
    settings.CHECKOUT_MAX_LINES = 1
    # when
    body = browser.get(cart_path(tenant_a)).content.decode()
    # then: the cart says what to do and does not offer "Place order"
    assert "Your cart holds 2 items; one order takes at most 1: remove 1 of them to check out." in body
    assert '<button type="submit" disabled' in body


def test_cart_forms_need_the_csrf_token(tenant_a: Any, shop: Shop) -> None:
    strict = Client(enforce_csrf_checks=True)
    page = strict.get(photo_path(tenant_a, shop))
    refused = strict.post(photo_path(tenant_a, shop), {"product": shop.download.pk})
    assert refused.status_code == 403
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert token
    accepted = strict.post(
        photo_path(tenant_a, shop), {"product": shop.download.pk, "csrfmiddlewaretoken": token.group(1)}
    )
    assert accepted.status_code == 303


def test_carts_are_per_studio(browser: Client, tenant_a: Any, tenant_b: Any, shop: Shop) -> None:
    browser.post(photo_path(tenant_a, shop), {"product": shop.download.pk})
    assert "Cart (1 item)" in browser.get(cart_path(tenant_a)).content.decode()
    assert "Cart (0 items)" in browser.get(url(tenant_b.org.slug, "cart")).content.decode()
