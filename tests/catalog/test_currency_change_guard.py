"""A currency change removes every price of an event, so it only ever removes prices its caller
saw: with the currency the caller saw (`expected_currency`), an event priced in another one by
then is refused under the price list's lock and keeps its prices. An event without prices has no
currency to change: the API and the studio refuse alike (409), creating nothing. The API reads
currency codes in either case, as the studio's forms do. A code given for a public event is
refused in words, not in internal values."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from django.db import connection, transaction

from apps.catalog.errors import PriceListCurrencyChanged, PriceListMissing
from apps.catalog.models import Price, PriceList
from apps.catalog.products import Actor
from apps.catalog.services import PriceIn, price_list_currency_change, price_list_set
from apps.tenancy.context import tenant_context
from apps.tenancy.models import AuditLog
from tests.catalog.conftest import post
from tests.factories.catalog import EventFactory
from tests.factories.commerce import make_shop
from tests.fixtures import TenantBundle, backend_pid, wait_until_blocked

pytestmark = pytest.mark.django_db

CHANGED = "catalog.price_list_currency_change"


def prices_of(org_id: int, event: Any) -> list[tuple[str, str, int, str]]:
    with tenant_context(org_id):
        return list(
            Price.objects.filter(event=event)
            .order_by("kind", "size")
            .values_list("kind", "size", "amount_minor", "currency")
        )


def currency_of(org_id: int, event: Any) -> str | None:
    with tenant_context(org_id):
        price_list = PriceList.objects.filter(event=event).first()
        return price_list.currency if price_list else None


def change_audits(org_id: int) -> int:
    with tenant_context(org_id):
        return AuditLog.objects.filter(action=CHANGED).count()


# --- the currency the caller saw ----------------------------------------------------------------


def test_a_change_expecting_another_currency_is_refused_and_keeps_the_prices(tenant_a: TenantBundle) -> None:
    # given: an event priced in EUR, which the caller still believes is in USD
    shop = make_shop(org=tenant_a.org, currency="EUR", download_price=1300)
    before = prices_of(tenant_a.org.pk, shop.event)
    # when: it asks for JPY, expecting USD
    with pytest.raises(PriceListCurrencyChanged) as refused:
        price_list_currency_change(
            tenant_id=tenant_a.org.pk,
            event_id=shop.event.pk,
            currency="JPY",
            expected_currency="USD",
            actor=Actor(label="test"),
        )
    # then: a 409 naming the event's currency; nothing removed, changed or audited
    assert refused.value.status_code == 409
    assert "priced in EUR now, not USD" in refused.value.detail
    assert currency_of(tenant_a.org.pk, shop.event) == "EUR"
    assert prices_of(tenant_a.org.pk, shop.event) == before
    assert change_audits(tenant_a.org.pk) == 0
    # and: expecting the right currency, the change goes through
    price_list_currency_change(
        tenant_id=tenant_a.org.pk,
        event_id=shop.event.pk,
        currency="JPY",
        expected_currency="EUR",
        actor=Actor(label="test"),
    )
    assert currency_of(tenant_a.org.pk, shop.event) == "JPY" and prices_of(tenant_a.org.pk, shop.event) == []


@pytest.mark.django_db(transaction=True)
def test_a_change_waiting_on_another_change_is_checked_after_it_commits(tenant_a: TenantBundle) -> None:
    # given: an event in USD; a change to EUR that sets a EUR price holds the price list's lock
    shop = make_shop(org=tenant_a.org, currency="USD", download_price=1300)
    holding = threading.Event()
    outcome: list[Any] = []
    waiter_pid: list[int] = []

    def stale_change() -> None:
        # a page that showed USD asks for JPY, while the EUR change is not committed yet
        try:
            waiter_pid.append(backend_pid())
            assert holding.wait(60)
            price_list_currency_change(
                tenant_id=tenant_a.org.pk,
                event_id=shop.event.pk,
                currency="JPY",
                expected_currency="USD",
                actor=Actor(label="stale page"),
            )
            outcome.append("changed")
        except PriceListCurrencyChanged as exc:
            outcome.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=stale_change)
    thread.start()
    with transaction.atomic():
        price_list_currency_change(
            tenant_id=tenant_a.org.pk, event_id=shop.event.pk, currency="EUR", actor=Actor(label="api")
        )
        price_list_set(
            tenant_id=tenant_a.org.pk,
            event_id=shop.event.pk,
            currency="EUR",
            prices=[PriceIn(kind="download", amount_minor=1100)],
        )
        holding.set()
        wait_until_blocked(waiter_pid, thread, "the stale change (it should wait for the price list's lock)")
    thread.join(60)
    # then: the stale change saw EUR under the lock and was refused; the EUR price stays
    assert len(outcome) == 1 and isinstance(outcome[0], PriceListCurrencyChanged), outcome
    assert currency_of(tenant_a.org.pk, shop.event) == "EUR"
    assert prices_of(tenant_a.org.pk, shop.event) == [("download", "", 1100, "EUR")]
    assert change_audits(tenant_a.org.pk) == 1


def test_the_api_refuses_a_change_expecting_another_currency(tenant_a: TenantBundle) -> None:
    # given: an event in EUR
    shop = make_shop(org=tenant_a.org, currency="EUR", download_price=1300)
    before = prices_of(tenant_a.org.pk, shop.event)
    url = f"/api/v1/events/{shop.event.pk}/prices/currency"
    # when: a client that last saw USD asks for JPY
    response = post(tenant_a.client(), url, {"currency": "JPY", "expected_currency": "USD"})
    # then: a 409 problem naming EUR; nothing written
    assert response.status_code == 409, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert body["type"] == "/problems/price-list-currency-changed"
    assert "priced in EUR now" in body["detail"]
    assert prices_of(tenant_a.org.pk, shop.event) == before and change_audits(tenant_a.org.pk) == 0
    # and: with the right one (in lower case, as people type it), the change goes through
    done = post(tenant_a.client(), url, {"currency": "jpy", "expected_currency": "eur"})
    assert done.status_code == 200, done.content
    assert (done.json()["currency"], done.json()["prices"]) == ("JPY", [])
    assert change_audits(tenant_a.org.pk) == 1


# --- an event without prices ----------------------------------------------------------------------


def test_the_service_refuses_to_change_the_currency_of_an_event_without_prices(tenant_a: TenantBundle) -> None:
    event = EventFactory(tenant=tenant_a.org)
    with pytest.raises(PriceListMissing) as refused:
        price_list_currency_change(
            tenant_id=tenant_a.org.pk, event_id=event.pk, currency="USD", actor=Actor(label="test")
        )
    assert refused.value.status_code == 409
    assert currency_of(tenant_a.org.pk, event) is None and change_audits(tenant_a.org.pk) == 0


def test_the_api_and_the_studio_refuse_alike_on_an_event_without_prices(tenant_a: TenantBundle) -> None:
    from django.test import Client

    # given: an event without prices
    event = EventFactory(tenant=tenant_a.org)
    # when: the API asks for USD, and the studio's form does
    api = post(tenant_a.client(), f"/api/v1/events/{event.pk}/prices/currency", {"currency": "USD"})
    studio = Client()
    studio.force_login(tenant_a.owner)
    page = studio.post(
        f"/studio/events/{event.pk}/prices/currency",
        {"currency": "USD", "confirm": "on", "expected_currency": "EUR", "nonce": "n" * 24},
    )
    # then: both a 409 "No prices yet"; no price list is created, nothing audited
    assert api.status_code == 409, api.content
    body = json.loads(api.content)
    assert body["type"] == "/problems/price-list-missing" and body["title"] == "No prices yet"
    assert page.status_code == 409 and "No prices yet" in page.content.decode()
    assert body["detail"] in page.content.decode()
    assert currency_of(tenant_a.org.pk, event) is None and change_audits(tenant_a.org.pk) == 0
    # and: the first prices still choose the currency
    first = post(
        tenant_a.client(),
        f"/api/v1/events/{event.pk}/prices",
        {"currency": "usd", "prices": [{"kind": "bulk", "amount_minor": 4900}]},
    )
    assert first.status_code == 200 and first.json()["currency"] == "USD"


# --- codes in lower case ----------------------------------------------------------------------------


def test_the_api_reads_currencies_in_lower_case_like_the_studio(tenant_a: TenantBundle) -> None:
    # given: an event priced in EUR
    shop = make_shop(org=tenant_a.org, currency="EUR", download_price=1300)
    api = tenant_a.client()
    # when: prices are set with "eur" and the currency changed with "jpy"
    priced = post(
        api,
        f"/api/v1/events/{shop.event.pk}/prices",
        {"currency": "eur", "prices": [{"kind": "download", "amount_minor": 1500}]},
    )
    changed = post(api, f"/api/v1/events/{shop.event.pk}/prices/currency", {"currency": "jpy"})
    # then: both accepted and stored upper-cased
    assert priced.status_code == 200, priced.content
    assert priced.json()["currency"] == "EUR"
    assert changed.status_code == 200, changed.content
    assert changed.json()["currency"] == "JPY" and currency_of(tenant_a.org.pk, shop.event) == "JPY"
    with tenant_context(tenant_a.org.pk):
        [audit] = AuditLog.objects.filter(action=CHANGED)
    assert (audit.data["previous_currency"], audit.data["currency"]) == ("EUR", "JPY")
    # and: what is not three letters, or no currency Darkroom sells in, is still refused (400)
    for bad in ("jp", "jpyy", "xyz"):
        refused = post(api, f"/api/v1/events/{shop.event.pk}/prices/currency", {"currency": bad})
        assert refused.status_code == 400, (bad, refused.content)
    assert currency_of(tenant_a.org.pk, shop.event) == "JPY"


# --- access codes, in words ---------------------------------------------------------------------------


def test_a_code_for_a_public_event_is_refused_in_words(tenant_a: TenantBundle) -> None:
    # when: an event is created public with an access code, and an existing public one is given one
    created = post(
        tenant_a.client(),
        "/api/v1/events",
        {"title": "Gala", "date": "2025-06-01", "slug": "gala", "visibility": "public", "access_code": "secret"},
    )
    event = EventFactory(tenant=tenant_a.org)
    updated = tenant_a.client().patch(
        f"/api/v1/events/{event.pk}",
        {"access_code": "secret"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-" + str(event.pk),
    )
    # then: each refusal says it for people, not as the internal value 'access_code'
    for response in (created, updated):
        assert response.status_code == 400, response.content
        errors = json.loads(response.content)["errors"]
        assert errors["access_code"] == ["Only for events protected by an access code."]
        assert "'access_code'" not in response.content.decode()
