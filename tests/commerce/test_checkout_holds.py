"""Print stock held per client network, through the API (`shopper_ip`) and the service
(`checkout_create(holder=...)`): one network's unpaid checkouts hold at most
SHOP_NETWORK_PRINT_HOLD_PERCENT of a print (an IPv6 client counts as its /64), paid units do not
count, units it let lapse count only while little is left, and two checkouts of one network are
decided one after the other under its lock. A refusal is an RFC 7807 problem, nothing written."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction

from apps.commerce.errors import PrintHoldLimitReached
from apps.commerce.models import Checkout, CheckoutLine
from apps.commerce.services import LineIn, checkout_create, checkouts_expire_due
from apps.commerce.services.checkout import HolderIn, client_network_of
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import checkout_write_counts, deliver, drain_outbox, sandbox_paid
from tests.factories.commerce import Shop, shipping_in
from tests.fixtures import TenantBundle, backend_pid, wait_until_blocked

PROBLEM = "application/problem+json"


def prints(shop: Shop, quantity: int, shopper_ip: str | None = None) -> dict[str, Any]:
    body = checkout_body(shop, {"product": shop.print.pk, "quantity": quantity})
    if shopper_ip is not None:
        body["shopper_ip"] = shopper_ip
    return body


def units_held(tenant: TenantBundle, network: str) -> int:
    with system_context("test: units held"):
        return sum(
            CheckoutLine.objects.filter(
                checkout__tenant_id=tenant.org.pk,
                checkout__client_network=network,
                checkout__status__in=Checkout.OPEN_STATUSES,
            ).values_list("quantity", flat=True)
        )


def test_a_client_address_counts_as_its_network() -> None:
    assert client_network_of("198.51.100.7") == "198.51.100.7"
    assert client_network_of("2001:db8:5:6:a:b:c:d") == "2001:db8:5:6::/64"
    assert client_network_of("::ffff:198.51.100.7") == "198.51.100.7"
    with pytest.raises(ValueError):
        client_network_of("shop.example.test")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("row_lock_strategy")
def test_an_ipv6_networks_checkouts_together_hold_at_most_its_share(tenant_a: TenantBundle, shop_a: Shop) -> None:
    # given: half of the print's 10 per network, and 3 awaiting payment from one address of a /64
    client = tenant_a.client()
    assert post_checkout(client, prints(shop_a, 3, "2001:db8:5:6::1")).status_code == 201
    before = checkout_write_counts()
    # when: another address of that /64 asks for 3, and one of another /64 too
    refused = post_checkout(client, prints(shop_a, 3, "2001:db8:5:6:ffff::2"))
    after = checkout_write_counts()
    elsewhere = post_checkout(client, prints(shop_a, 3, "2001:db8:5:7::1"))
    # then: the /64 is refused with a problem naming the print and what it may still hold, and
    # Retry-After within the reservation's lifetime; nothing written; the other /64 is served
    assert refused.status_code == 429, refused.content
    assert refused["Content-Type"] == PROBLEM
    problem = refused.json()
    assert (problem["type"], problem["status"]) == ("/problems/print-hold-limit", 429)
    assert (problem["product"], problem["available"], problem["share"], problem["reason"]) == (
        shop_a.print.pk,
        2,
        5,
        "share",
    )
    assert 1 <= int(refused["Retry-After"]) <= 15 * 60
    assert after == before
    assert elsewhere.status_code == 201
    # and: without `shopper_ip` a checkout is not counted against any network
    assert post_checkout(client, prints(shop_a, 3)).status_code == 201


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("row_lock_strategy")
def test_a_quantity_over_the_share_itself_is_refused_for_good(tenant_a: TenantBundle, shop_a: Shop) -> None:
    # when: one checkout asks for 6 of a print of 10 from one network
    before = checkout_write_counts()
    response = post_checkout(tenant_a.client(), prints(shop_a, 6, "198.51.100.7"))
    # then: 409 without Retry-After (waiting does not help, a smaller order does); nothing written
    assert response.status_code == 409, response.content
    assert response.json()["type"] == "/problems/print-hold-limit"
    assert (response.json()["available"], response.json()["share"]) == (5, 5)
    assert "Retry-After" not in response
    assert checkout_write_counts() == before


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_shoppers_behind_one_nat_who_pay_are_not_held_up(tenant_a: TenantBundle, shop_a: Shop) -> None:
    # given: five shoppers behind one IPv4 address hold one print each, unpaid (the network's share)
    client, venue = tenant_a.client(), "203.0.113.1"
    placed = [post_checkout(client, prints(shop_a, 1, venue)) for _ in range(5)]
    assert [response.status_code for response in placed] == [201] * 5
    # when: a sixth asks for one
    sixth = post_checkout(client, prints(shop_a, 1, venue))
    # then: refused while those five await payment
    assert sixth.status_code == 429
    # when: one of the five pays
    drain_outbox()
    deliver([sandbox_paid(placed[0].json()["id"])])
    drain_outbox()
    # then: the sixth is served: paid units no longer count against the network
    assert post_checkout(client, prints(shop_a, 1, venue)).status_code == 201
    assert units_held(tenant_a, venue) == 5


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("row_lock_strategy")
def test_units_that_lapsed_do_not_count_while_plenty_is_left(tenant_a: TenantBundle, shop_a: Shop) -> None:
    # given: a network's checkout of 3 of the print's 10 lapsed unpaid
    client = tenant_a.client()
    lapsed = post_checkout(client, prints(shop_a, 3, "198.51.100.9")).json()
    with tenant_context(tenant_a.org.pk):
        expires_at = Checkout.objects.get(pk=lapsed["id"]).expires_at
    assert checkouts_expire_due(now=expires_at + timedelta(seconds=1)) == 1
    # when: it orders 3 again, with all 10 left
    again = post_checkout(client, prints(shop_a, 3, "198.51.100.9"))
    # then: served (10 left cover the lapsed 3 and these)
    assert again.status_code == 201, again.content


@pytest.mark.django_db(transaction=True)
def test_two_checkouts_of_one_network_at_once_are_decided_one_after_the_other(
    tenant_a: TenantBundle, shop_a: Shop
) -> None:
    # given: two shoppers of one network each checking out 3 of a print of 10 (share: 5); the
    # first is inside its transaction, its checkout written, not committed
    holder = HolderIn(network="198.51.100.44")
    written, go_on = threading.Event(), threading.Event()
    outcomes: dict[str, Any] = {}
    second_pid: list[int] = []

    def buy(name: str) -> None:
        try:
            if name == "second":
                second_pid.append(backend_pid())
            with tenant_context(shop_a.org.pk), transaction.atomic():
                checkout_create(
                    tenant_id=shop_a.org.pk,
                    email=f"{name}@example.test",
                    provider="sandbox",
                    lines=[LineIn(product_id=shop_a.print.pk, quantity=3)],
                    shipping=shipping_in(),
                    holder=holder,
                )
                if name == "first":
                    written.set()
                    go_on.wait(120)
            outcomes[name] = "placed"
        except PrintHoldLimitReached as exc:
            outcomes[name] = exc.extra["available"]
        finally:
            connection.close()

    first = threading.Thread(target=buy, args=("first",))
    first.start()
    assert written.wait(60)
    # when: the second checks out meanwhile, then the first commits
    second = threading.Thread(target=buy, args=("second",))
    second.start()
    try:
        wait_until_blocked(second_pid, second, "the second checkout (it should wait for the network's lock)")
    finally:
        go_on.set()
        first.join(60)
        second.join(60)
    # then: the second saw the first's 3 and was refused (2 more at most): the network holds 3
    assert outcomes == {"first": "placed", "second": 2}
    assert units_held(tenant_a, holder.network) == 3
