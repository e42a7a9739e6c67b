"""What the studio's event pages say is true: a "Change the currency" form only removes the prices
its page showed; "Sell every photo as a download" says whether they are for sale; photo counts
keep withdrawn photos apart; the price editor's example follows the currency's decimals; an
access code refused for a public event is explained in words."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.utils import timezone

from apps.catalog.models import Photo, Price, PriceList
from apps.tenancy.context import tenant_context
from apps.tenancy.models import AuditLog
from tests.catalog.conftest import post
from tests.factories.commerce import make_shop
from tests.web.studio.conftest import StudioPeople, form_nonce_on, new_event, new_photo, signed_in, text

pytestmark = pytest.mark.django_db

_EXPECTED = re.compile(r'name="expected_currency" value="([^"]*)"')


def prices_of(studio: StudioPeople, event: Any) -> list[tuple[str, int, str]]:
    with tenant_context(studio.org.pk):
        return list(Price.objects.filter(event=event).order_by("kind").values_list("kind", "amount_minor", "currency"))


def currency_of(studio: StudioPeople, event: Any) -> str:
    with tenant_context(studio.org.pk):
        return PriceList.objects.get(event=event).currency


# --- 1. a stale "Change the currency" form ----------------------------------------------------------


def test_a_stale_currency_form_is_refused_and_keeps_the_prices_set_meanwhile(studio: StudioPeople) -> None:
    # given: the owner opens the event page, which says it is priced in USD
    shop = make_shop(org=studio.org, currency="USD", download_price=1300)
    owner = signed_in(studio.owner)
    page_url = f"/studio/events/{shop.event.pk}/"
    action = f"/studio/events/{shop.event.pk}/prices/currency"
    page = owner.get(page_url)
    assert "This event is priced in USD" in text(page)
    nonce = form_nonce_on(page, action)
    [shown] = _EXPECTED.findall(text(page))
    assert shown == "USD"
    # and: meanwhile an API key prices it in EUR
    api = studio.bundle.client()
    assert post(api, f"/api/v1/events/{shop.event.pk}/prices/currency", {"currency": "EUR"}).status_code == 200
    set_eur = post(
        api,
        f"/api/v1/events/{shop.event.pk}/prices",
        {"currency": "EUR", "prices": [{"kind": "download", "amount_minor": 1100}]},
    )
    assert set_eur.status_code == 200
    # when: the owner submits the stale form (JPY, confirmed)
    refused = owner.post(action, {"currency": "JPY", "confirm": "on", "expected_currency": shown, "nonce": nonce})
    # then: 409, the form says the event is in EUR now, and the EUR price is still there
    assert refused.status_code == 409
    body = text(refused)
    assert "The currency changed" in body and "priced in EUR now, not USD" in body
    assert "This event is priced in EUR" in body
    assert currency_of(studio, shop.event) == "EUR"
    assert prices_of(studio, shop.event) == [("download", 1100, "EUR")]
    with tenant_context(studio.org.pk):
        assert not AuditLog.objects.filter(
            action="catalog.price_list_currency_change", actor_user=studio.owner
        ).exists()
    # and: the re-rendered form shows EUR; sent again, now knowingly, it changes the currency
    [shown_again] = _EXPECTED.findall(body)
    assert shown_again == "EUR"
    done = owner.post(
        action,
        {"currency": "JPY", "confirm": "on", "expected_currency": shown_again, "nonce": form_nonce_on(refused, action)},
    )
    assert done.status_code == 303
    assert currency_of(studio, shop.event) == "JPY" and prices_of(studio, shop.event) == []


def test_a_currency_form_without_the_currency_it_showed_changes_nothing(studio: StudioPeople) -> None:
    # given: a currency form from a page that did not say which currency it showed
    shop = make_shop(org=studio.org, currency="EUR", download_price=1300)
    owner = signed_in(studio.owner)
    action = f"/studio/events/{shop.event.pk}/prices/currency"
    # when: it is sent
    response = owner.post(action, {"currency": "JPY", "confirm": "on", "nonce": "n" * 24})
    # then: refused as out of date; nothing removed
    assert response.status_code == 400
    assert "This page is out of date" in text(response)
    assert currency_of(studio, shop.event) == "EUR" and len(prices_of(studio, shop.event)) == 3


# --- 3. "Sell every photo as a download" says whether they are for sale ---------------------------


def offer(studio: StudioPeople, event: Any) -> str:
    owner = signed_in(studio.owner)
    action = f"/studio/events/{event.pk}/products/downloads"
    nonce = form_nonce_on(owner.get(f"/studio/events/{event.pk}/"), action)
    response = owner.post(action, {"nonce": nonce}, follow=True)
    assert response.status_code == 200
    return text(response)


def test_downloads_without_a_download_price_are_said_not_for_sale(studio: StudioPeople) -> None:
    # given: an event with one photo and no prices (the shop says "not for sale yet")
    with tenant_context(studio.org.pk):
        event = new_event(studio.org)
        new_photo(event)
    # when: the owner presses "Sell every photo as a download"
    page = offer(studio, event)
    # then: the message says the photo is offered but not for sale until a download price is set
    assert "1 photo is now offered as a download, but not for sale until the event has a download price" in page
    assert "for sale as downloads" not in page and "photo(s)" not in page
    # and: pressed again, it still says they are not for sale
    again = offer(studio, event)
    assert "already has its download, but none is for sale until the event has a download price" in again


def test_offering_downloads_of_an_event_without_photos_says_there_are_none(studio: StudioPeople) -> None:
    with tenant_context(studio.org.pk):
        event = new_event(studio.org)
    assert "This event has no photos yet" in offer(studio, event)


def test_downloads_with_a_download_price_are_said_for_sale_at_it(studio: StudioPeople) -> None:
    # given: an event priced at 9.00 EUR a download, with three photos without a download product
    with tenant_context(studio.org.pk):
        event = new_event(studio.org)
        for _ in range(3):
            new_photo(event)
        price_list = PriceList.objects.create(tenant_id=studio.org.pk, event=event, currency="EUR")
        Price.objects.create(
            tenant_id=studio.org.pk,
            price_list=price_list,
            event=event,
            kind="download",
            amount_minor=900,
            currency="EUR",
        )
    # when / then: the message names the photos (plural) and their price
    assert "3 photos are now for sale as downloads (9.00 EUR a photo)." in offer(studio, event)


def test_photos_whose_download_sku_is_taken_are_named_and_the_others_offered(studio: StudioPeople) -> None:
    # given: an event with two photos; the studio sells a print of the first under the SKU the
    # second photo's download would get, in lower case (SKUs are unique whatever their case)
    with tenant_context(studio.org.pk):
        event = new_event(studio.org)
        first, second = new_photo(event), new_photo(event)
    taken = f"e{event.pk}-download-p{second.pk}"
    created = post(
        studio.bundle.client(),
        f"/api/v1/events/{event.pk}/products",
        {"kind": "print", "photo_id": first.pk, "size": "A4", "stock_quantity": 3, "sku": taken},
    )
    assert created.status_code == 201
    # when: the owner presses "Sell every photo as a download"
    page = offer(studio, event)
    # then: the first photo is offered; the second is named, with the SKU and the product holding it
    assert "1 photo is now offered as a download" in page
    named = (
        f"Photo {second.pk} could not be offered as a download: its SKU E{event.pk}-DOWNLOAD-P{second.pk} "
        f"is already used by product {taken} (SKUs are unique whatever their case)."
    )
    assert named in page
    # and: pressed again, it does not claim every photo has its download, and names the photo again
    again = offer(studio, event)
    assert "already has its download" not in again and named in again


# --- 4. photo counts keep withdrawn photos apart ----------------------------------------------------


def test_studio_counts_do_not_count_withdrawn_photos_as_live(studio: StudioPeople) -> None:
    # given: an event with 7 photos, 2 of them withdrawn (the shop shows at most 5), and one with 1
    with tenant_context(studio.org.pk):
        event = new_event(studio.org, title="Gala")
        photos = [new_photo(event) for _ in range(7)]
        Photo.objects.filter(pk__in=[photos[0].pk, photos[1].pk]).update(
            withdrawn_at=timezone.now(), withdrawn_reason="Asked by the person in it"
        )
        single = new_event(studio.org, title="Picnic")
        new_photo(single)
    owner = signed_in(studio.owner)
    # when: the overview, the events list and the event page are shown
    overview = text(owner.get("/studio/"))
    events = text(owner.get("/studio/events/"))
    event_page = text(owner.get(f"/studio/events/{event.pk}/"))
    # then: each counts 5 photos and says 2 more were withdrawn; never "7 photos"
    assert "5 photos, plus 2 withdrawn" in overview and "1 photo<" in overview
    assert '<td class="num" data-label="Photos">5 <span class="meta">(plus 2 withdrawn)</span></td>' in events
    assert '<td class="num" data-label="Photos">1</td>' in events
    assert "Photos (5, plus 2 withdrawn)" in event_page
    assert "7 photos" not in overview + events and "Photos (7)" not in event_page


# --- 5. the price editor's example follows the currency's decimals -------------------------------


@pytest.mark.parametrize(
    ("currency", "example", "not_shown"),
    [
        ("JPY", "Amounts in whole JPY, without decimals (e.g. 9).", "e.g. 9.00"),
        ("EUR", "Amounts in EUR (e.g. 9.00).", "e.g. 9)"),
        ("KWD", "Amounts in KWD (e.g. 9.000).", "e.g. 9.00)"),
    ],
)
def test_the_price_editor_example_follows_the_currency(
    studio: StudioPeople, currency: str, example: str, not_shown: str
) -> None:
    shop = make_shop(org=studio.org, currency=currency, download_price=900)
    page = text(signed_in(studio.owner).get(f"/studio/events/{shop.event.pk}/"))
    assert example in page and not_shown not in page


def test_the_price_editor_example_before_any_currency_shows_both_kinds(studio: StudioPeople) -> None:
    event = new_event(studio.org)
    page = text(signed_in(studio.owner).get(f"/studio/events/{event.pk}/"))
    assert "(e.g. 9.00 in EUR, 9 in JPY)" in page


# --- 6. access codes in words ------------------------------------------------------------------------


def test_a_code_for_a_public_event_is_refused_in_words_by_the_studio(studio: StudioPeople) -> None:
    owner = signed_in(studio.owner)
    nonce = form_nonce_on(owner.get("/studio/events/"), "/studio/events/")
    response = owner.post(
        "/studio/events/",
        {
            "title": "Gala",
            "date": "2025-06-01",
            "slug": "gala",
            "visibility": "public",
            "access_code": "secret",
            "nonce": nonce,
        },
    )
    body = text(response)
    assert response.status_code == 400
    assert 'id="event_access_code_error"><li>Only for events protected by an access code.</li></ul>' in body
    assert "visibility &#x27;access_code&#x27;" not in body and "visibility 'access_code'" not in body
