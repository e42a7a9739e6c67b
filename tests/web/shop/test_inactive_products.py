"""A product the studio deactivated (`product_set_active`) is not offered by the shop: not on its
photo's page, not addable to a cart, flagged in a cart that already holds it; reactivated, it is
offered again. Restocking a sold-out print puts it back on its photo's page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from apps.catalog.models import Stock
from apps.catalog.products import Actor, product_set_active, stock_restock
from apps.tenancy.context import tenant_context
from tests.factories.commerce import Shop
from tests.web.shop.conftest import url

pytestmark = pytest.mark.django_db


def photo_page(browser: Client, tenant: Any, shop: Shop) -> str:
    response = browser.get(url(tenant.org.slug, shop.event.slug, "photos", shop.photo.pk))
    assert response.status_code == 200
    return response.content.decode()


def offers_print(body: str, shop: Shop) -> bool:
    return f'name="product" value="{shop.print.pk}"' in body


def set_active(tenant: Any, shop: Shop, active: bool) -> None:
    product_set_active(tenant_id=shop.org.pk, product_id=shop.print.pk, active=active, actor=Actor(label="test"))


def test_a_deactivated_print_is_not_offered_and_cannot_be_added(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: the photo page offers the print, in a row naming its size
    before = photo_page(browser, tenant_a, shop)
    assert offers_print(before, shop) and re.search(r'<th scope="row">[^<]*A4', before)
    # when: the studio deactivates it
    set_active(tenant_a, shop, False)
    # then: the page no longer offers it, and posting it anyway is refused
    body = photo_page(browser, tenant_a, shop)
    assert not offers_print(body, shop)
    assert re.search(r'<th scope="row">[^<]*A4', body) is None  # no offer row names the size
    photo_path = url(tenant_a.org.slug, shop.event.slug, "photos", shop.photo.pk)
    refused = browser.post(photo_path, {"product": shop.print.pk, "quantity": 1})
    assert refused.status_code == 400
    assert not (browser.session.get("shop_carts") or {}).get(str(tenant_a.org.pk))
    # and: reactivated, it is offered again
    set_active(tenant_a, shop, True)
    assert offers_print(photo_page(browser, tenant_a, shop), shop)


def test_a_cart_holding_a_deactivated_product_says_it_is_no_longer_on_sale(
    browser: Client, tenant_a: Any, shop: Shop
) -> None:
    photo_path = url(tenant_a.org.slug, shop.event.slug, "photos", shop.photo.pk)
    assert browser.post(photo_path, {"product": shop.print.pk, "quantity": 1}).status_code == 303
    set_active(tenant_a, shop, False)
    cart = browser.get(url(tenant_a.org.slug, "cart"))
    assert "No longer on sale" in cart.content.decode()


def test_a_restocked_sold_out_print_is_offered_again(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: the print is sold out
    with tenant_context(shop.org.pk):
        Stock.objects.filter(pk=shop.stock.pk).update(quantity=0)
    assert "sold out" in photo_page(browser, tenant_a, shop).lower()
    # when: the studio restocks 3
    stock_restock(tenant_id=shop.org.pk, product_id=shop.print.pk, add_quantity=3, actor=Actor(label="test"))
    # then: the page shows them for sale
    body = photo_page(browser, tenant_a, shop)
    assert "3 left" in body and offers_print(body, shop)


def test_updating_a_print_deactivated_since_the_cart_was_shown_says_it_is_off_sale(
    browser: Client, tenant_a: Any, shop: Shop
) -> None:
    # given: a print in the cart, deactivated by the studio after the cart page was shown
    photo_path = url(tenant_a.org.slug, shop.event.slug, "photos", shop.photo.pk)
    assert browser.post(photo_path, {"product": shop.print.pk, "quantity": 1}).status_code == 303
    set_active(tenant_a, shop, False)
    # when: the shopper presses that page's Update for it
    response = browser.post(url(tenant_a.org.slug, "cart") + "update", {"product": shop.print.pk, "quantity": 2})
    # then: the cart says why (not that only prints take a quantity), and the line is unchanged
    body = response.content.decode()
    assert response.status_code == 409
    assert "That item is no longer on sale: remove it from your cart." in body
    assert "Only prints can be ordered more than once" not in body
    assert browser.session["shop_carts"][str(tenant_a.org.pk)] == {str(shop.print.pk): 1}
