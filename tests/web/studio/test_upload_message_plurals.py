"""The studio's upload messages count photos in proper English (QA walkthrough: they said
"photo(s)"): one photo uploaded or refused is "1 photo", more are "photos", and the verb follows."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.factories.catalog import image_bytes
from tests.web.shop.html_tree import parse
from tests.web.studio.conftest import StudioPeople, form_nonce_on, new_event, signed_in

# An upload stores its originals outside any transaction (and refuses inside one).
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "owner"])


def jpeg(name: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, image_bytes(64, 48), content_type="image/jpeg")


def not_an_image(name: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, b"this is not a picture", content_type="image/jpeg")


def upload(studio: StudioPeople, files: list[SimpleUploadedFile]) -> tuple[int, list[str]]:
    """Send `files` in one upload form of a new event; the status and what the page then says
    to the uploader (its messages, or the form's errors above its fields)."""
    event = new_event(studio.org)
    client = signed_in(studio.owner)
    action = f"/studio/events/{event.pk}/photos"
    nonce = form_nonce_on(client.get(f"/studio/events/{event.pk}/"), action)
    response = client.post(action, {"nonce": nonce, "images": files}, follow=True)
    page = parse(response.content.decode())
    said = [item.text for messages in page.find_all("ul", class_="messages") for item in messages.find_all("li")]
    said += [alert.text for alert in page.find_all("div", role="alert")]
    return response.status_code, said


@pytest.mark.parametrize(
    ("count", "said"),
    [
        (1, "1 photo uploaded; its preview is being made."),
        (2, "2 photos uploaded; their previews are being made."),
    ],
)
def test_the_upload_message_counts_the_photos(studio: StudioPeople, count: int, said: str) -> None:
    # when: the owner uploads `count` photos
    status, messages = upload(studio, [jpeg(f"p{n}.jpg") for n in range(count)])
    # then: the message counts them in words that fit the number
    assert status == 200
    assert any(message.startswith(said) for message in messages), messages
    assert not any("(s)" in message for message in messages)


@pytest.mark.parametrize(
    ("good", "bad", "said"),
    [
        (0, 1, "Nothing was uploaded: the photo was refused. Fix it and send it again."),
        (1, 1, "Nothing was uploaded: 1 of 2 photos was refused. Remove or fix it and send the photos again."),
        (1, 2, "Nothing was uploaded: 2 of 3 photos were refused. Remove or fix them and send the photos again."),
    ],
)
def test_the_refusal_counts_the_photos_refused(studio: StudioPeople, good: int, bad: int, said: str) -> None:
    # when: an upload holds `bad` files that are not images among `good` photos
    files = [jpeg(f"good{n}.jpg") for n in range(good)] + [not_an_image(f"bad{n}.jpg") for n in range(bad)]
    status, messages = upload(studio, files)
    # then: it is refused, counting the photos refused in words that fit the numbers
    assert status == 400
    assert said in messages, messages
    assert not any("(s)" in message for message in messages)
