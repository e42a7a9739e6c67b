"""The order page of a checkout that expired before its payment arrived: the shopper is told the
payment came late and is being refunded, then that it has been refunded, not only that the order
expired unpaid."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from apps.commerce.models import Refund
from apps.commerce.services import checkouts_expire_due
from apps.tenancy.context import tenant_context
from tests.commerce.helpers import deliver, drain_outbox, sandbox_paid, sandbox_provider
from tests.factories.commerce import Shop
from tests.web.shop.conftest import checkouts_of
from tests.web.shop.test_checkout import add, checkout_form, submit

EXPIRED_UNPAID = "This order expired before it was paid"
LATE = "Your payment arrived after this order expired"


def status_block(browser: Client, location: str) -> str:
    page = browser.get(location)
    assert page.status_code == 200
    body = page.content.decode()
    heading = re.search(r'<h2 id="status-heading">(.*?)</h2>', body)
    assert heading
    return f"{heading.group(1)}\n{body}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_payment_that_arrived_after_expiry_is_shown_being_refunded_then_refunded(browser: Client, tenant_a: Any,
                                                                                 shop: Shop) -> None:  # fmt: skip
    # given: a checkout with its sandbox session, left unpaid until it expired
    add(browser, tenant_a, shop, shop.download)
    location = submit(browser, tenant_a, checkout_form(browser, tenant_a))["Location"]
    drain_outbox()
    [checkout] = checkouts_of(tenant_a.org.pk)
    assert checkouts_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    page = status_block(browser, location)
    assert page.startswith("Expired unpaid\n") and EXPIRED_UNPAID in page and LATE not in page
    assert "Total (not charged)" in page
    # when: the shopper had paid at the provider just before the session was closed
    deliver([sandbox_paid(str(checkout.pk))])
    drain_outbox()
    # then: the page says the payment came late and is being refunded
    page = status_block(browser, location)
    assert page.startswith("Expired, payment being refunded\n")
    assert f"{LATE}; it is being refunded." in page
    assert EXPIRED_UNPAID not in page
    assert "hx-get" not in page  # a final block: reloading shows the refund's progress
    assert "Total paid late (being refunded)" in page and "Total (not charged)" not in page
    # when: the provider's refund webhook arrives
    deliver([sandbox_provider().refunded_event(reference=f"sbx_{checkout.pk}")])
    drain_outbox()
    # then: the page says it has been refunded
    page = status_block(browser, location)
    assert page.startswith("Expired, payment refunded\n")
    assert f"{LATE}; it has been refunded." in page
    assert "it is being refunded" not in page and EXPIRED_UNPAID not in page
    assert "Total paid late (refunded)" in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_late_payments_refund_that_failed_after_landing_is_shown_not_reaching_the_shopper(
    browser: Client, tenant_a: Any, shop: Shop
) -> None:
    # given: a payment that arrived after its checkout expired, refunded, the refund landed
    add(browser, tenant_a, shop, shop.download)
    location = submit(browser, tenant_a, checkout_form(browser, tenant_a))["Location"]
    drain_outbox()
    [checkout] = checkouts_of(tenant_a.org.pk)
    assert checkouts_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    deliver([sandbox_paid(str(checkout.pk))])
    drain_outbox()
    with tenant_context(tenant_a.org.pk):
        [refund] = Refund.objects.filter(transaction__checkout_id=checkout.pk)
    deliver([sandbox_provider().refunded_event(reference=f"sbx_{checkout.pk}", refund_id=refund.provider_refund_id)])
    drain_outbox()
    assert status_block(browser, location).startswith("Expired, payment refunded\n")
    # when: the provider then says the refund failed (the shopper's card was closed)
    deliver([sandbox_provider().fail_refund(reference=f"sbx_{checkout.pk}", refund_id=refund.provider_refund_id)])
    drain_outbox()
    # then: the page no longer says it has been refunded: it is being refunded, another way
    page = status_block(browser, location)
    assert page.startswith("Expired, payment being refunded\n")
    assert f"{LATE}; it is being refunded." in page and "it has been refunded" not in page
    amount = re.search(r"Total paid late \(being refunded\).*?<strong>([\d.]+ EUR)</strong>", page, re.S)
    assert amount
    assert (
        f"A refund of {amount[1]} did not reach you: the payment provider returned it. {tenant_a.org.name} "
        "will pay it back another way." in page
    )
