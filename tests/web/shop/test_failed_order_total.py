"""The order page's total is what the checkout asked for: a failed or expired order still totals
its prints whose stock was released (listed, not struck out), as the provider was asked; a paid
one what was charged; an order closed while its prints were still being reserved totals every
line but the sold-out ones."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from apps.commerce.models import Checkout
from apps.commerce.services import checkouts_expire_due
from tests.commerce.fixtures import row_lock_strategy  # noqa: F401 - fixture, used by name
from tests.commerce.helpers import deliver, drain_outbox, sandbox_failed, sandbox_paid
from tests.factories.commerce import Shop
from tests.web.shop.conftest import checkouts_of
from tests.web.shop.test_checkout import add, checkout_form, submit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


def total(page: str) -> tuple[str, str]:
    """(label, amount) of the order page's total row."""
    found = re.search(r'<tfoot><tr><th scope="row" colspan="3">(.*?)</th><td class="num"><strong>(.*?)</strong>', page)
    assert found, "no total on the order page"
    return found.group(1), found.group(2)


def print_row(page: str) -> str:
    found = re.search(r"<tr>\s*<th scope=\"row\"><a [^>]*>Print A4.*?</tr>", page, re.S)
    assert found, "no print line on the order page"
    return found.group(0)


def three_prints_and_all_photos(browser: Client, tenant: Any, shop: Shop) -> tuple[str, Checkout]:
    """3 A4 prints (75.00) and "All photos of this event" (49.00) checked out; the sandbox
    session exists."""
    add(browser, tenant, shop, shop.print, 3)
    add(browser, tenant, shop, shop.bulk)
    location = str(submit(browser, tenant, checkout_form(browser, tenant))["Location"])
    drain_outbox()
    [checkout] = checkouts_of(tenant.org.pk)
    assert (checkout.status, checkout.amount_minor) == (Checkout.Status.AWAITING_PAYMENT, 12400)
    return location, checkout


@pytest.mark.usefixtures("row_lock_strategy")
def test_a_failed_orders_total_is_what_was_asked_for(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: an order of 124.00 EUR at the sandbox
    location, checkout = three_prints_and_all_photos(browser, tenant_a, shop)
    assert total(browser.get(location).content.decode()) == ("Total to pay", "124.00 EUR")
    # when: the shopper presses Fail (the prints' stock is released)
    assert deliver([sandbox_failed(str(checkout.pk))]) == [200]
    drain_outbox()
    # then: the page's total is the 124.00 EUR asked for, and the released print line is listed
    # with its amount, not struck out as if it were never part of the order
    page = browser.get(location).content.decode()
    assert "Payment failed" in page
    assert total(page) == ("Total (not charged)", "124.00 EUR")
    row = print_row(page)
    assert "Released" in row and "75.00 EUR" in row and "<s>" not in row
    assert shop.stock_quantity() == 10


@pytest.mark.usefixtures("row_lock_strategy")
def test_a_late_payments_total_is_what_was_paid(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: the same order, expired unpaid (its prints released), then paid late at the sandbox
    location, checkout = three_prints_and_all_photos(browser, tenant_a, shop)
    assert checkouts_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    assert deliver([sandbox_paid(str(checkout.pk))]) == [200]  # paid just before the session closed
    drain_outbox()
    # then: the page's total is the 124.00 EUR paid (being refunded), not only the bulk line's
    page = browser.get(location).content.decode()
    assert total(page) == ("Total paid late (being refunded)", "124.00 EUR")


@pytest.mark.usefixtures("row_lock_strategy")
def test_a_paid_orders_total_is_what_was_charged(browser: Client, tenant_a: Any, shop: Shop) -> None:
    location, checkout = three_prints_and_all_photos(browser, tenant_a, shop)
    assert deliver([sandbox_paid(str(checkout.pk))]) == [200]
    drain_outbox()
    page = browser.get(location).content.decode()
    assert total(page) == ("Total charged", "124.00 EUR")


def test_an_order_expired_while_reserving_totals_its_lines(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: a download and 2 prints checked out, the prints still waiting for the inventory
    # writer (the batched strategy, its message not run) when the order expires
    add(browser, tenant_a, shop, shop.download)
    add(browser, tenant_a, shop, shop.print, 2)
    location = str(submit(browser, tenant_a, checkout_form(browser, tenant_a))["Location"])
    [checkout] = checkouts_of(tenant_a.org.pk)
    assert checkout.status == Checkout.Status.RESERVING
    assert total(browser.get(location).content.decode()) == ("Total so far (prints still being reserved)", "9.00 EUR")
    assert checkouts_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    # then: nothing was asked for; the page totals the order's lines (the released prints too)
    page = browser.get(location).content.decode()
    assert "Expired unpaid" in page
    assert total(page) == ("Total (not charged)", "59.00 EUR")
