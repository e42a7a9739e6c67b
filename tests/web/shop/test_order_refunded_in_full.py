"""A fully refunded order's page says what was paid and that it went back, as an amount in the
currency charged (QA walkthrough: it said only "This order was refunded"), as a partial refund's
page does: "Refunded to you" and "Paid after refunds" under the total, and a sentence. Whether the
studio refunded the whole order at once, item after item, or the provider's dashboard refunded all
of it; a refund that then failed at the provider is not counted as given back."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from apps.commerce.models import Refund
from apps.commerce.services.payment import checkout_refund_request
from apps.tenancy.context import tenant_context
from tests.commerce.helpers import deliver, drain_outbox, sandbox_paid, sandbox_provider
from tests.commerce.refunds import dashboard_refund
from tests.commerce.test_refund_failed_at_provider import provider_says_failed
from tests.factories.commerce import Shop, make_shop
from tests.web.shop.conftest import make_ready
from tests.web.shop.html_tree import Element, parse
from tests.web.shop.test_checkout import add, checkout_form, submit
from tests.web.shop.test_order_refund_and_receipt_words import paid_order, refund_items

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


@pytest.fixture(autouse=True)
def _row_lock(settings: Any) -> None:
    settings.INVENTORY_STRATEGY = "row_lock"


def whole_order_refunded(tenant_id: int, checkout_id: str) -> Refund:
    """The studio refunds the whole order, and the provider confirms it."""
    with tenant_context(tenant_id), transaction.atomic():
        refund = checkout_refund_request(tenant_id=tenant_id, checkout_id=checkout_id, actor_label="test")
    drain_outbox()  # the provider is asked
    with tenant_context(tenant_id):
        refund.refresh_from_db()
    event = sandbox_provider().refunded_event(reference=f"sbx_{checkout_id}", refund_id=refund.provider_refund_id)
    assert deliver([event]) == [200]
    drain_outbox()
    return refund


def status_block(browser: Client, page_url: str) -> Element:
    response = browser.get(page_url)
    assert response.status_code == 200
    block = parse(response.content.decode()).find("section", **{"aria-labelledby": "status-heading"})
    assert block is not None
    return block


def totals(block: Element) -> dict[str, str]:
    """The rows under the order's items: label -> amount."""
    foot = block.find("tfoot")
    assert foot is not None
    rows: dict[str, str] = {}
    for row in foot.find_all("tr"):
        label, amount = row.find("th"), row.find("td")
        assert label is not None and amount is not None
        rows[label.text] = amount.text
    return rows


def sentences(block: Element) -> list[str]:
    return [p.text for p in block.find_all("p")]


@pytest.mark.parametrize("how", ["whole order", "item after item", "in the provider's dashboard"])
def test_a_refunded_order_says_what_was_paid_went_back(browser: Client, tenant_a: Any, shop: Shop, how: str) -> None:
    # given: a paid order of a download and two prints, 59.00 EUR
    page_url, checkout_id = paid_order(browser, tenant_a, shop)
    # when: all of it is refunded, that way
    if how == "whole order":
        whole_order_refunded(tenant_a.org.pk, checkout_id)
    elif how == "item after item":
        refund_items(tenant_a.org.pk, checkout_id, "download")
        refund_items(tenant_a.org.pk, checkout_id, "print")
    else:
        dashboard_refund(checkout_id, 5900)
        drain_outbox()
    # then: the order is refunded, and its page says what was paid and that all of it went back
    block = status_block(browser, page_url)
    assert [heading.text for heading in block.find_all("h2")] == ["Refunded"]
    assert totals(block) == {
        "Total charged": "59.00 EUR",
        "Refunded to you": "59.00 EUR",
        "Paid after refunds": "0.00 EUR",
    }
    assert (
        "This order was refunded: the 59.00 EUR you paid went back to you. Its downloads no longer work."
        in sentences(block)
    )


def test_a_refunded_order_of_prints_alone_says_no_word_of_downloads(browser: Client, tenant_a: Any) -> None:
    # given: an order of two prints in another currency, paid (50.00 GBP), then refunded whole
    shop = make_shop(org=tenant_a.org, currency="GBP")
    make_ready(shop.photo)
    add(browser, tenant_a, shop, shop.print, 2)
    page_url = str(submit(browser, tenant_a, checkout_form(browser, tenant_a))["Location"])
    drain_outbox()
    checkout_id = page_url.rstrip("/").rsplit("/", 1)[1]
    assert deliver([sandbox_paid(checkout_id)]) == [200]
    drain_outbox()
    whole_order_refunded(tenant_a.org.pk, checkout_id)
    # then: the page says the amount in the currency charged, and nothing of downloads
    block = status_block(browser, page_url)
    assert totals(block)["Refunded to you"] == "50.00 GBP"
    assert "This order was refunded: the 50.00 GBP you paid went back to you." in sentences(block)
    assert "download" not in block.text.lower()


def test_a_whole_refund_that_failed_at_the_provider_is_not_said_to_have_gone_back(
    browser: Client, tenant_a: Any, shop: Shop
) -> None:
    # given: a paid order of 59.00 EUR, refunded whole, whose refund then failed at the provider
    page_url, checkout_id = paid_order(browser, tenant_a, shop)
    refund = whole_order_refunded(tenant_a.org.pk, checkout_id)
    provider_says_failed(checkout_id, refund)
    # then: the page says what the studio refunded and that it did not reach the shopper; nothing
    # is counted as given back
    block = status_block(browser, page_url)
    said = sentences(block)
    assert "The studio refunded the 59.00 EUR you paid for this order. Its downloads no longer work." in said
    assert any(s.startswith("A refund of 59.00 EUR did not reach you") for s in said)
    assert "went back to you" not in block.text
    assert totals(block) == {"Total charged": "59.00 EUR"}
