"""A print size typed in another case is the size the event already uses: "a4" prices and
sells the A4 print, instead of making a second size that no product or price matches."""

from __future__ import annotations

import pytest

from apps.catalog.models import Price, Product, ProductKind
from apps.catalog.services import PriceIn, price_list_set, product_create
from apps.core.problems import InvalidInput
from apps.tenancy.context import tenant_context
from tests.factories.catalog import PhotoFactory
from tests.factories.commerce import make_shop

pytestmark = pytest.mark.django_db


def print_prices(shop) -> dict[str, int]:
    with tenant_context(shop.org.pk):
        return dict(Price.objects.filter(event=shop.event, kind=ProductKind.PRINT).values_list("size", "amount_minor"))


def test_a_price_for_a_size_in_another_case_sets_the_existing_size(tenant_a) -> None:
    # given: an event selling an A4 print at 25.00
    shop = make_shop(org=tenant_a.org)
    # when: its A4 price is set as "a4", with a new size
    price_list_set(
        tenant_id=tenant_a.org.pk,
        event_id=shop.event.pk,
        currency="EUR",
        prices=[
            PriceIn(kind="print", size="a4", amount_minor=3000),
            PriceIn(kind="print", size="30x40", amount_minor=5000),
        ],
    )
    # then: A4 costs 30.00 (one A4, no "a4"), and the new size is kept as typed
    assert print_prices(shop) == {"A4": 3000, "30x40": 5000}


def test_sizes_differing_only_in_case_in_one_request_are_refused(tenant_a) -> None:
    shop = make_shop(org=tenant_a.org)
    with pytest.raises(InvalidInput) as refused:
        price_list_set(
            tenant_id=tenant_a.org.pk,
            event_id=shop.event.pk,
            currency="EUR",
            prices=[
                PriceIn(kind="print", size="13x18", amount_minor=1),
                PriceIn(kind="print", size="13X18", amount_minor=2),
            ],
        )
    assert "prices.1" in refused.value.extra["errors"]
    assert print_prices(shop) == {"A4": 2500}


def test_a_print_product_in_another_case_takes_the_events_spelling(tenant_a) -> None:
    # given: an event with an A4 price, and another photo of it
    shop = make_shop(org=tenant_a.org)
    with tenant_context(tenant_a.org.pk):
        photo = PhotoFactory(event=shop.event)
    # when: a print of it is made as "a4"
    product = product_create(
        tenant_id=tenant_a.org.pk, event_id=shop.event.pk, kind="print", photo_id=photo.pk, size="a4", stock_quantity=5
    )
    # then: it is the A4 print, which the A4 price prices
    with tenant_context(tenant_a.org.pk):
        assert Product.objects.get(pk=product.pk).size == "A4"
