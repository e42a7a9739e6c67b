"""A studio that chose "Sell every photo as a download" and then uploads more photos: the new
photos are for sale as downloads, and the upload's message says so; an event whose photos are not
all sold on their own says which on its page and offers the fix; the owner can stop offering new
photos (the service and the API: tests/catalog/test_downloads_for_new_photos.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.catalog.models import Event, Photo, Price, PriceList, Product, ProductKind
from apps.tenancy.context import tenant_context
from apps.tenancy.models import AuditLog
from tests.factories.catalog import ProductFactory, image_bytes
from tests.web.studio.conftest import StudioPeople, form_nonce_on, new_event, new_photo, signed_in, text

# Uploads store originals outside any transaction, so these tests run outside the test case's.
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "owner"])


def jpeg(name: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, image_bytes(64, 48), content_type="image/jpeg")


def priced_event(studio: StudioPeople, *, photos: int, download_minor: int | None = 900) -> Event:
    with tenant_context(studio.org.pk):
        event = new_event(studio.org)
        for _ in range(photos):
            new_photo(event)
        if download_minor is not None:
            price_list = PriceList.objects.create(tenant_id=studio.org.pk, event=event, currency="EUR")
            Price.objects.create(
                tenant_id=studio.org.pk,
                price_list=price_list,
                event=event,
                kind=ProductKind.DOWNLOAD,
                amount_minor=download_minor,
                currency="EUR",
            )
    return event


def press(client: Any, event: Event) -> str:
    """Press the first button of the event page posting to the downloads action; the page after."""
    action = f"/studio/events/{event.pk}/products/downloads"
    page = client.get(f"/studio/events/{event.pk}/")
    form = text(page).split(f'action="{action}"', 1)[1].split("</form>", 1)[0]
    choice = re.search(r'name="new_photos" value="(\d)"', form)
    data = {"nonce": form_nonce_on(page, action), **({"new_photos": choice.group(1)} if choice else {})}
    response = client.post(action, data, follow=True)
    assert response.status_code == 200
    return text(response)


def upload(client: Any, event: Event, *names: str) -> str:
    action = f"/studio/events/{event.pk}/photos"
    nonce = form_nonce_on(client.get(f"/studio/events/{event.pk}/"), action)
    response = client.post(action, {"nonce": nonce, "images": [jpeg(n) for n in names]}, follow=True)
    assert response.status_code == 200
    return text(response)


def downloads_of(event: Event) -> set[int]:
    with tenant_context(event.tenant_id):
        return set(Product.objects.filter(event=event, kind=ProductKind.DOWNLOAD).values_list("photo_id", flat=True))


def photo_ids(event: Event) -> set[int]:
    with tenant_context(event.tenant_id):
        return set(Photo.objects.filter(event=event).values_list("pk", flat=True))


def test_photos_uploaded_after_selling_every_photo_are_for_sale_and_the_message_says_so(
    studio: StudioPeople,
) -> None:
    # given: an event priced 9.00 EUR a download, whose owner pressed "Sell every photo as a download"
    event = priced_event(studio, photos=1)
    owner = signed_in(studio.owner)
    pressed = press(owner, event)
    assert "1 photo is now for sale as a download (9.00 EUR a photo). Photos uploaded later are offered" in pressed
    # when: a photographer uploads two more photos
    page = upload(signed_in(studio.photographer), event, "a.jpg", "b.jpg")
    # then: every photo has its download, and the message says they are for sale at that price
    assert downloads_of(event) == photo_ids(event) and len(photo_ids(event)) == 3
    assert (
        "2 photos uploaded; their previews are being made. They are for sale as downloads (9.00 EUR a photo) "
        "once their previews are ready." in page
    )
    assert "not for sale on" not in page
    # and: the event page says that every photo uploaded is offered, at that price
    assert "Every photo uploaded to this event is offered as a download, for sale at 9.00 EUR." in page


def test_new_photos_offered_without_a_download_price_are_said_not_for_sale(studio: StudioPeople) -> None:
    # given: an event without prices whose photos the owner offered as downloads
    event = priced_event(studio, photos=1, download_minor=None)
    owner = signed_in(studio.owner)
    press(owner, event)
    # when: the owner uploads a photo
    page = upload(owner, event, "a.jpg")
    # then: it is offered, and said not for sale until the event has a download price
    assert downloads_of(event) == photo_ids(event)
    assert "It is offered as a download, but not for sale until the event has a download price" in page
    assert "Every photo uploaded to this event is offered as a download, but not for sale until" in page


def test_an_upload_to_an_event_not_selling_every_photo_says_they_are_not_for_sale_and_how(
    studio: StudioPeople,
) -> None:
    # given: an event that sells its one photo as a download, added by hand
    event = priced_event(studio, photos=1)
    with tenant_context(studio.org.pk):
        ProductFactory(event=event, kind=ProductKind.DOWNLOAD, photo=Photo.objects.get(event=event))
    owner = signed_in(studio.owner)
    # when: the owner uploads two photos
    page = upload(owner, event, "a.jpg", "b.jpg")
    # then: the message and the event page say they are not for sale on their own, naming them,
    # and the page offers "Sell every photo as a download"
    new = sorted(photo_ids(event) - downloads_of(event))
    assert len(new) == 2
    assert "They are not for sale on their own (no download)" in page
    assert (
        f"2 photos of this event are not for sale on their own (no download): #{new[0]}, #{new[1]}. "
        "“Sell every photo as a download” below offers them." in page
    )
    # when: the owner presses it
    pressed = press(owner, event)
    # then: they are for sale, and the page no longer lists photos not for sale
    assert "2 photos are now for sale as downloads (9.00 EUR a photo)." in pressed
    assert downloads_of(event) == photo_ids(event) and "not for sale on their own" not in pressed
    # and: a photographer's upload message does not point at a button they do not have
    later = upload(signed_in(studio.photographer), event, "c.jpg")
    assert "It is for sale as a download (9.00 EUR a photo)" in later


def test_a_photographer_is_told_an_owner_can_sell_the_photos(studio: StudioPeople) -> None:
    event = priced_event(studio, photos=0)
    page = upload(signed_in(studio.photographer), event, "a.jpg")
    assert "An owner of the studio can sell it, and every photo uploaded later" in page
    assert "photo of this event is not for sale on its own (no download)" in page
    assert "An owner of the studio can offer them." in page and "Sell every photo as a download</button>" not in page


@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize(
    ("case", "one", "more"),
    [
        (
            "for sale",
            "1 photo uploaded; its preview is being made. It is for sale as a download (9.00 EUR a photo) once its "
            "preview is ready.",
            "2 photos uploaded; their previews are being made. They are for sale as downloads (9.00 EUR a photo) "
            "once their previews are ready.",
        ),
        (
            "no price",
            "1 photo uploaded; its preview is being made. It is offered as a download, but not for sale until the "
            "event has a download price: set it in the price list below.",
            "2 photos uploaded; their previews are being made. They are offered as downloads, but not for sale "
            "until the event has a download price: set it in the price list below.",
        ),
        (
            "not offered",
            "It is not for sale on its own (no download): “Sell every photo as a download” under Products and "
            "stock sells it, and every photo uploaded later.",
            "They are not for sale on their own (no download): “Sell every photo as a download” under Products "
            "and stock sells them, and every photo uploaded later.",
        ),
        (
            "not offered, photographer",
            "It is not for sale on its own (no download): An owner of the studio can sell it, and every photo "
            "uploaded later, with “Sell every photo as a download”.",
            "They are not for sale on their own (no download): An owner of the studio can sell them, and every "
            "photo uploaded later, with “Sell every photo as a download”.",
        ),
    ],
)
def test_what_the_upload_message_says_of_the_photos_agrees_with_their_number(
    studio: StudioPeople, count: int, case: str, one: str, more: str
) -> None:
    # given: an event selling every photo as a download (priced or not), or one that does not
    event = priced_event(studio, photos=0, download_minor=None if case == "no price" else 900)
    if case in ("for sale", "no price"):
        press(signed_in(studio.owner), event)
    uploader = signed_in(studio.photographer if "photographer" in case else studio.owner)
    # when: `count` photos are uploaded
    page = upload(uploader, event, *(f"p{n}.jpg" for n in range(count)))
    # then: the sentence after "N photos uploaded" speaks of one photo or of several, as uploaded
    assert (one if count == 1 else more) in page
    assert (more if count == 1 else one) not in page


def test_the_owner_stops_offering_new_photos_once_per_form(studio: StudioPeople) -> None:
    # given: an event whose photos are offered as downloads, now and at upload
    event = priced_event(studio, photos=1)
    owner = signed_in(studio.owner)
    press(owner, event)
    page = owner.get(f"/studio/events/{event.pk}/")
    assert "Stop offering new photos as downloads" in text(page)
    assert "Sell every photo as a download</button>" not in text(page)
    action = f"/studio/events/{event.pk}/products/downloads"
    nonce = form_nonce_on(page, action)
    # when: the owner presses "Stop offering new photos as downloads", twice (a double click)
    first = owner.post(action, {"nonce": nonce, "new_photos": "0"})
    again = owner.post(action, {"nonce": nonce, "new_photos": "0"})
    # then: the event no longer offers new photos, audited once; its download stays
    assert first.status_code == again.status_code == 303
    with tenant_context(studio.org.pk):
        assert Event.objects.get(pk=event.pk).downloads_for_new_photos is False
        stops = AuditLog.objects.filter(action="catalog.downloads_for_new_photos_stopped", target_id=str(event.pk))
        assert stops.count() == 1
    assert downloads_of(event) == photo_ids(event)
    after = text(owner.get(first["Location"]))
    assert "no longer offered as downloads" in after and "Sell every photo as a download</button>" in after
    # and: a photo uploaded now is not for sale on its own, and said so
    assert "It is not for sale on its own" in upload(owner, event, "late.jpg")
    # and: only owners may stop it
    assert signed_in(studio.photographer).post(action, {"nonce": "p" * 24, "new_photos": "0"}).status_code == 403


def test_an_unknown_choice_is_refused_and_changes_nothing(studio: StudioPeople) -> None:
    event = priced_event(studio, photos=1)
    response = signed_in(studio.owner).post(
        f"/studio/events/{event.pk}/products/downloads", {"nonce": "n" * 24, "new_photos": "maybe"}
    )
    assert response.status_code == 400
    assert downloads_of(event) == set()
    with tenant_context(studio.org.pk):
        assert Event.objects.get(pk=event.pk).downloads_for_new_photos is False
