"""What one client may hold unpaid, whatever its sessions (`checkout_create` decides under the
holder's locks, apps/commerce/services/checkout.py): a client network (an IPv4 address, or an
IPv6 /64) holds at most SHOP_NETWORK_PRINT_HOLD_PERCENT of a print's stock in unpaid checkouts,
units it let lapse unpaid count as still held while little is left, and a session's open
checkouts are counted one submission after the other. A refusal is the cart again, naming the
print, with a 429 and `Retry-After`, having written nothing."""

from __future__ import annotations

import copy
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from apps.commerce.models import Checkout
from apps.commerce.services import checkouts_expire_due
from apps.tenancy.context import system_context
from apps.web.shop.limits import session_digest
from apps.web.shop.views import cart as cart_views
from tests.commerce.fixtures import empty_broker  # noqa: F401 - fixture, used by name
from tests.commerce.helpers import drain_outbox
from tests.factories.commerce import Shop
from tests.fixtures import backend_pid, wait_until_blocked
from tests.web.shop.conftest import checkouts_of, written
from tests.web.shop.test_checkout import add, cart_of, checkout_form, submit


def order_prints(client: Client, tenant: Any, shop: Shop, quantity: int) -> Any:
    add(client, tenant, shop, shop.print, quantity)
    return submit(client, tenant, checkout_form(client, tenant))


def lapse(checkout: Checkout) -> None:
    """The checkout runs out unpaid: the expiry sweep closes it, as it would once its time is up."""
    assert checkouts_expire_due(now=checkout.expires_at + timedelta(seconds=1)) == 1


@pytest.mark.django_db
def test_sessions_of_one_network_together_hold_at_most_its_share_of_a_print(
    tenant_a: Any, shop: Shop, settings: Any
) -> None:
    # given: the default share (half of the print's 10), and a shopper behind one IPv4 address
    # (a venue's Wi-Fi, a carrier's NAT) whose checkout of 3 prints awaits payment
    assert settings.SHOP_NETWORK_PRINT_HOLD_PERCENT == 50
    first = Client(REMOTE_ADDR="198.51.100.7")
    assert order_prints(first, tenant_a, shop, 3).status_code == 303
    # when: another session behind that address (or the same browser without its cookie) orders 3
    second = Client(REMOTE_ADDR="198.51.100.7")
    before = written()
    refused = order_prints(second, tenant_a, shop, 3)
    after = written()
    # then: refused, naming the print and how many may still be ordered, with Retry-After within
    # the reservation's lifetime; nothing written, the cart kept
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= settings.INVENTORY_RESERVATION_TTL_SECONDS
    body = refused.content.decode()
    assert f"Print A4 (photo {shop.photo.pk})" in body
    assert "order at most 2 of it now" in body
    assert after == before
    assert cart_of(second, tenant_a) == {str(shop.print.pk): 3}
    # when: that session orders 2 instead, and a shopper elsewhere orders 3
    second.post(f"/s/{tenant_a.org.slug}/cart/update", {"product": shop.print.pk, "quantity": 2})
    fewer = submit(second, tenant_a, checkout_form(second, tenant_a))
    elsewhere = order_prints(Client(REMOTE_ADDR="203.0.113.9"), tenant_a, shop, 3)
    # then: both are placed; each checkout records its network and its session only as a digest
    assert (fewer.status_code, elsewhere.status_code) == (303, 303)
    held = checkouts_of(tenant_a.org.pk)
    assert [c.client_network for c in held] == ["198.51.100.7", "198.51.100.7", "203.0.113.9"]
    assert held[0].client_session == session_digest(first.session.session_key)
    assert len({c.client_session for c in held}) == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_network_that_let_a_scarce_print_lapse_cannot_take_it_straight_back(
    tenant_a: Any, shop: Shop, settings: Any
) -> None:
    # given: 3 prints left, all of them checked out from one address and left to lapse unpaid
    shop.set_stock_quantity(3)
    hoarder = Client(REMOTE_ADDR="198.51.100.66")
    assert order_prints(hoarder, tenant_a, shop, 3).status_code == 303
    drain_outbox()
    [held] = checkouts_of(tenant_a.org.pk)
    lapse(held)
    assert shop.stock_quantity() == 3
    # when: a fresh session at that address orders one again, and a shopper elsewhere orders 2
    again = Client(REMOTE_ADDR="198.51.100.66")
    before = written()
    refused = order_prints(again, tenant_a, shop, 1)
    after = written()
    other = order_prints(Client(REMOTE_ADDR="203.0.113.20"), tenant_a, shop, 2)
    # then: the address is refused (Retry-After: until the lapsed order stops counting), nothing
    # written; the other shopper's order is placed
    assert refused.status_code == 429
    window = settings.INVENTORY_RESERVATION_TTL_SECONDS + settings.SHOP_NETWORK_LAPSED_HOLD_SECONDS
    assert 1 <= int(refused["Retry-After"]) <= window
    body = refused.content.decode()
    assert f"Orders of Print A4 (photo {shop.photo.pk}) from your network recently lapsed unpaid" in body
    assert after == before
    assert other.status_code == 303
    # when: the lapse is SHOP_NETWORK_LAPSED_HOLD_SECONDS old, and the address orders again
    with system_context("test: time passes"):
        Checkout.objects.filter(pk=held.pk).update(
            expires_at=timezone.now() - timedelta(seconds=settings.SHOP_NETWORK_LAPSED_HOLD_SECONDS + 1)
        )
    later = submit(again, tenant_a, checkout_form(again, tenant_a))
    # then: it is placed
    assert later.status_code == 303


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_two_orders_submitted_at_once_from_one_session_cannot_both_pass_its_open_checkout_cap(
    tenant_a: Any, shop: Shop, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a session with two of its three open checkouts, and its cart's checkout form
    assert settings.SHOP_OPEN_CHECKOUTS_PER_SESSION == 3
    browser = Client(REMOTE_ADDR="198.51.100.80")
    for _ in range(2):
        add(browser, tenant_a, shop, shop.download)
        assert submit(browser, tenant_a, checkout_form(browser, tenant_a)).status_code == 303
    add(browser, tenant_a, shop, shop.download)
    first_form = checkout_form(browser, tenant_a)
    twin = Client(REMOTE_ADDR="198.51.100.80")
    twin.cookies = copy.deepcopy(browser.cookies)  # the same session: a second tab, say
    # and: the first submission pauses inside its transaction once its checkout is written
    created, go_on = threading.Event(), threading.Event()
    real_create = cart_views.checkout_create

    def create_then_pause(**kwargs: Any) -> Checkout:
        checkout = real_create(**kwargs)
        if threading.current_thread().name == "first":
            created.set()
            go_on.wait(120)
        return checkout

    monkeypatch.setattr(cart_views, "checkout_create", create_then_pause)
    statuses: dict[str, int] = {}
    second_pid: list[int] = []

    def place(name: str, client: Client, form: dict[str, str]) -> None:
        try:
            if name == "second":
                second_pid.append(backend_pid())
            statuses[name] = submit(client, tenant_a, form).status_code
        finally:
            connection.close()

    first = threading.Thread(target=place, args=("first", browser, first_form), name="first")
    first.start()
    assert created.wait(60)
    # when: meanwhile the cart changes in another tab (one form of one cart is one order; another
    # cart is another order) and its form is submitted while the first is still uncommitted
    add(twin, tenant_a, shop, shop.print)
    second = threading.Thread(target=place, args=("second", twin, checkout_form(twin, tenant_a)), name="second")
    second.start()
    try:
        wait_until_blocked(second_pid, second, "the second submission (it should wait for the session's lock)")
    finally:
        go_on.set()
        first.join(60)
        second.join(60)
    # then: the first is placed; the second, decided after the first committed, is refused
    assert statuses == {"first": 303, "second": 429}
    assert [c.status for c in checkouts_of(tenant_a.org.pk)].count(Checkout.Status.AWAITING_PAYMENT_SESSION) == 3


@pytest.mark.django_db
def test_an_order_over_a_networks_share_by_itself_is_asked_to_be_smaller(tenant_a: Any, shop: Shop) -> None:
    # given: a print of 10, half of which one network may hold unpaid
    browser = Client(REMOTE_ADDR="198.51.100.90")
    before = written()
    # when: one order asks for 6
    response = order_prints(browser, tenant_a, shop, 6)
    # then: 409 without Retry-After (no wait makes it fit), the cart says how many; nothing written
    assert response.status_code == 409
    assert "Retry-After" not in response
    assert f"At most 5 of Print A4 (photo {shop.photo.pk}) can be ordered at once" in response.content.decode()
    assert written() == before
