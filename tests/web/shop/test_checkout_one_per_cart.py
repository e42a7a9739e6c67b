"""One cart, one checkout: the cart's checkout forms, however many pages rendered them (two tabs, a
reload while the order is being placed), place one order for the cart they show, and every
submitter lands on it."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection
from django.test import Client

import apps.web.shop.views.cart as cart_views
from tests.factories.commerce import Shop
from tests.web.shop.conftest import checkouts_of, written
from tests.web.shop.test_checkout import add, cart_of, checkout_form, submit


@pytest.fixture(autouse=True)
def _row_lock(settings: Any) -> None:
    settings.INVENTORY_STRATEGY = "row_lock"


@pytest.mark.django_db(transaction=True)
def test_two_tabs_submitted_at_once_place_one_order_and_both_land_on_it(
    browser: Client, tenant_a: Any, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a print in the cart and its page rendered twice (two tabs: two forms)
    add(browser, tenant_a, shop, shop.print, 2)
    first_tab, second_tab = checkout_form(browser, tenant_a), checkout_form(browser, tenant_a)
    # and: the first order held inside checkout_create until the second tab has been sent
    inside, release = threading.Event(), threading.Event()
    create = cart_views.checkout_create

    def held_create(**kwargs: Any) -> Any:
        if not inside.is_set():
            inside.set()
            assert release.wait(60)
        return create(**kwargs)

    monkeypatch.setattr(cart_views, "checkout_create", held_create)
    responses: dict[str, Any] = {}

    def send(name: str, form: dict[str, str]) -> None:
        client = Client()
        client.cookies = browser.cookies
        try:
            responses[name] = submit(client, tenant_a, form)
        finally:
            connection.close()

    # when: both tabs are submitted while the first order is being placed
    first = threading.Thread(target=send, args=("first", first_tab))
    first.start()
    assert inside.wait(60)
    second = threading.Thread(target=send, args=("second", second_tab))
    second.start()
    time.sleep(0.5)  # the second tab's order reaches its transaction (or its wait) meanwhile
    release.set()
    first.join(60)
    second.join(60)
    # then: one checkout (one charge), and both tabs are sent to its page
    [checkout] = checkouts_of(tenant_a.org.pk)
    page = f"/s/{tenant_a.org.slug}/checkouts/{checkout.pk}/"
    assert (responses["first"].status_code, responses["first"]["Location"]) == (303, page)
    assert (responses["second"].status_code, responses["second"]["Location"]) == (303, page)
    assert written()["reservations"] == 1
    # and: the order page is this session's, and the cart is empty
    assert browser.get(page).status_code == 200
    assert cart_of(browser, tenant_a) == {}


@pytest.mark.django_db
def test_a_second_tab_submitted_after_the_first_lands_on_the_same_order(
    browser: Client, tenant_a: Any, shop: Shop
) -> None:
    # given: two tabs showing the same cart
    add(browser, tenant_a, shop, shop.download)
    first_tab, second_tab = checkout_form(browser, tenant_a), checkout_form(browser, tenant_a)
    # when: one tab places the order, then the other
    first = submit(browser, tenant_a, first_tab)
    second = submit(browser, tenant_a, second_tab)
    # then: the second is sent to the order the first placed, not told its cart is empty
    assert (first.status_code, second.status_code) == (303, 303)
    assert second["Location"] == first["Location"]
    assert len(checkouts_of(tenant_a.org.pk)) == 1


@pytest.mark.django_db
def test_a_second_tab_with_other_details_lands_on_the_order_and_is_told(
    browser: Client, tenant_a: Any, shop: Shop
) -> None:
    # given: two tabs showing the same cart, the second with another e-mail address typed
    add(browser, tenant_a, shop, shop.download)
    first_tab = checkout_form(browser, tenant_a)
    second_tab = checkout_form(browser, tenant_a, email="other@example.test")
    # when: both are submitted, one after the other
    first = submit(browser, tenant_a, first_tab)
    second = submit(browser, tenant_a, second_tab)
    # then: one order; the second tab is sent to it and told the cart was already ordered
    assert second.status_code == 303 and second["Location"] == first["Location"]
    [checkout] = checkouts_of(tenant_a.org.pk)
    assert checkout.email == "ann@example.test"
    page = browser.get(second["Location"]).content.decode()
    assert "already ordered" in page


@pytest.mark.django_db
def test_a_tab_showing_an_older_version_of_the_same_contents_is_refused(
    browser: Client, tenant_a: Any, shop: Shop
) -> None:
    # given: a tab rendered, then the cart changed and changed back in another tab
    add(browser, tenant_a, shop, shop.print, 2)
    stale = checkout_form(browser, tenant_a)
    add(browser, tenant_a, shop, shop.print, 3)
    add(browser, tenant_a, shop, shop.print, 2)
    current = checkout_form(browser, tenant_a)
    before = written()
    # when: the stale tab is submitted
    response = submit(browser, tenant_a, stale)
    # then: 409 "your cart changed", nothing written; the current tab places the order
    assert response.status_code == 409
    assert "Your cart changed" in response.content.decode()
    assert written() == before
    assert submit(browser, tenant_a, current).status_code == 303
    assert len(checkouts_of(tenant_a.org.pk)) == 1


@pytest.mark.django_db
def test_a_cart_filled_again_after_an_order_places_a_new_one(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: an order placed for a download
    add(browser, tenant_a, shop, shop.download)
    first = submit(browser, tenant_a, checkout_form(browser, tenant_a))
    # when: the same download is put in the (emptied) cart again and checked out
    add(browser, tenant_a, shop, shop.download)
    second = submit(browser, tenant_a, checkout_form(browser, tenant_a))
    # then: a second order: the cart is a new one, though its contents are the same
    assert (first.status_code, second.status_code) == (303, 303)
    assert first["Location"] != second["Location"]
    assert len(checkouts_of(tenant_a.org.pk)) == 2
