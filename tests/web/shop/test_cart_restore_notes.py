"""The "Put these items back in my cart" button leaves out what can no longer be bought as it was
ordered and names each item left out on the cart, with why: deactivated (no longer on sale),
unpriced after the event's currency changed (no price at the moment), or its photo withdrawn."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.utils.html import escape

from apps.catalog.products import Actor, product_set_active
from apps.catalog.services import price_list_currency_change
from apps.catalog.withdrawal import photo_withdraw
from apps.tenancy.context import tenant_context
from tests.commerce.helpers import deliver, drain_outbox, sandbox_failed
from tests.factories.commerce import Shop
from tests.web.shop.conftest import checkouts_of, url
from tests.web.shop.test_checkout import add, cart_of, checkout_form, submit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


@pytest.fixture(autouse=True)
def _row_lock(settings: Any) -> None:
    settings.INVENTORY_STRATEGY = "row_lock"


def failed_order(browser: Client, tenant: Any, shop: Shop) -> str:
    """The photo's download and an A4 print checked out, then Fail pressed at the sandbox."""
    add(browser, tenant, shop, shop.download)
    add(browser, tenant, shop, shop.print)
    location = str(submit(browser, tenant, checkout_form(browser, tenant))["Location"])
    drain_outbox()  # the sandbox session exists
    [checkout] = checkouts_of(tenant.org.pk)
    assert deliver([sandbox_failed(str(checkout.pk))]) == [200]
    drain_outbox()
    assert cart_of(browser, tenant) == {}
    return location


def put_back(browser: Client, tenant: Any, location: str) -> str:
    """Press "Put these items back in my cart"; the cart page it lands on."""
    response = browser.post(f"{location}refill")
    assert response.status_code == 303 and response["Location"] == url(tenant.org.slug, "cart")
    page = browser.get(response["Location"])
    assert page.status_code == 200
    return page.content.decode()


def note(shop: Shop, item: str, why: str) -> str:
    return escape(f"{item} (photo {shop.photo.pk}) of “{shop.event.title}” {why}. It was not put back.")


def test_a_deactivated_item_is_left_out_and_named_on_the_cart(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: a failed order of a download and a print
    location = failed_order(browser, tenant_a, shop)
    # when: the studio stops selling the print, then the shopper puts the order back in the cart
    product_set_active(tenant_id=tenant_a.org.pk, product_id=shop.print.pk, active=False, actor=Actor(label="test"))
    page = put_back(browser, tenant_a, location)
    # then: only the download is back, and the cart says the print was left out and why
    assert cart_of(browser, tenant_a) == {str(shop.download.pk): 1}
    assert note(shop, "Print A4", "is no longer on sale") in page
    assert "Digital download" in page and note(shop, "Digital download", "is no longer on sale") not in page


def test_items_unpriced_after_a_currency_change_are_left_out_and_named(browser: Client, tenant_a: Any,
                                                                       shop: Shop) -> None:  # fmt: skip
    # given: a failed order of a download and a print
    location = failed_order(browser, tenant_a, shop)
    # when: the studio prices the event in another currency (every price removed), then the
    # shopper puts the order back in the cart
    with tenant_context(tenant_a.org.pk), transaction.atomic():
        price_list_currency_change(tenant_id=tenant_a.org.pk, event_id=shop.event.pk, currency="USD",
                                   actor=Actor(label="test"))  # fmt: skip
    page = put_back(browser, tenant_a, location)
    # then: nothing went back, and the cart names both items as having no price now
    assert cart_of(browser, tenant_a) == {}
    assert note(shop, "Digital download", "has no price at the moment") in page
    assert note(shop, "Print A4", "has no price at the moment") in page


def test_items_of_a_withdrawn_photo_are_left_out_and_named(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: an order of a download and a print awaiting payment
    add(browser, tenant_a, shop, shop.download)
    add(browser, tenant_a, shop, shop.print)
    location = str(submit(browser, tenant_a, checkout_form(browser, tenant_a))["Location"])
    drain_outbox()
    # when: the studio withdraws the photo (the order closes), and the shopper puts it back
    with tenant_context(tenant_a.org.pk), transaction.atomic():
        photo_withdraw(tenant_id=tenant_a.org.pk, photo_id=shop.photo.pk, reason="asked to", actor=Actor("test"))
    drain_outbox()
    page = put_back(browser, tenant_a, location)
    # then: nothing went back, and the cart says the photo was withdrawn, for each item
    assert cart_of(browser, tenant_a) == {}
    why = "is no longer on sale: the studio withdrew its photo"
    assert note(shop, "Digital download", why) in page and note(shop, "Print A4", why) in page
