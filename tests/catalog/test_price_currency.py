"""An event is priced only in a currency Darkroom sells in (apps/core/currencies.py), whoever sets
the prices (API, studio form, any service caller); a price list written before that rule, in a
code outside the table, is still shown."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client
from rest_framework.test import APIClient

from apps.catalog.errors import PriceListCurrencyMismatch
from apps.catalog.models import Price, PriceList
from apps.catalog.products import Actor
from apps.catalog.services import PRICE_MAX_MINOR, PriceIn, price_list_currency_change, price_list_set
from apps.core.problems import InvalidInput
from apps.tenancy.context import tenant_context
from apps.tenancy.models import AuditLog
from tests.catalog.conftest import post
from tests.factories.catalog import EventFactory
from tests.factories.commerce import make_shop
from tests.factories.tenancy import MembershipFactory, UserFactory
from tests.fixtures import backend_pid, wait_until_blocked
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


# --- changing an event's currency ---------------------------------------------------------------


def test_the_api_changes_the_currency_of_an_old_made_up_price_list_removing_its_prices(tenant_a: Any) -> None:
    # given: an event priced in XYZ before the table (its prices can no longer change)
    shop = make_shop(org=tenant_a.org, currency="XYZ", download_price=1300)
    api = tenant_a.client()
    # when: its currency becomes EUR, then its download is priced in EUR
    changed = post(api, f"/api/v1/events/{shop.event.pk}/prices/currency", {"currency": "EUR"})
    priced = post(
        api,
        f"/api/v1/events/{shop.event.pk}/prices",
        {"currency": "EUR", "prices": [{"kind": "download", "amount_minor": 900}]},
    )
    # then: the change answered the empty list in EUR; the new price is the only one
    assert changed.status_code == 200, changed.content
    assert (changed.json()["currency"], changed.json()["prices"]) == ("EUR", [])
    assert priced.status_code == 200 and priced.json()["currency"] == "EUR"
    with tenant_context(tenant_a.org.pk):
        assert list(Price.objects.filter(event=shop.event).values_list("kind", "amount_minor", "currency")) == [
            ("download", 900, "EUR")
        ]
        # and: audited with what was removed
        [audit] = AuditLog.objects.filter(action="catalog.price_list_currency_change")
    assert audit.target_id == str(shop.event.pk) and audit.actor_label.startswith("api_key:")
    assert audit.data["previous_currency"] == "XYZ" and audit.data["currency"] == "EUR"
    assert {"kind": "download", "size": "", "amount_minor": 1300} in audit.data["prices_removed"]


@pytest.mark.parametrize(
    ("body", "status"),
    [({"currency": "EUE"}, 400), ({"currency": "eu"}, 400), ({}, 400), ({"currency": "USD", "x": 1}, 400)],
)
def test_a_bad_currency_change_is_refused_and_writes_nothing(tenant_a: Any, body: Any, status: int) -> None:
    shop = make_shop(org=tenant_a.org, currency="EUR", download_price=1300)
    before = rows(tenant_a.org.pk)
    response = post(tenant_a.client(), f"/api/v1/events/{shop.event.pk}/prices/currency", body)
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert rows(tenant_a.org.pk) == before
    with tenant_context(tenant_a.org.pk):
        assert PriceList.objects.get(event=shop.event).currency == "EUR"
        assert not AuditLog.objects.filter(action="catalog.price_list_currency_change").exists()


def test_the_same_currency_changes_nothing_and_a_photographer_cannot(tenant_a: Any) -> None:
    shop = make_shop(org=tenant_a.org, currency="EUR", download_price=1300)
    same = post(tenant_a.client(), f"/api/v1/events/{shop.event.pk}/prices/currency", {"currency": "EUR"})
    assert same.status_code == 200 and len(same.json()["prices"]) == len(shop.prices)
    photographer = UserFactory()
    MembershipFactory(tenant=tenant_a.org, user=photographer, role="photographer")
    member = APIClient()
    member.force_login(photographer)
    refused = post(member, f"/api/v1/events/{shop.event.pk}/prices/currency", {"currency": "USD"})
    assert refused.status_code == 403
    assert rows(tenant_a.org.pk)[1] == len(shop.prices)
    # and: another studio's event is a 404
    other = EventFactory()
    assert post(tenant_a.client(), f"/api/v1/events/{other.pk}/prices/currency", {"currency": "USD"}).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_a_setter_waiting_on_a_currency_change_sees_the_new_currency(tenant_a: Any) -> None:
    # given: a currency change to USD holding the price list's lock, uncommitted
    shop = make_shop(org=tenant_a.org, currency="EUR", download_price=1300)
    holding = threading.Event()
    outcome: list[Any] = []
    setter_pid: list[int] = []

    def setter() -> None:
        try:
            setter_pid.append(backend_pid())
            assert holding.wait(60)
            price_list_set(
                tenant_id=tenant_a.org.pk,
                event_id=shop.event.pk,
                currency="EUR",
                prices=[PriceIn(kind="download", amount_minor=1500)],
            )
            outcome.append("set")
        except PriceListCurrencyMismatch as exc:
            outcome.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=setter)
    thread.start()
    with transaction.atomic():
        price_list_currency_change(
            tenant_id=tenant_a.org.pk, event_id=shop.event.pk, currency="USD", actor=Actor(label="test")
        )
        holding.set()
        wait_until_blocked(setter_pid, thread, "the EUR setter (it should wait for the price list's lock)")
    thread.join(60)
    # then: the setter was refused after the commit; no EUR price slipped into the USD list
    assert len(outcome) == 1 and isinstance(outcome[0], PriceListCurrencyMismatch)
    with tenant_context(tenant_a.org.pk):
        assert PriceList.objects.get(event=shop.event).currency == "USD"
        assert not Price.objects.filter(event=shop.event).exists()


def test_the_studio_page_changes_the_currency_after_a_confirmation(tenant_a: Any) -> None:
    shop = make_shop(org=tenant_a.org, currency="EUR", download_price=1300)
    studio = Client()
    studio.force_login(tenant_a.owner)
    url = f"/studio/events/{shop.event.pk}/prices/currency"
    page = studio.get(f"/studio/events/{shop.event.pk}/").content.decode()
    assert "Change the currency" in page and "priced in EUR" in page
    # when: submitted without the confirmation, then with it
    unconfirmed = studio.post(url, {"currency": "usd", "nonce": "n1"})
    assert unconfirmed.status_code == 400
    assert "amounts do not carry over" in unconfirmed.content.decode()
    with tenant_context(tenant_a.org.pk):
        assert PriceList.objects.get(event=shop.event).currency == "EUR"
    done = studio.post(
        url, {"currency": "usd", "confirm": "on", "expected_currency": "EUR", "nonce": "n2"}, follow=True
    )
    # then: USD, no prices, and the page says to set them again
    assert done.status_code == 200
    assert "now priced in USD" in done.content.decode()
    with tenant_context(tenant_a.org.pk):
        assert PriceList.objects.get(event=shop.event).currency == "USD"
        assert not Price.objects.filter(event=shop.event).exists()


def test_the_price_list_goes_back_as_it_came(tenant_a: Any) -> None:
    # given: an event's prices as GET shows them (downloads and bulk with an empty size)
    shop = make_shop(org=tenant_a.org, currency="EUR", download_price=1300)
    api = tenant_a.client()
    path = f"/api/v1/events/{shop.event.pk}/prices"
    shown = api.get(path).json()
    assert {"kind": "download", "size": "", "amount_minor": 1300} in shown["prices"]
    # when: the same body is posted back
    again = post(api, path, {"currency": shown["currency"], "prices": shown["prices"]})
    # then: accepted, and nothing changed
    assert again.status_code == 200, again.content
    assert again.json() == shown
