"""The sandbox's status page (where it sends back the shopper of a checkout that gave no return
URL) speaks of the receipt as the shop's order page does (QA walkthrough: it said "A receipt is on
its way" whatever happened): on its way only until it is sent, then when it was sent, and nothing
of a receipt for a payment that did not go through; downloads are said to be ready only for an
order that has some."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.commerce.models import Receipt
from apps.tenancy.context import tenant_context
from tests.commerce.helpers import deliver, drain_outbox, sandbox_failed, sandbox_paid
from tests.factories.commerce import Shop
from tests.payments.test_sandbox_pay_page import new_checkout
from tests.web.shop.html_tree import parse

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


def status_says(checkout_id: str) -> list[str]:
    """The sentences of the status page's live region (what it says of the order)."""
    response = Client().get(reverse("sandbox-status", args=[checkout_id]))
    assert response.status_code == 200
    region = parse(response.content.decode()).find("div", id="sandbox-announcement")
    assert region is not None
    return [p.text for p in region.find_all("p")]


def test_the_receipt_is_said_to_be_on_its_way_only_until_it_is_sent(tenant_a: Any, shop: Shop) -> None:
    # given: a paid checkout of a download whose receipt has not been sent yet
    checkout_id = new_checkout(tenant_a, shop, {"product": shop.download.pk})
    assert deliver([sandbox_paid(checkout_id)]) == [200]
    drain_outbox(topics={"webhook.received"})
    with tenant_context(tenant_a.org.pk):
        assert Receipt.objects.get(checkout_id=checkout_id).status == Receipt.Status.PENDING
    # then: the page says it is on its way, and that the downloads are ready
    assert "A receipt is on its way to ann@example.test; your downloads are ready." in status_says(checkout_id)
    # when: the receipt is sent
    drain_outbox()
    with tenant_context(tenant_a.org.pk):
        sent_at = Receipt.objects.get(checkout_id=checkout_id).sent_at
    assert sent_at is not None
    # then: the page says when it was sent, and no longer that it is on its way
    said = status_says(checkout_id)
    assert f"A receipt was sent to ann@example.test on {sent_at:%-d %b %Y}; your downloads are ready." in said
    assert not any("on its way" in sentence for sentence in said)


def test_a_failed_payment_says_nothing_of_a_receipt(tenant_a: Any, shop: Shop) -> None:
    # given: a checkout whose payment failed
    checkout_id = new_checkout(tenant_a, shop, {"product": shop.download.pk})
    assert deliver([sandbox_failed(checkout_id)]) == [200]
    drain_outbox()
    # then: no word of a receipt or of downloads
    said = " ".join(status_says(checkout_id))
    assert "Payment failed" in said or "failed" in said.lower()
    assert "receipt" not in said and "download" not in said


def test_an_order_of_prints_alone_is_not_said_to_have_downloads(tenant_a: Any, shop: Shop) -> None:
    # given: a paid checkout of two prints, its receipt sent
    checkout_id = new_checkout(tenant_a, shop, {"product": shop.print.pk, "quantity": 2})
    assert deliver([sandbox_paid(checkout_id)]) == [200]
    drain_outbox()
    # then: the receipt is said sent, and no downloads are promised
    said = status_says(checkout_id)
    assert any(sentence.startswith("A receipt was sent to ann@example.test on ") for sentence in said)
    assert "download" not in " ".join(said)
