"""A print's quantity in the cart follows the stock left, wherever it is set: the cart's quantity
menu and Update, an order's "Put these items back in my cart", and the checkout form (which
refuses a line over the stock and writes nothing). The SKU's writer still decides at reservation."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from apps.commerce.models import CheckoutLine
from apps.commerce.services import checkouts_expire_due
from apps.tenancy.context import tenant_context
from tests.commerce.helpers import drain_outbox
from tests.factories.commerce import Shop
from tests.web.shop.conftest import checkouts_of, url, written
from tests.web.shop.test_checkout import add, cart_of, checkout_form, submit


def cart_path(tenant: Any) -> str:
    return url(tenant.org.slug, "cart")


def quantity_menu(body: str, product_id: int) -> tuple[list[int], int | None]:
    """The options of a cart line's quantity menu, and the one it preselects."""
    match = re.search(rf'<select id="qty-{product_id}" name="quantity">(.*?)</select>', body, re.S)
    assert match, "no quantity menu"
    options = re.findall(r'<option value="(\d+)"( selected)?>', match.group(1))
    selected = [int(value) for value, chosen in options if chosen]
    return [int(value) for value, _ in options], (selected[0] if selected else None)


@pytest.mark.django_db
def test_the_cart_offers_and_keeps_at_most_the_stock_left(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: 5 A4 prints left, and 2 in the cart from the photo page
    shop.set_stock_quantity(5)
    add(browser, tenant_a, shop, shop.print, 2)
    # when: the cart is shown
    body = browser.get(cart_path(tenant_a)).content.decode()
    # then: its quantity menu offers 1 to 5, not the per-order maximum
    assert quantity_menu(body, shop.print.pk) == ([1, 2, 3, 4, 5], 2)
    # when: a stale menu sends 12 (the stock was larger when it was rendered)
    response = browser.post(f"{cart_path(tenant_a)}update", {"product": shop.print.pk, "quantity": 12})
    # then: the quantity is lowered to what is left, and the cart says so, once
    assert (response.status_code, response["Location"]) == (303, cart_path(tenant_a))
    assert cart_of(browser, tenant_a) == {str(shop.print.pk): 5}
    body = browser.get(cart_path(tenant_a)).content.decode()
    assert f"Only 5 left of Print A4 (photo {shop.photo.pk}): quantity set to 5." in body
    assert "125.00 EUR" in body  # 5 x 25.00
    assert "quantity set to" not in browser.get(cart_path(tenant_a)).content.decode()
    # and: it checks out those 5
    assert submit(browser, tenant_a, checkout_form(browser, tenant_a)).status_code == 303
    [checkout] = checkouts_of(tenant_a.org.pk)
    with tenant_context(tenant_a.org.pk):
        [line] = CheckoutLine.objects.filter(checkout=checkout)
    assert (line.quantity, line.amount_minor) == (5, 12500)


@pytest.mark.django_db
def test_a_print_sold_out_since_it_was_added_cannot_be_updated(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: 2 prints in the cart, then the last ones sold
    add(browser, tenant_a, shop, shop.print, 2)
    shop.set_stock_quantity(0)
    # when: the cart is shown, and an update is sent anyway
    body = browser.get(cart_path(tenant_a)).content.decode()
    response = browser.post(f"{cart_path(tenant_a)}update", {"product": shop.print.pk, "quantity": 1})
    # then: the line says sold out and offers no quantity menu; the update is refused
    assert "Sold out" in body and f'id="qty-{shop.print.pk}"' not in body
    assert response.status_code == 409
    assert f"Print A4 (photo {shop.photo.pk}) is sold out. Remove it from your cart." in response.content.decode()
    assert cart_of(browser, tenant_a) == {str(shop.print.pk): 2}


@pytest.mark.django_db
def test_a_line_over_the_stock_left_is_not_checked_out(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: 3 prints in the cart and its checkout form; then other shoppers leave 2
    add(browser, tenant_a, shop, shop.print, 3)
    form = checkout_form(browser, tenant_a)
    shop.set_stock_quantity(2)
    before = written()
    # when: the form is submitted
    response = submit(browser, tenant_a, form)
    # then: refused with what to do, nothing written, the cart kept
    assert response.status_code == 409
    body = response.content.decode()
    assert f"Only 2 left of Print A4 (photo {shop.photo.pk}): lower its quantity in your cart" in body
    assert written() == before
    assert cart_of(browser, tenant_a) == {str(shop.print.pk): 3}
    # and: the cart page offers at most 2, preselected
    assert quantity_menu(body, shop.print.pk) == ([1, 2], 2)
    # when: the shopper lowers it and sends the new page's form (a new cart version: a new nonce)
    browser.post(f"{cart_path(tenant_a)}update", {"product": shop.print.pk, "quantity": 2})
    retry_form = checkout_form(browser, tenant_a)
    assert retry_form["nonce"] != form["nonce"]
    retry = submit(browser, tenant_a, retry_form)
    # then: the order is placed
    assert retry.status_code == 303
    assert len(checkouts_of(tenant_a.org.pk)) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_sold_out_order_is_put_back_with_what_is_left(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: an order of 5 prints that sold out (others bought all but 3 before the writer decided)
    add(browser, tenant_a, shop, shop.print, 5)
    location = submit(browser, tenant_a, checkout_form(browser, tenant_a))["Location"]
    shop.set_stock_quantity(3)
    drain_outbox()
    assert "Everything in this order sold out" in browser.get(location).content.decode()
    # when: the shopper puts the items back in the cart
    response = browser.post(f"{location}refill")
    # then: the cart holds what can be bought, and says why it is fewer
    assert response.status_code == 303
    assert cart_of(browser, tenant_a) == {str(shop.print.pk): 3}
    body = browser.get(cart_path(tenant_a)).content.decode()
    assert f"Only 3 left of Print A4 (photo {shop.photo.pk}): quantity set to 3." in body
    # and: that cart checks out without the order selling out again
    second = submit(browser, tenant_a, checkout_form(browser, tenant_a))["Location"]
    drain_outbox()
    assert "Ready to pay" in browser.get(second).content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_sold_out_print_is_not_put_back(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: an expired order of the download and 2 prints, and no print left since
    add(browser, tenant_a, shop, shop.download)
    add(browser, tenant_a, shop, shop.print, 2)
    location = submit(browser, tenant_a, checkout_form(browser, tenant_a))["Location"]
    drain_outbox()
    assert checkouts_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    shop.set_stock_quantity(0)
    # when: the shopper puts the items back in the cart
    browser.post(f"{location}refill")
    # then: the download only, and the cart says why
    assert cart_of(browser, tenant_a) == {str(shop.download.pk): 1}
    body = browser.get(cart_path(tenant_a)).content.decode()
    assert f"Print A4 (photo {shop.photo.pk}) is sold out. It was not put back." in body
