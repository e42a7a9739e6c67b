"""Placing orders is limited, since every checkout holds stock until it is paid or lapses: per
client address (an IPv6 client is its /64) and per session (`SHOP_CHECKOUT_ADDRESS_RATE`,
`SHOP_CHECKOUT_SESSION_RATE`), and a session holding `SHOP_OPEN_CHECKOUTS_PER_SESSION` unpaid
checkouts is asked to pay for or wait out one first. Refusals are the cart again with a 429 and
`Retry-After`, having written nothing. (What one client network may hold of a print, and the
session cap under concurrent submissions: test_checkout_holds.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.commerce.models import Checkout
from tests.commerce.fixtures import empty_broker  # noqa: F401 - fixture, used by name
from tests.commerce.helpers import drain_outbox
from tests.factories.commerce import Shop
from tests.web.shop.conftest import checkouts_of, written
from tests.web.shop.test_checkout import add, cart_of, checkout_form, submit


def place_order(client: Client, tenant: Any, shop: Shop, **form: str) -> Any:
    add(client, tenant, shop, shop.download)
    return submit(client, tenant, checkout_form(client, tenant, **form))


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_session_holding_its_open_checkouts_cannot_hoard_stock_with_more(
    tenant_a: Any, shop: Shop, settings: Any
) -> None:
    # given: the default limits but the per-network share of a print (off here: it would refuse
    # the first order of the whole stock already; test_checkout_holds.py), and a browser that
    # checks out the whole print stock (10) again and again without paying
    settings.RATE_LIMIT_ENABLED = True
    settings.SHOP_NETWORK_PRINT_HOLD_PERCENT = 0
    assert settings.SHOP_OPEN_CHECKOUTS_PER_SESSION == 3
    hoarder = Client(REMOTE_ADDR="198.51.100.66")
    statuses, refusals = [], []
    for _ in range(12):
        add(hoarder, tenant_a, shop, shop.print, 10)
        before = written()
        response = submit(hoarder, tenant_a, checkout_form(hoarder, tenant_a))
        statuses.append(response.status_code)
        if response.status_code == 429:
            refusals.append((response, before, written()))
    # then: three checkouts were placed; every later one is refused with Retry-After within the
    # reservation TTL, writes nothing, keeps the cart and links the orders awaiting payment
    assert statuses == [303] * 3 + [429] * 9
    held = checkouts_of(tenant_a.org.pk)
    assert len(held) == 3
    response, before, after = refusals[0]
    assert after == before
    assert 1 <= int(response["Retry-After"]) <= settings.INVENTORY_RESERVATION_TTL_SECONDS
    body = response.content.decode()
    assert "3 orders waiting for payment" in body
    assert all(f"/s/{tenant_a.org.slug}/checkouts/{checkout.pk}/" in body for checkout in held)
    assert cart_of(hoarder, tenant_a) == {str(shop.print.pk): 10}
    # when: the stock is decided (one checkout holds it, the other two are sold out, no longer
    # open) and the session orders a download
    drain_outbox()
    assert sorted(c.status for c in checkouts_of(tenant_a.org.pk)) == [
        Checkout.Status.AWAITING_PAYMENT,
        Checkout.Status.SOLD_OUT,
        Checkout.Status.SOLD_OUT,
    ]
    hoarder.post(f"/s/{tenant_a.org.slug}/cart/remove", {"product": shop.print.pk})
    # then: that order is placed
    assert place_order(hoarder, tenant_a, shop).status_code == 303


@pytest.mark.django_db
def test_orders_are_limited_per_session_and_a_replayed_form_is_not_counted(
    browser: Client, tenant_a: Any, tenant_b: Any, shop: Shop, settings: Any
) -> None:
    # given: two orders an hour per session (no cap on open checkouts), both placed
    settings.RATE_LIMIT_ENABLED = True
    settings.SHOP_CHECKOUT_SESSION_RATE = "2/hour"
    settings.SHOP_OPEN_CHECKOUTS_PER_SESSION = 100
    assert place_order(browser, tenant_a, shop).status_code == 303
    add(browser, tenant_a, shop, shop.download)
    second_form = checkout_form(browser, tenant_a)
    second = submit(browser, tenant_a, second_form)
    assert second.status_code == 303
    # when: the session places a third, then resubmits the second form
    add(browser, tenant_a, shop, shop.download)
    before = written()
    refused = submit(browser, tenant_a, checkout_form(browser, tenant_a))
    replay = submit(browser, tenant_a, second_form)
    # then: the third is refused with Retry-After and nothing written; the replay lands on the
    # second checkout as before
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 2 * 3600
    assert "Too many orders" in refused.content.decode()
    assert written() == before
    assert (replay.status_code, replay["Location"]) == (303, second["Location"])
    assert len(checkouts_of(tenant_a.org.pk)) == 2


@pytest.mark.django_db
def test_orders_are_limited_per_address_across_sessions_of_one_ipv6_64(
    tenant_a: Any, shop: Shop, settings: Any
) -> None:
    # given: two orders an hour per client address, placed by two sessions of one IPv6 /64
    settings.RATE_LIMIT_ENABLED = True
    settings.SHOP_CHECKOUT_ADDRESS_RATE = "2/hour"
    placed = [place_order(Client(REMOTE_ADDR=f"2001:db8:9:9::{n + 1}"), tenant_a, shop).status_code for n in range(2)]
    assert placed == [303, 303]
    # when: a third session of that /64, and one elsewhere, place an order
    before = written()
    refused = place_order(Client(REMOTE_ADDR="2001:db8:9:9:abcd::1"), tenant_a, shop)
    after = written()
    elsewhere = place_order(Client(REMOTE_ADDR="2001:db8:9:a::1"), tenant_a, shop)
    # then: the /64 is refused with nothing written; the other network orders
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    assert after == before
    assert elsewhere.status_code == 303


@pytest.mark.django_db
def test_a_form_refused_for_its_fields_does_not_count(
    browser: Client, tenant_a: Any, shop: Shop, settings: Any
) -> None:
    # given: one order an hour per session
    settings.RATE_LIMIT_ENABLED = True
    settings.SHOP_CHECKOUT_SESSION_RATE = "1/hour"
    add(browser, tenant_a, shop, shop.download)
    # when: the shopper mistypes the e-mail address, then corrects it
    mistyped = submit(browser, tenant_a, checkout_form(browser, tenant_a, email="ann@"))
    corrected = submit(browser, tenant_a, checkout_form(browser, tenant_a))
    # then: the corrected form places the order
    assert mistyped.status_code == 400
    assert corrected.status_code == 303
