"""An item the studio stopped selling stays in the cart named as the cart names every line (its
kind, photo and event), says it must be removed, and keeps "Place order" disabled, as any
problem that blocks the checkout does (a sold-out print too); the checkout form refuses it in
shopper's words, never with the product's internal id, and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.catalog.models import Stock
from apps.catalog.products import Actor, product_set_active
from apps.tenancy.context import tenant_context
from tests.factories.commerce import Shop
from tests.web.shop.conftest import checkouts_of, url, written
from tests.web.shop.test_cart_access_code import place_order_enabled
from tests.web.shop.test_checkout import add, checkout_form, submit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _row_lock(settings: Any) -> None:
    settings.INVENTORY_STRATEGY = "row_lock"


def cart_page(browser: Client, tenant: Any) -> str:
    response = browser.get(url(tenant.org.slug, "cart"))
    assert response.status_code == 200
    return response.content.decode()


def deactivate(shop: Shop) -> None:
    product_set_active(tenant_id=shop.org.pk, product_id=shop.print.pk, active=False, actor=Actor(label="test"))


def test_a_deactivated_item_is_named_and_blocks_place_order(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: a download and a print in the cart, and the checkout form as shown
    add(browser, tenant_a, shop, shop.download)
    add(browser, tenant_a, shop, shop.print)
    form = checkout_form(browser, tenant_a)
    assert place_order_enabled(cart_page(browser, tenant_a))
    # when: the studio deactivates the print
    deactivate(shop)
    # then: the cart names it (kind, photo, event), says to remove it, and offers no "Place order"
    page = cart_page(browser, tenant_a)
    name = f"Print A4 (photo {shop.photo.pk}) of “{shop.event.title}”"
    assert f"Print A4, photo {shop.photo.pk}" in page and "No longer on sale: remove it" in page
    assert f"{name} is no longer on sale: remove it from your cart, then check out." in page
    assert "Item no longer on sale" not in page
    assert not place_order_enabled(page)
    # and: checking out anyway is refused naming the item, not its id, and writes nothing
    before = written()
    refused = submit(browser, tenant_a, form)
    body = refused.content.decode()
    assert refused.status_code == 409
    assert f"{name} is no longer on sale" in body
    assert f"Product {shop.print.pk}" not in body
    assert written() == before and checkouts_of(tenant_a.org.pk) == []
    # and: once removed, the rest checks out
    browser.post(f"/s/{tenant_a.org.slug}/cart/remove", {"product": shop.print.pk})
    page = cart_page(browser, tenant_a)
    assert place_order_enabled(page)
    assert submit(browser, tenant_a, checkout_form(browser, tenant_a)).status_code == 303


def test_a_sold_out_print_also_disables_place_order(browser: Client, tenant_a: Any, shop: Shop) -> None:
    add(browser, tenant_a, shop, shop.print)
    with tenant_context(shop.org.pk):
        Stock.objects.filter(pk=shop.stock.pk).update(quantity=0)
    page = cart_page(browser, tenant_a)
    assert "is sold out" in page and not place_order_enabled(page)


def test_a_product_the_service_refuses_is_not_named_by_its_id(
    browser: Client, tenant_a: Any, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the print deactivated after the form's own check ran (the service reads it next)
    add(browser, tenant_a, shop, shop.print)
    form = checkout_form(browser, tenant_a)
    monkeypatch.setattr("apps.web.shop.views.cart.check_on_sale", lambda view: deactivate(shop))
    # when: the form is submitted
    refused = submit(browser, tenant_a, form)
    # then: the service's refusal reaches the shopper in the shop's words
    body = refused.content.decode()
    assert refused.status_code == 400
    assert "Something in your cart can no longer be bought as it is" in body
    assert f"Product {shop.print.pk}" not in body
