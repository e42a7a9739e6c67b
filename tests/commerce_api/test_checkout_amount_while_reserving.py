"""A checkout's `amount_minor` in the API is what it charges: its confirmed lines. While print
lines are still `reserving`, that is the lines confirmed so far (as the shop's order page shows
it), growing as prints are confirmed; a sold-out line never counts. What the payment asks for is
decided when the last line is (`_settle`), unchanged by how the API renders a reserving one."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.commerce.batched import inventory_sku_drain
from apps.commerce.batched.common import TOPIC_RESERVATION_DECIDED
from apps.commerce.models import Checkout, Transaction
from apps.tenancy.context import tenant_context
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import drain_outbox
from tests.factories.commerce import Shop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


def _drain(shop: Shop) -> None:
    """The inventory writer decides the print's pending reservations, and their consumer settles
    the checkout, as the worker would."""
    with tenant_context(shop.org.pk):
        inventory_sku_drain(tenant_id=shop.org.pk, product_id=shop.print.pk)
    drain_outbox(topics={TOPIC_RESERVATION_DECIDED})


def test_a_reserving_checkout_shows_its_confirmed_lines_and_then_the_whole(
    tenant_a: Any, shop_a: Shop, settings: Any
) -> None:
    settings.INVENTORY_STRATEGY = "batched"
    # given: a download (confirmed at once) and a print (waiting for the inventory writer)
    body = checkout_body(shop_a, {"product": shop_a.download.pk}, {"product": shop_a.print.pk})
    # when: the checkout is created, and read again before the writer ran
    created = post_checkout(tenant_a.client(), body)
    assert created.status_code == 201, created.content
    checkout = created.json()
    again = tenant_a.client().get(f"/api/v1/checkouts/{checkout['id']}").json()
    # then: both say reserving, charging the confirmed download so far (not 0)
    download = shop_a.prices["download"]
    assert (checkout["status"], checkout["amount_minor"]) == ("reserving", download)
    assert (again["status"], again["amount_minor"]) == ("reserving", download)
    assert sum(line["amount_minor"] for line in checkout["lines"] if line["state"] == "confirmed") == download
    # when: the writer confirms the print
    _drain(shop_a)
    payable = tenant_a.client().get(f"/api/v1/checkouts/{checkout['id']}").json()
    # then: the whole is charged, and what the payment asks for is that same sum
    whole = download + shop_a.prices["print"]
    assert (payable["status"], payable["amount_minor"]) == ("awaiting_payment_session", whole)
    with tenant_context(shop_a.org.pk):
        assert Checkout.objects.get(pk=checkout["id"]).amount_minor == whole
        assert Transaction.objects.get(checkout_id=checkout["id"]).amount_minor == whole


def test_a_print_that_sells_out_while_reserving_never_counts(tenant_a: Any, shop_a: Shop, settings: Any) -> None:
    settings.INVENTORY_STRATEGY = "batched"
    # given: a checkout of a download and a print, whose stock runs out before the writer runs
    body = checkout_body(shop_a, {"product": shop_a.download.pk}, {"product": shop_a.print.pk})
    checkout = post_checkout(tenant_a.client(), body).json()
    shop_a.set_stock_quantity(0)
    # when: the writer decides the print
    _drain(shop_a)
    payable = tenant_a.client().get(f"/api/v1/checkouts/{checkout['id']}").json()
    # then: only the download was and is charged
    assert checkout["amount_minor"] == shop_a.prices["download"]
    assert (payable["status"], payable["amount_minor"]) == ("awaiting_payment_session", shop_a.prices["download"])


def test_the_schema_says_what_amount_and_status_mean() -> None:
    document = Client().get("/api/schema/?format=json").json()
    schemas = document["components"]["schemas"]
    properties = schemas["CheckoutOutput"]["properties"]
    # `status` is an enum of every state a checkout can be in, each explained
    (ref,) = [part["$ref"] for part in properties["status"].get("allOf", [properties["status"]])]
    status = schemas[ref.rsplit("/", 1)[1]]
    assert status["enum"] == list(Checkout.Status.values)
    described = properties["status"]["description"]
    for value in Checkout.Status.values:
        assert f"`{value}`" in described
    # `amount_minor` says it is the confirmed lines, growing while reserving
    amount = properties["amount_minor"]["description"]
    assert "confirmed lines" in amount and "reserving" in amount
