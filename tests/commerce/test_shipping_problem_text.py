"""The API's problem for a bad shipping address reads as a sentence (it reaches shoppers through
the shop too) and still names every field in `errors`."""

from __future__ import annotations

import pytest

from tests.commerce.fixtures import checkout_body, post_checkout
from tests.factories.commerce import SHIPPING_JSON

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("row_lock_strategy", "empty_broker")]


def test_a_bad_address_problem_is_a_sentence_and_names_its_fields(tenant_a, shop_a):
    # given: a print and an address with a bad phone and an unknown country
    address = {**SHIPPING_JSON, "country": "XX", "phone": "call me maybe"}
    body = checkout_body(shop_a, {"product": shop_a.print.pk, "quantity": 1}, shipping=address)
    # when: it is posted
    response = post_checkout(tenant_a.client(), body)
    # then: 400, a detail a person reads (no pointer to the JSON), and both fields in `errors`
    assert response.status_code == 400, response.content
    problem = response.json()
    assert problem["type"] == "/problems/invalid-shipping-address"
    assert problem["detail"] == "The shipping address is incomplete or has mistakes: check the fields marked."
    assert {"shipping.country", "shipping.phone"} <= set(problem["errors"])
