"""A new access code locks a protected event's items out of the carts of sessions that entered the
old one: the cart lists them without offering them (no price, not in the totals, "Place order"
disabled) and the checkout form refuses them (403, telling the shopper to enter the new code,
writing nothing), whether the item is a download, a print or the event's "all photos" item.
Entering the new code puts them back on offer."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from apps.catalog.events import event_update
from apps.catalog.models import Event, Product
from apps.catalog.products import Actor
from tests.factories.commerce import Shop
from tests.web.shop.conftest import ACCESS_CODE, checkouts_of, url, written
from tests.web.shop.test_checkout import checkout_form, submit

pytestmark = pytest.mark.django_db

NEW_CODE = "brand-new-code"
PRICES = {"download": "9.00 EUR", "print": "25.00 EUR", "bulk": "49.00 EUR"}


def protect(shop: Shop, code: str) -> None:
    """The studio protects the shop's event with `code` (or gives it that new code)."""
    event_update(
        tenant_id=shop.org.pk,
        event_id=shop.event.pk,
        visibility=Event.Visibility.ACCESS_CODE,
        access_code=code,
        actor=Actor(label="test"),
    )


def enter_code(browser: Client, tenant: Any, shop: Shop, code: str) -> None:
    response = browser.post(url(tenant.org.slug, shop.event.slug), {"code": code})
    assert response.status_code == 303, response.content.decode()


def put_in_cart(browser: Client, tenant: Any, shop: Shop, product: Product) -> None:
    photo_path = url(tenant.org.slug, shop.event.slug, "photos", shop.photo.pk)
    response = browser.post(photo_path, {"product": product.pk, "quantity": 1})
    assert response.status_code == 303, response.content.decode()


def cart_page(browser: Client, tenant: Any) -> str:
    response = browser.get(url(tenant.org.slug, "cart"))
    assert response.status_code == 200
    return response.content.decode()


def place_order_enabled(page: str) -> bool:
    button = re.search(r"<button type=\"submit\"([^>]*)>Place order</button>", page)
    assert button, "no Place order button"
    return "disabled" not in button.group(1)


@pytest.mark.parametrize("kind", ["download", "print", "bulk"])
def test_an_old_code_no_longer_buys_the_events_items(browser: Client, tenant_a: Any, shop: Shop, kind: str) -> None:
    # given: a protected event unlocked in this session, one of its items in the cart, and the
    # checkout form as the cart page showed it then
    protect(shop, ACCESS_CODE)
    enter_code(browser, tenant_a, shop, ACCESS_CODE)
    put_in_cart(browser, tenant_a, shop, getattr(shop, kind))
    assert PRICES[kind] in cart_page(browser, tenant_a)
    form = checkout_form(browser, tenant_a)
    before = written()
    # when: the studio gives the event a new code
    protect(shop, NEW_CODE)
    # then: the gallery asks for the code again and the photo page is refused
    assert 'name="code"' in browser.get(url(tenant_a.org.slug, shop.event.slug)).content.decode()
    assert browser.get(url(tenant_a.org.slug, shop.event.slug, "photos", shop.photo.pk)).status_code == 403
    # and: the cart lists the item without offering it, says to enter the new code, and does not
    # offer "Place order"
    page = cart_page(browser, tenant_a)
    assert "Needs the event&#x27;s new access code" in page
    assert "enter the event&#x27;s new access code" in page
    assert PRICES[kind] not in page
    assert not place_order_enabled(page)
    # and: the checkout form, old or fresh, is refused with that message and writes nothing
    for attempt in (form, checkout_form(browser, tenant_a)):
        refused = submit(browser, tenant_a, attempt)
        assert refused.status_code == 403
        assert "enter the event&#x27;s new access code" in refused.content.decode()
    assert written() == before and checkouts_of(tenant_a.org.pk) == []
    # and: the item is still in the cart; with the new code entered it is offered and bought
    enter_code(browser, tenant_a, shop, NEW_CODE)
    page = cart_page(browser, tenant_a)
    assert PRICES[kind] in page and place_order_enabled(page)
    assert submit(browser, tenant_a, checkout_form(browser, tenant_a)).status_code == 303
    assert len(checkouts_of(tenant_a.org.pk)) == 1


def test_an_event_made_protected_locks_the_items_already_in_a_cart(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: the download of a public event in the cart
    put_in_cart(browser, tenant_a, shop, shop.download)
    form = checkout_form(browser, tenant_a)
    # when: the studio protects the event with a code this session never entered
    protect(shop, NEW_CODE)
    # then: checking out is refused, nothing written
    before = written()
    refused = submit(browser, tenant_a, form)
    assert refused.status_code == 403
    assert written() == before and checkouts_of(tenant_a.org.pk) == []


def test_an_unlocked_session_checks_out_the_protected_events_items(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: a protected event whose current code this session entered, its download in the cart
    protect(shop, ACCESS_CODE)
    enter_code(browser, tenant_a, shop, ACCESS_CODE)
    put_in_cart(browser, tenant_a, shop, shop.download)
    # when / then: the cart offers it and the checkout goes through
    page = cart_page(browser, tenant_a)
    assert PRICES["download"] in page and "new access code" not in page and place_order_enabled(page)
    assert submit(browser, tenant_a, checkout_form(browser, tenant_a)).status_code == 303
