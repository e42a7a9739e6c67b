"""A shipping address the checkout refuses is shown to the shopper at its fields with a plain
sentence above them, never the API's wording; nothing is written."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.factories.commerce import Shop
from tests.web.shop.conftest import written
from tests.web.shop.test_checkout import add, checkout_form, submit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _row_lock(settings: Any) -> None:
    settings.INVENTORY_STRATEGY = "row_lock"


def test_an_address_the_service_refuses_is_marked_at_its_field(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: a print in the cart
    add(browser, tenant_a, shop, shop.print)
    before = written()
    # when: the form passes but the checkout service refuses the phone number
    response = submit(browser, tenant_a, checkout_form(browser, tenant_a, shipping_phone="call me maybe"))
    # then: 400, the phone field marked with the reason, a sentence for people above, nothing written
    body = response.content.decode()
    assert response.status_code == 400
    assert 'id="shipping_phone" name="shipping_phone"' in body and 'aria-describedby="shipping_phone-error"' in body
    assert 'id="shipping_phone-error" role="alert">A phone number has digits' in body
    assert "Please check your shipping address: the fields marked below need a change." in body
    assert "`errors`" not in body and "see `" not in body
    assert written() == before


def test_a_missing_address_field_is_marked_with_a_sentence_above(browser: Client, tenant_a: Any, shop: Shop) -> None:
    add(browser, tenant_a, shop, shop.print)
    response = submit(browser, tenant_a, checkout_form(browser, tenant_a, shipping_city=""))
    body = response.content.decode()
    assert response.status_code == 400
    assert 'id="shipping_city-error" role="alert">This field is required.' in body
    assert "Please correct the fields marked below, then place your order again." in body
