"""The cart's checkout form asks for a shipping address exactly when the cart has prints; a
refusal re-renders the form with the errors and what the shopper typed; the order page shows the
address and, once shipped, the carrier and tracking reference."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from apps.commerce.models import CheckoutShipping
from apps.commerce.services.fulfilment import checkout_mark_shipped
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.helpers import deliver, drain_outbox, sandbox_paid
from tests.factories.commerce import Shop
from tests.web.shop.conftest import checkouts_of, url, written
from tests.web.shop.test_checkout import SHIPPING_FORM, add, checkout_form, submit


@pytest.fixture(autouse=True)
def _row_lock(settings: Any) -> None:
    """Prints are decided in the checkout's own transaction (no inventory writer needed)."""
    settings.INVENTORY_STRATEGY = "row_lock"


def cart_page(browser: Client, tenant: Any) -> str:
    return browser.get(url(tenant.org.slug, "cart")).content.decode()


@pytest.mark.django_db
def test_a_cart_of_downloads_asks_for_no_address(browser: Client, tenant_a: Any, shop: Shop) -> None:
    add(browser, tenant_a, shop, shop.download)
    body = cart_page(browser, tenant_a)
    assert 'name="shipping_name"' not in body and "Shipping address" not in body
    # and: checking out writes a checkout without a shipping row
    response = submit(browser, tenant_a, checkout_form(browser, tenant_a))
    assert response.status_code == 303
    with system_context("test"):
        assert not CheckoutShipping.objects.exists()


@pytest.mark.django_db
def test_a_cart_with_prints_asks_for_the_address_and_stores_it(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: a print in the cart
    add(browser, tenant_a, shop, shop.print, 2)
    # then: the form has the address fields, server-rendered, required, and no inline script
    body = cart_page(browser, tenant_a)
    for name in ("shipping_name", "shipping_line1", "shipping_city", "shipping_postal_code", "shipping_country"):
        assert f'name="{name}"' in body
    assert '<option value="DE">Germany</option>' in body
    assert "<script>" not in body and " onchange=" not in body
    # when: the shopper fills it in and places the order
    form = checkout_form(browser, tenant_a, shipping_line2="Hinterhaus", shipping_phone="+49 30 123")
    response = submit(browser, tenant_a, form)
    # then: one checkout whose address is stored, and the order page shows it
    assert response.status_code == 303, response.content.decode()
    [checkout] = checkouts_of(tenant_a.org.pk)
    with tenant_context(tenant_a.org.pk):
        stored = CheckoutShipping.objects.get(checkout=checkout)
    assert (stored.name, stored.line2, stored.country, stored.phone) == (
        "Ann Example",
        "Hinterhaus",
        "DE",
        "+49 30 123",
    )
    page = browser.get(response["Location"]).content.decode()
    assert "Your prints are sent to:" in page and "Hauptstrasse 1" in page and "10115 Berlin" in page
    assert "Germany" in page and "Shipped on" not in page


@pytest.mark.django_db
def test_a_missing_or_invalid_address_is_refused_keeping_what_was_typed(
    browser: Client, tenant_a: Any, shop: Shop
) -> None:
    add(browser, tenant_a, shop, shop.print)
    before = written()
    # when: the city is left out
    form = checkout_form(browser, tenant_a, shipping_city="", shipping_line1="Rue de l'Été 5")
    response = submit(browser, tenant_a, form)
    # then: 400, the error at the city, the typed values kept, nothing written
    body = response.content.decode()
    assert response.status_code == 400
    assert 'id="shipping_city-error"' in body
    assert 'value="Rue de l&#x27;Été 5"' in body and 'value="Ann Example"' in body
    assert '<option value="DE" selected>Germany</option>' in body
    assert written() == before
    # when: the country is not an ISO code (a forged form)
    response = submit(browser, tenant_a, checkout_form(browser, tenant_a, shipping_country="XX"))
    assert response.status_code == 400
    assert 'id="shipping_country-error"' in response.content.decode()
    assert written() == before


@pytest.mark.django_db
def test_address_fields_posted_for_a_cart_of_downloads_are_ignored(browser: Client, tenant_a: Any, shop: Shop) -> None:
    add(browser, tenant_a, shop, shop.download)
    response = submit(browser, tenant_a, checkout_form(browser, tenant_a, **SHIPPING_FORM))
    assert response.status_code == 303
    with system_context("test"):
        assert not CheckoutShipping.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_the_order_page_shows_carrier_and_tracking_once_shipped(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: a paid order of a print
    add(browser, tenant_a, shop, shop.print)
    page_url = submit(browser, tenant_a, checkout_form(browser, tenant_a))["Location"]
    [checkout] = checkouts_of(tenant_a.org.pk)
    drain_outbox()
    assert deliver([sandbox_paid(str(checkout.pk))]) == [200]
    drain_outbox()
    assert "tracking details once they are on their way" in browser.get(page_url).content.decode()
    # when: the studio marks it shipped
    with tenant_context(tenant_a.org.pk), transaction.atomic():
        checkout_mark_shipped(
            tenant_id=tenant_a.org.pk,
            checkout_id=checkout.pk,
            carrier="DHL",
            tracking_reference="JJD42",
            actor=None,
        )
    # then: the order page says so, with the carrier and the tracking reference
    page = browser.get(page_url).content.decode()
    assert "with DHL" in page and "<code>JJD42</code>" in page
