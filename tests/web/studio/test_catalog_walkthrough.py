"""The event page as a photographer and an owner use it (QA walkthrough of the studio's catalog):
the photos' pager says where it goes, a price refused says how to write one with the example the
editor shows, and an upload refused for its size says so in megabytes and megapixels."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.web.studio.views import events
from tests.factories.catalog import image_bytes
from tests.factories.commerce import make_shop
from tests.web.shop.test_findme_limits import png_claiming
from tests.web.studio.conftest import StudioPeople, form_nonce_on, new_event, new_photo, signed_in, text

pytestmark = pytest.mark.django_db


def test_the_photos_pager_leads_to_more_photos_not_older_ones(
    studio: StudioPeople, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: an event of 3 photos, shown 2 a page (oldest first: the first uploaded, the first shown)
    monkeypatch.setattr(events, "PHOTOS_PER_PAGE", 2)
    event = new_event(studio.org)
    photos = [new_photo(event, image_width=40, image_height=30) for _ in range(3)]
    owner = signed_in(studio.owner)
    # when: the owner opens the event, then follows the photos' pager
    first = text(owner.get(f"/studio/events/{event.pk}/"))
    second = text(owner.get(f"/studio/events/{event.pk}/?page=2"))
    # then: page 1 leads to "More photos" (the newer uploads), page 2 back to "Previous photos",
    # both to the photos section; neither calls the newer photos "Older"
    assert f"#{photos[0].pk} ·" in first and f"#{photos[2].pk} ·" not in first
    assert '<a href="?page=2#photos" rel="next">More photos</a>' in first
    assert '<a href="?page=1#photos" rel="prev">Previous photos</a>' in second and f"#{photos[2].pk} ·" in second
    assert ">Older<" not in first and ">Newer<" not in second


def test_a_refused_price_shows_the_example_the_editor_shows(studio: StudioPeople) -> None:
    # given: an event priced in EUR; the editor says "e.g. 9.00"
    shop = make_shop(org=studio.org)
    owner = signed_in(studio.owner)
    page = owner.get(f"/studio/events/{shop.event.pk}/")
    assert "Amounts in EUR (e.g. 9.00)." in text(page)
    # when: the owner types a negative download price, then one with three decimals
    action = f"/studio/events/{shop.event.pk}/prices"
    negative = owner.post(action, {"nonce": form_nonce_on(page, action), "download": "-9"})
    precise = owner.post(action, {"nonce": form_nonce_on(page, action), "download": "9.001"})
    # then: each is refused with the same example, nine euros, not nine hundred
    assert negative.status_code == 400 and "write digits, e.g. 9.00, without thousands separators" in text(negative)
    assert precise.status_code == 400 and "at most 2 decimals and no thousands separators, e.g. 9.00." in text(precise)
    assert "900.00" not in text(negative) + text(precise)


def test_a_photo_over_the_size_limit_is_refused_in_megabytes(studio: StudioPeople, settings: Any) -> None:
    # given: photos are limited to 1 MB each; the event page says so
    settings.CATALOG_MAX_UPLOAD_BYTES = 2**20
    event = new_event(studio.org)
    owner = signed_in(studio.owner)
    page = owner.get(f"/studio/events/{event.pk}/")
    assert "each photo at most 1 MB" in text(page)
    # when: a photographer uploads a 1.5 MB file
    action = f"/studio/events/{event.pk}/photos"
    big = SimpleUploadedFile("big.jpg", image_bytes(64, 48) + b"\0" * (3 * 2**19), content_type="image/jpeg")
    refused = owner.post(action, {"nonce": form_nonce_on(page, action), "images": [big]})
    # then: refused, naming the file, its size and the limit in megabytes (not a count of bytes)
    assert refused.status_code == 413
    assert "big.jpg: The image is 1.5 MB; the limit is 1 MB." in text(refused)


@pytest.mark.parametrize(
    ("side", "said"),
    [
        (9_000, "The image has 81 megapixels; the limit is 50 megapixels."),
        # over Pillow's own limit (~179 megapixels), which refuses it while reading its header
        (20_000, "The image has over 178 megapixels; the limit is 50 megapixels."),
    ],
)
def test_a_photo_over_the_pixel_limit_is_refused_in_megapixels(
    studio: StudioPeople, settings: Any, side: int, said: str
) -> None:
    # given: photos of at most 50 megapixels, and a square PNG of side x side pixels
    settings.CATALOG_MAX_IMAGE_PIXELS = 50_000_000
    event = new_event(studio.org)
    owner = signed_in(studio.owner)
    page = owner.get(f"/studio/events/{event.pk}/")
    action = f"/studio/events/{event.pk}/photos"
    huge = SimpleUploadedFile("huge.png", png_claiming(side, side), content_type="image/png")
    # when: it is uploaded
    refused = owner.post(action, {"nonce": form_nonce_on(page, action), "images": [huge]})
    # then: refused in megapixels, never with Pillow's "could be decompression bomb DOS attack"
    body = text(refused)
    assert refused.status_code == 400 and f"huge.png: {said}" in body
    assert "decompression bomb" not in body


def test_adding_a_product_the_event_sells_already_says_so_in_the_pages_words(studio: StudioPeople) -> None:
    # given: an event whose new photo the owner offered as a download from the page (SKU made up)
    shop = make_shop(org=studio.org)
    photo = new_photo(shop.event, image_width=40, image_height=30)
    owner = signed_in(studio.owner)
    action = f"/studio/events/{shop.event.pk}/products"

    def add(**fields: Any) -> Any:
        page = owner.get(f"/studio/events/{shop.event.pk}/")
        return owner.post(action, {"nonce": form_nonce_on(page, action), **fields})

    assert add(kind="download", photo=photo.pk).status_code == 303
    # when: the owner adds that download again (another tab), then a bulk product naming a photo
    again = add(kind="download", photo=photo.pk)
    bulk = add(kind="bulk", photo=photo.pk)
    # then: the first is refused as a product the event sells, not for an SKU the owner never gave
    assert again.status_code == 409 and "This event already sells that product." in text(again)
    assert "is already used" not in text(again)
    # and: the second says a bulk product names no photo, without the API's field name
    assert bulk.status_code == 400 and "A bulk product covers the whole event: it names no photo." in text(bulk)
    assert "photo_id" not in text(bulk)
