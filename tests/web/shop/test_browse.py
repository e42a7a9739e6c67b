"""Browsing the shop: a studio's events, galleries, access codes (and their rate limit), 404s."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.catalog.models import Event
from tests.factories.catalog import EventFactory
from tests.factories.commerce import Shop
from tests.web.shop.conftest import ACCESS_CODE, a_photo, an_event, url

pytestmark = pytest.mark.django_db


def test_studio_page_lists_its_public_events_only(browser: Client, tenant_a: Any, tenant_b: Any, shop: Shop,
                                                  protected_event: Event) -> None:  # fmt: skip
    # given: a public event and a protected one at studio A, an event at studio B
    EventFactory(tenant=tenant_b.org, title="Elsewhere Cup")
    # when
    response = browser.get(url(tenant_a.org.slug))
    # then: the studio's name, its public event linked, neither the protected nor B's event
    assert response.status_code == 200
    body = response.content.decode()
    assert tenant_a.org.name in body
    assert shop.event.title in body
    assert f'href="/s/{tenant_a.org.slug}/{shop.event.slug}/"' in body
    assert "Private Gala" not in body
    assert "Elsewhere Cup" not in body


def test_gallery_shows_ready_thumbnails_linking_to_photo_pages(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: the shop's ready photo and one whose derivatives are still pending
    pending = a_photo(shop.event, ready=False)
    # when
    response = browser.get(url(tenant_a.org.slug, shop.event.slug))
    # then
    assert response.status_code == 200
    body = response.content.decode()
    assert f"/s/{tenant_a.org.slug}/{shop.event.slug}/photos/{shop.photo.pk}/" in body
    assert shop.photo.public_token.hex in body  # its thumbnail's URL
    assert f"photos/{pending.pk}/" not in body
    assert "Find me" in body


def test_gallery_is_paginated(browser: Client, tenant_a: Any, shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    from apps.web.shop.views import browse

    monkeypatch.setattr(browse, "GALLERY_PAGE_SIZE", 2)
    extra = [a_photo(shop.event) for _ in range(2)]
    ids = [shop.photo.pk, *(p.pk for p in extra)]
    first = browser.get(url(tenant_a.org.slug, shop.event.slug)).content.decode()
    second = browser.get(url(tenant_a.org.slug, shop.event.slug) + "?page=2").content.decode()
    beyond = browser.get(url(tenant_a.org.slug, shop.event.slug) + "?page=99").content.decode()
    assert [f"photos/{i}/" in first for i in ids] == [True, True, False]
    assert "Page 1 of 2" in first and 'rel="next"' in first
    assert [f"photos/{i}/" in second for i in ids] == [False, False, True]
    assert "Page 2 of 2" in beyond  # clamped to the last page


@pytest.mark.parametrize("page", ["²", "①", "-1", "1.5", "x", "9" * 30])
def test_odd_page_numbers_show_the_first_page(browser: Client, tenant_a: Any, shop: Shop, page: str) -> None:
    # given: page numbers no paginator wrote ("²" and "①" are digits to str.isdigit, not to int)
    for path in (url(tenant_a.org.slug), url(tenant_a.org.slug, shop.event.slug)):
        # when
        response = browser.get(path, {"page": page})
        # then: the first page, never a 500
        assert response.status_code == 200, (path, page)
        assert shop.event.title in response.content.decode()


def test_unknown_studio_event_and_photo_are_404_pages(browser: Client, tenant_a: Any, tenant_b: Any,
                                                      shop: Shop) -> None:  # fmt: skip
    other_photo = a_photo(an_event(tenant_b.org))
    same_studio_other_event = an_event(tenant_a.org)
    paths = [
        url("no-such-studio"),
        url(tenant_a.org.slug, "no-such-event"),
        url(tenant_b.org.slug, shop.event.slug),  # another studio's slug does not reach A's event
        url(tenant_a.org.slug, shop.event.slug, "photos", 999_999_999),
        url(tenant_a.org.slug, shop.event.slug, "photos", 99_999_999_999_999_999_999),  # beyond bigint
        url(tenant_a.org.slug, shop.event.slug, "photos", other_photo.pk),  # B's photo
        url(tenant_a.org.slug, same_studio_other_event.slug, "photos", shop.photo.pk),  # other event's
    ]
    for path in paths:
        response = browser.get(path)
        assert response.status_code == 404, path
        assert "Page not found" in response.content.decode()


def test_protected_event_shows_the_code_form_and_never_its_photos(browser: Client, tenant_a: Any,
                                                                  protected_event: Event) -> None:  # fmt: skip
    from apps.catalog.models import Photo
    from apps.tenancy.context import tenant_context

    with tenant_context(tenant_a.org.pk):
        photo = Photo.objects.get(event=protected_event)
    gallery = browser.get(url(tenant_a.org.slug, protected_event.slug))
    photo_page = browser.get(url(tenant_a.org.slug, protected_event.slug, "photos", photo.pk))
    find_me = browser.get(f"/s/{tenant_a.org.slug}/{protected_event.slug}/find-me")
    assert gallery.status_code == 200
    assert (photo_page.status_code, find_me.status_code) == (403, 403)
    for response in (gallery, photo_page, find_me):
        body = response.content.decode()
        assert 'name="code"' in body
        assert photo.public_token.hex not in body  # no preview or thumbnail URL
        assert "<img" not in body
        assert f'href="/s/{tenant_a.org.slug}/{protected_event.slug}/photos/{photo.pk}/"' not in body


def test_wrong_code_is_refused_and_the_right_one_is_remembered(browser: Client, tenant_a: Any,
                                                               protected_event: Event) -> None:  # fmt: skip
    from apps.catalog.models import Photo
    from apps.tenancy.context import tenant_context

    with tenant_context(tenant_a.org.pk):
        photo = Photo.objects.get(event=protected_event)
    gallery = url(tenant_a.org.slug, protected_event.slug)
    photo_path = url(tenant_a.org.slug, protected_event.slug, "photos", photo.pk)
    # when: a wrong code
    wrong = browser.post(gallery, {"code": "guess"})
    # then: the form again, with the error, a 4xx, no photo
    assert wrong.status_code == 403
    assert "That access code is not correct." in wrong.content.decode()
    assert photo.public_token.hex not in wrong.content.decode()
    # when: the right code, coming from the photo page
    right = browser.post(gallery, {"code": ACCESS_CODE, "next": photo_path})
    # then: back to that page, and the session keeps the event open
    assert right.status_code == 303
    assert right["Location"] == photo_path
    assert browser.get(photo_path).status_code == 200
    assert photo.public_token.hex in browser.get(gallery).content.decode()
    # and: another browser still sees the form
    assert 'name="code"' in Client().get(gallery).content.decode()


def test_next_outside_the_event_is_ignored(browser: Client, tenant_a: Any, protected_event: Event) -> None:
    gallery = url(tenant_a.org.slug, protected_event.slug)
    response = browser.post(gallery, {"code": ACCESS_CODE, "next": "https://evil.example/steal"})
    assert (response.status_code, response["Location"]) == (303, gallery)


def test_access_code_attempts_are_rate_limited(browser: Client, tenant_a: Any, protected_event: Event,
                                               settings: Any) -> None:  # fmt: skip
    # given: 3 attempts a minute per event and address
    settings.SHOP_ACCESS_CODE_RATE = "3/min"
    gallery = url(tenant_a.org.slug, protected_event.slug)
    # when: three wrong guesses, then the right code
    statuses = [browser.post(gallery, {"code": f"guess-{n}"}).status_code for n in range(3)]
    limited = browser.post(gallery, {"code": ACCESS_CODE})
    # then: the guesses are refused as wrong, the fourth attempt is not even checked
    assert statuses == [403, 403, 403]
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) >= 1
    assert "Too many attempts" in limited.content.decode()
    assert 'name="code"' in browser.get(gallery).content.decode()  # still locked
    # and: another event's attempts are counted apart
    other = an_event(
        tenant_a.org, visibility=Event.Visibility.ACCESS_CODE, access_code_hash=protected_event.access_code_hash
    )
    assert browser.post(url(tenant_a.org.slug, other.slug), {"code": ACCESS_CODE}).status_code == 303


@pytest.mark.parametrize("suffix", ["../../../studio/wallet/", "photos/../../../../admin/", "%2e%2e/%2e%2e/other/"])
def test_next_climbing_out_of_the_event_is_ignored(browser: Client, tenant_a: Any, protected_event: Event,
                                                   suffix: str) -> None:  # fmt: skip
    # given: a `next` that starts with the gallery's path but climbs out of it
    gallery = url(tenant_a.org.slug, protected_event.slug)
    # when: the right code is entered with it
    response = browser.post(gallery, {"code": ACCESS_CODE, "next": gallery + suffix})
    # then: the shopper lands on the gallery, not wherever the dots lead
    assert (response.status_code, response["Location"]) == (303, gallery)
