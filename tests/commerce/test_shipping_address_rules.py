"""A shipping address is checked as a carrier would read its label: the postal code in the
country's format (required, except where the country has none), the region where carriers need one
(US states, Canadian provinces, Australian states), and text a label can carry. A refusal is a
400 problem naming the field, nothing written; what passes is stored normalised (NFC, the postal
code upper-cased, a region given by name stored as its code)."""

from __future__ import annotations

import pytest

from apps.commerce.models import Checkout, CheckoutShipping
from apps.tenancy.context import tenant_context
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import system_count
from tests.factories.commerce import SHIPPING_JSON

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("row_lock_strategy", "empty_broker")]


def _post(tenant, shop, **address: str):
    body = checkout_body(shop, {"product": shop.print.pk, "quantity": 1}, shipping={**SHIPPING_JSON, **address})
    return post_checkout(tenant.client(), body)


def _stored(tenant, response) -> CheckoutShipping:
    assert response.status_code == 201, response.content
    with tenant_context(tenant.org.pk):
        return CheckoutShipping.objects.get(checkout_id=response.json()["id"])


@pytest.mark.parametrize(
    ("address", "field"),
    [
        ({"postal_code": "💩"}, "shipping.postal_code"),  # what the review found accepted
        ({"postal_code": "1011"}, "shipping.postal_code"),  # DE: five digits
        ({"postal_code": "10115!"}, "shipping.postal_code"),
        ({"postal_code": "\uff11\uff10\uff11\uff11\uff15"}, "shipping.postal_code"),  # full-width digits
        ({"country": "FR", "postal_code": "7500"}, "shipping.postal_code"),
        ({"country": "GB", "postal_code": "10115"}, "shipping.postal_code"),
        ({"country": "NL", "postal_code": "1012"}, "shipping.postal_code"),
        ({"country": "CA", "postal_code": "12345", "region": "ON"}, "shipping.postal_code"),
        ({"country": "US", "postal_code": "9410", "region": "CA"}, "shipping.postal_code"),
        ({"country": "JP", "postal_code": "1000-001"}, "shipping.postal_code"),
        ({"country": "AU", "postal_code": "20000", "region": "NSW"}, "shipping.postal_code"),
        ({"country": "ZA", "postal_code": "80011"}, "shipping.postal_code"),
        ({"country": "NG", "postal_code": "1000"}, "shipping.postal_code"),  # optional, but not wrong
        ({"country": "KE", "postal_code": "GPO"}, "shipping.postal_code"),
        ({"country": "IE", "postal_code": "D02 X285 ☘"}, "shipping.postal_code"),  # a country without a format
        ({"country": "US", "postal_code": "94105"}, "shipping.region"),  # carriers need the state
        ({"country": "US", "postal_code": "94105", "region": "Narnia"}, "shipping.region"),
        ({"country": "CA", "postal_code": "K1A 0B1"}, "shipping.region"),
        ({"country": "AU", "postal_code": "2000", "region": "Bavaria"}, "shipping.region"),
        ({"region": "\u0301"}, "shipping.region"),  # a lone combining mark, what the review found
        ({"name": "\u0301Ann"}, "shipping.name"),
        ({"line1": "Hauptstrasse 1 \u0308"}, "shipping.line1"),
        ({"city": "Berlin\u200e"}, "shipping.city"),  # a format (direction) character
        ({"city": "💩"}, "shipping.city"),  # no letter or digit: nothing a carrier can route by
        ({"name": "---"}, "shipping.name"),
        ({"postal_code": ""}, "shipping.postal_code"),  # DE has postal codes: one is needed
        ({"country": "US", "postal_code": "", "region": "CA"}, "shipping.postal_code"),
    ],
)
def test_an_address_a_carrier_would_refuse_is_a_400_naming_the_field(tenant_a, shop_a, address, field):
    # when: a print is ordered to it
    response = _post(tenant_a, shop_a, **address)
    # then: a problem naming the field, and nothing written
    assert response.status_code == 400, response.content
    problem = response.json()
    assert problem["type"] == "/problems/invalid-shipping-address"
    assert field in problem["errors"], problem
    assert system_count(lambda: Checkout.objects.all()) == 0
    assert shop_a.stock_quantity() == 10


@pytest.mark.parametrize(
    ("address", "postal_code", "region"),
    [
        ({"country": "DE", "postal_code": " 10115 "}, "10115", ""),
        ({"country": "FR", "postal_code": "75008"}, "75008", ""),
        ({"country": "GB", "postal_code": "sw1a 1aa"}, "SW1A 1AA", ""),
        ({"country": "GB", "postal_code": "EC1A 1BB"}, "EC1A 1BB", ""),
        ({"country": "US", "postal_code": "94105-1234", "region": "ca"}, "94105-1234", "CA"),
        ({"country": "US", "postal_code": "10001", "region": "New York"}, "10001", "NY"),
        ({"country": "CA", "postal_code": "k1a 0b1", "region": "Ontario"}, "K1A 0B1", "ON"),
        ({"country": "NL", "postal_code": "1012 ab"}, "1012 AB", ""),
        ({"country": "IT", "postal_code": "00184", "region": "RM"}, "00184", "RM"),
        ({"country": "ES", "postal_code": "28013"}, "28013", ""),
        ({"country": "AU", "postal_code": "2000", "region": "nsw"}, "2000", "NSW"),
        ({"country": "AU", "postal_code": "0800", "region": "Northern Territory"}, "0800", "NT"),
        ({"country": "NG", "postal_code": "100001"}, "100001", ""),
        ({"country": "KE", "postal_code": "00100"}, "00100", ""),
        ({"country": "ZA", "postal_code": "8001"}, "8001", ""),
        ({"country": "JP", "postal_code": "100-0001", "region": "Tokyo"}, "100-0001", "Tokyo"),
        ({"country": "IE", "postal_code": "D02 X285"}, "D02 X285", ""),
        ({"country": "GH", "postal_code": ""}, "", ""),  # Ghana has no postal codes
        ({"country": "HK", "postal_code": ""}, "", ""),
        ({"country": "GH", "postal_code": "GA-183-8164"}, "GA-183-8164", ""),  # a GhanaPost GPS code, if given
    ],
)
def test_a_well_formed_address_is_stored_normalised(tenant_a, shop_a, address, postal_code, region):
    stored = _stored(tenant_a, _post(tenant_a, shop_a, **address))
    assert (stored.country, stored.postal_code, stored.region) == (address["country"], postal_code, region)


def test_names_and_lines_are_stored_in_nfc(tenant_a, shop_a):
    # given: a name and a street typed with combining accents (as some keyboards send them)
    response = _post(
        tenant_a, shop_a, name="Ame\u0301lie Mu\u0308ller", line1="Rue de l'E\u0301te\u0301 5", city="Ko\u0308ln"
    )
    # then: stored composed, as a label printer expects
    stored = _stored(tenant_a, response)
    assert (stored.name, stored.line1, stored.city) == ("Amélie Müller", "Rue de l'Été 5", "Köln")
