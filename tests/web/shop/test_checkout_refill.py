"""An order that failed, expired or sold out puts its items back in the cart (the checkout form
had emptied it): once, whatever the number of presses, leaving out what is no longer on sale."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from apps.catalog.models import Product, ProductKind
from apps.commerce.services import checkouts_expire_due
from apps.tenancy.context import tenant_context
from tests.commerce.helpers import drain_outbox
from tests.factories.catalog import ProductFactory
from tests.factories.commerce import Shop
from tests.web.shop.conftest import a_photo, url
from tests.web.shop.test_checkout import add, cart_of, checkout_form, submit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]

BUTTON = "Put these items back in my cart"


def expired_order(browser: Client, tenant: Any, shop: Shop) -> str:
    """A download and an A4 print checked out, then left unpaid until the order expired."""
    add(browser, tenant, shop, shop.download)
    add(browser, tenant, shop, shop.print)
    location = submit(browser, tenant, checkout_form(browser, tenant))["Location"]
    drain_outbox()
    assert cart_of(browser, tenant) == {}
    assert checkouts_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    return location


def test_an_expired_orders_items_go_back_in_the_cart_once(browser: Client, tenant_a: Any, shop: Shop) -> None:
    location = expired_order(browser, tenant_a, shop)
    page = browser.get(location).content.decode()
    assert BUTTON in page
    # when: the shopper presses the button twice
    for _ in range(2):
        response = browser.post(f"{location}refill")
        assert response.status_code == 303 and response["Location"] == f"/s/{tenant_a.org.slug}/cart/"
    # then: the cart holds the order's items once each
    assert cart_of(browser, tenant_a) == {str(shop.download.pk): 1, str(shop.print.pk): 1}


def test_items_no_longer_on_sale_stay_out(browser: Client, tenant_a: Any, shop: Shop) -> None:
    location = expired_order(browser, tenant_a, shop)
    with tenant_context(tenant_a.org.pk):
        Product.objects.filter(pk=shop.print.pk).update(active=False)
    browser.post(f"{location}refill")
    assert cart_of(browser, tenant_a) == {str(shop.download.pk): 1}


def test_an_open_order_is_not_refilled_and_another_session_gets_a_404(browser: Client, tenant_a: Any,
                                                                      shop: Shop) -> None:  # fmt: skip
    add(browser, tenant_a, shop, shop.download)
    location = submit(browser, tenant_a, checkout_form(browser, tenant_a))["Location"]
    drain_outbox()
    assert BUTTON not in browser.get(location).content.decode()
    response = browser.post(f"{location}refill")
    assert response.status_code == 303 and response["Location"] == location
    assert cart_of(browser, tenant_a) == {}
    assert Client().post(f"{location}refill").status_code == 404


def test_a_refill_puts_back_only_what_fits_in_the_cart_and_says_so(browser: Client, tenant_a: Any, shop: Shop,
                                                                   settings: Any) -> None:  # fmt: skip
    # given: an expired order of a download and a print, and another photo's download put in the
    # cart since, with one order taking at most two items
    settings.CHECKOUT_MAX_LINES = 2
    location = expired_order(browser, tenant_a, shop)
    other = a_photo(shop.event)
    other_download = ProductFactory(event=shop.event, kind=ProductKind.DOWNLOAD, photo=other)
    browser.post(url(tenant_a.org.slug, shop.event.slug, "photos", other.pk), {"product": other_download.pk})
    # when: the order's items are put back
    browser.post(f"{location}refill")
    # then: the cart holds what one order takes, names the print left out, and checks out
    assert cart_of(browser, tenant_a) == {str(other_download.pk): 1, str(shop.download.pk): 1}
    page = browser.get(url(tenant_a.org.slug, "cart")).content.decode()
    assert "Your cart is full (2 items); check out first. It was not put back." in page
    assert submit(browser, tenant_a, checkout_form(browser, tenant_a)).status_code == 303
