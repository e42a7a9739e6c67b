"""An event is priced only in a currency Darkroom sells in (apps/core/currencies.py), whoever sets
the prices (API, studio form, any service caller); a price list written before that rule, in a
code outside the table, is still shown."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from apps.catalog.models import Price, PriceList
from apps.catalog.services import PRICE_MAX_MINOR, PriceIn, price_list_set
from apps.core.problems import InvalidInput
from apps.tenancy.context import tenant_context
from tests.catalog.conftest import post
from tests.factories.catalog import EventFactory
from tests.factories.commerce import make_shop
from tests.web.shop.conftest import make_ready

pytestmark = pytest.mark.django_db


def rows(org_id: int) -> tuple[int, int]:
    with tenant_context(org_id):
        return PriceList.objects.count(), Price.objects.count()


@pytest.mark.parametrize("code", ["XYZ", "EUE", "AAA"])
def test_the_api_refuses_a_made_up_currency_with_a_400_and_writes_nothing(tenant_a: Any, code: str) -> None:
    # given: an event without prices
    event = EventFactory(tenant=tenant_a.org)
    # when: its prices are set in three letters that are no currency Darkroom sells in
    response = post(
        tenant_a.client(),
        f"/api/v1/events/{event.pk}/prices",
        {"currency": code, "prices": [{"kind": "bulk", "amount_minor": 1300}]},
    )
    # then: a 400 problem that says so at `currency`, and no price list (so nothing is fixed)
    assert response.status_code == 400
    body = json.loads(response.content)
    assert body["detail"] == f"{code} is not a currency Darkroom can sell in."
    assert body["errors"] == {"currency": [f"{code} is not a currency Darkroom can sell in."]}
    assert rows(tenant_a.org.pk) == (0, 0)
    # and: the right currency is still free to choose
    fixed = post(
        tenant_a.client(),
        f"/api/v1/events/{event.pk}/prices",
        {"currency": "EUR", "prices": [{"kind": "bulk", "amount_minor": 1300}]},
    )
    assert fixed.status_code == 200 and fixed.json()["currency"] == "EUR"


@pytest.mark.parametrize(("code", "amount_minor"), [("JPY", 1500), ("NGN", 250000), ("KWD", 1250), ("XOF", 5000)])
def test_the_api_accepts_currencies_of_the_table(tenant_a: Any, code: str, amount_minor: int) -> None:
    event = EventFactory(tenant=tenant_a.org)
    response = post(
        tenant_a.client(),
        f"/api/v1/events/{event.pk}/prices",
        {"currency": code, "prices": [{"kind": "bulk", "amount_minor": amount_minor}]},
    )
    assert response.status_code == 200, response.content
    assert response.json()["currency"] == code


def test_the_service_refuses_a_made_up_currency_for_every_caller(tenant_a: Any) -> None:
    event = EventFactory(tenant=tenant_a.org)
    with pytest.raises(InvalidInput) as refused:
        price_list_set(
            tenant_id=tenant_a.org.pk,
            event_id=event.pk,
            currency="EUE",
            prices=[PriceIn(kind="bulk", amount_minor=900)],
        )
    assert refused.value.extra["errors"] == {"currency": ["EUE is not a currency Darkroom can sell in."]}
    assert rows(tenant_a.org.pk) == (0, 0)


@pytest.mark.parametrize("amount_minor", [0, -5, PRICE_MAX_MINOR + 1])
def test_the_service_refuses_amounts_out_of_range(tenant_a: Any, amount_minor: int) -> None:
    event = EventFactory(tenant=tenant_a.org)
    with pytest.raises(InvalidInput) as refused:
        price_list_set(
            tenant_id=tenant_a.org.pk,
            event_id=event.pk,
            currency="EUR",
            prices=[PriceIn(kind="bulk", amount_minor=amount_minor)],
        )
    assert list(refused.value.extra["errors"]) == ["prices.0.amount_minor"]
    assert rows(tenant_a.org.pk) == (0, 0)


def test_a_price_list_in_an_old_made_up_currency_is_still_shown(tenant_a: Any) -> None:
    # given: a shop priced in XYZ before the currency table existed (amounts read with 2 decimals)
    shop = make_shop(org=tenant_a.org, currency="XYZ", download_price=1300)
    make_ready(shop.photo)
    # when: the API, the studio's event page and the shop's photo page show it
    api = tenant_a.client().get(f"/api/v1/events/{shop.event.pk}/prices")
    studio = Client()
    studio.force_login(tenant_a.owner)
    event_page = studio.get(f"/studio/events/{shop.event.pk}/")
    shop_page = Client().get(f"/s/{tenant_a.org.slug}/{shop.event.slug}/photos/{shop.photo.pk}/")
    # then: every one answers, with the amounts as they were entered
    assert api.status_code == 200 and api.json()["currency"] == "XYZ"
    assert event_page.status_code == 200 and "13.00 XYZ" in event_page.content.decode()
    assert shop_page.status_code == 200 and "13.00 XYZ" in shop_page.content.decode()
    # and: no new price is written in it
    again = post(
        tenant_a.client(),
        f"/api/v1/events/{shop.event.pk}/prices",
        {"currency": "XYZ", "prices": [{"kind": "download", "amount_minor": 1400}]},
    )
    assert again.status_code == 400
    with tenant_context(tenant_a.org.pk):
        assert Price.objects.get(event=shop.event, kind="download").amount_minor == 1300
