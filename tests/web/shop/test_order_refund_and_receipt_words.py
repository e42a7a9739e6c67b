"""What the shopper's order page says after paying (QA walkthrough): a refund of some items shows
what went back (the amount, in the currency charged, and which items), and the receipt is said to
be on its way only until it was sent."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from apps.commerce.models import CheckoutLine, Receipt, Refund
from apps.commerce.services.payment import checkout_refund_request
from apps.tenancy.context import tenant_context
from tests.commerce.helpers import deliver, drain_outbox, sandbox_paid, sandbox_provider
from tests.factories.commerce import Shop
from tests.web.shop.conftest import checkouts_of
from tests.web.shop.test_checkout import add, checkout_form, submit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


@pytest.fixture(autouse=True)
def _row_lock(settings: Any) -> None:
    settings.INVENTORY_STRATEGY = "row_lock"


def paid_order(browser: Client, tenant: Any, shop: Shop, *, send_receipt: bool = True) -> tuple[str, str]:
    """A download (9.00) and two A4 prints (2 x 25.00) ordered in the shop and paid (59.00 EUR);
    the receipt sent unless `send_receipt` is False. Returns the page URL and the checkout id."""
    add(browser, tenant, shop, shop.download)
    add(browser, tenant, shop, shop.print, 2)
    page_url = submit(browser, tenant, checkout_form(browser, tenant))["Location"]
    drain_outbox()
    [checkout] = checkouts_of(tenant.org.pk)
    assert deliver([sandbox_paid(str(checkout.pk))]) == [200]
    drain_outbox(topics=None if send_receipt else {"webhook.received"})
    return page_url, str(checkout.pk)


def refund_items(tenant_id: int, checkout_id: str, kind: str) -> None:
    """The studio refunds the order's line of `kind`, and the provider confirms it."""
    with tenant_context(tenant_id):
        line = CheckoutLine.objects.get(checkout_id=checkout_id, kind=kind)
        with transaction.atomic():
            checkout_refund_request(
                tenant_id=tenant_id, checkout_id=checkout_id, actor_label="test", line_ids=[line.pk]
            )
    drain_outbox()  # the provider is asked
    with tenant_context(tenant_id):
        refund = Refund.objects.get(lines=line)
    event = sandbox_provider().refunded_event(reference=f"sbx_{checkout_id}", refund_id=refund.provider_refund_id)
    assert deliver([event]) == [200]
    drain_outbox()


def squeezed(html: str) -> str:
    """The page's text without tags and with single spaces, as a reader hears it."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_a_partial_refund_shows_what_went_back_and_for_which_items(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: a paid order of 59.00 EUR
    page_url, checkout_id = paid_order(browser, tenant_a, shop)
    # when: the studio refunds the download (9.00) and the provider confirms it
    refund_items(tenant_a.org.pk, checkout_id, "download")
    # then: the order page says how much went back, in the currency charged, and for what
    page = squeezed(browser.get(page_url).content.decode())
    assert "Total charged 59.00 EUR" in page
    assert "Refunded to you 9.00 EUR" in page
    assert "Paid after refunds 50.00 EUR" in page
    assert (
        f"The studio refunded the items marked refunded: 9.00 EUR for Digital download, photo {shop.photo.pk}." in page
    )
    # and: the prints stay, as charged
    assert "Print A4" in page and "Paid, thank you!" in page


def test_the_receipt_is_said_to_be_on_its_way_only_until_it_is_sent(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: a paid order whose receipt has not been sent yet
    page_url, checkout_id = paid_order(browser, tenant_a, shop, send_receipt=False)
    with tenant_context(tenant_a.org.pk):
        assert Receipt.objects.get(checkout_id=checkout_id).status == Receipt.Status.PENDING
    # then: the page says it is on its way
    assert "A receipt is on its way to ann@example.test" in squeezed(browser.get(page_url).content.decode())
    # when: the receipt is sent
    drain_outbox()
    with tenant_context(tenant_a.org.pk):
        sent_at = Receipt.objects.get(checkout_id=checkout_id).sent_at
    assert sent_at is not None
    # then: the page says it was sent, and no longer that it is on its way
    page = squeezed(browser.get(page_url).content.decode())
    assert "A receipt is on its way" not in page
    assert f"A receipt was sent to ann@example.test on {sent_at:%-d %b %Y}" in page
