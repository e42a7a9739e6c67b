"""The dashboard's multi-file upload stores originals before its transaction and keeps none it
does not use: refused forms, failed transactions and resubmitted forms leave no file behind.

The default storage is a RecordingStorage (tests.catalog.recording_storage): it notes whether a
transaction was open at each write and lists what an event's folder holds.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.catalog import services
from apps.catalog.errors import NotAPhotographer
from apps.catalog.models import Photo
from apps.dropin.models import DropInJob
from apps.outbox.models import OutboxMessage
from apps.tenancy.context import system_context, tenant_context
from tests.catalog.recording_storage import RecordingStorage, install
from tests.factories.catalog import image_bytes
from tests.web.studio.conftest import StudioPeople, form_nonce_on, new_event, signed_in, text

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def recorded(settings) -> RecordingStorage:
    settings.CATALOG_PRIVATE_PREFIX = f"private-{uuid.uuid4().hex[:8]}"
    return install(settings)


def jpeg(name: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, image_bytes(320, 240), content_type="image/jpeg")


def photos_of(studio: StudioPeople, event: Any) -> list[Photo]:
    with tenant_context(studio.org.pk):
        return list(Photo.objects.filter(event=event).order_by("pk"))


def fail_on_call(monkeypatch: pytest.MonkeyPatch, name: str, number: int) -> None:
    """Make `services.<name>` refuse (NotAPhotographer) on its `number`-th call."""
    real = getattr(services, name)
    calls = []

    def flaky(**kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == number:
            raise NotAPhotographer("Your role changed while the photos were being sent.")
        return real(**kwargs)

    monkeypatch.setattr(services, name, flaky)


def test_three_photos_are_stored_outside_the_transaction_and_committed_together(
    recorded: RecordingStorage, studio: StudioPeople
) -> None:
    # given: an event and its upload form
    event = new_event(studio.org)
    client = signed_in(studio.photographer)
    action = f"/studio/events/{event.pk}/photos"
    nonce = form_nonce_on(client.get(f"/studio/events/{event.pk}/"), action)
    # when: three photos are sent
    response = client.post(action, {"nonce": nonce, "images": [jpeg("a.jpg"), jpeg("b.jpg"), jpeg("c.jpg")]})
    # then: three photos, each original written while no transaction was open
    assert response.status_code == 303
    photos = photos_of(studio, event)
    names = sorted(p.original.name for p in photos)
    assert len(photos) == 3
    assert sorted(recorded.original_writes()) == [(name, False) for name in names]
    assert recorded.originals_of(tenant_id=studio.org.pk, event_id=event.pk) == names
    # and: each photo's render request and drop-in job committed with it
    with system_context("test: upload rows"):
        renders = OutboxMessage.objects.filter(topic=services.PHOTO_UPLOADED_TOPIC, tenant_id=studio.org.pk)
        assert sorted(int(m.aggregate_id) for m in renders) == [p.pk for p in photos]
        assert DropInJob.objects.filter(photo__in=photos).count() == 3


def test_a_resubmitted_form_keeps_no_second_set_of_originals(recorded: RecordingStorage, studio: StudioPeople) -> None:
    # given: an upload form sent once
    event = new_event(studio.org)
    client = signed_in(studio.photographer)
    action = f"/studio/events/{event.pk}/photos"
    nonce = form_nonce_on(client.get(f"/studio/events/{event.pk}/"), action)
    first = client.post(action, {"nonce": nonce, "images": [jpeg("a.jpg"), jpeg("b.jpg")]})
    # when: the browser sends it again (a resubmitted POST)
    again = client.post(action, {"nonce": nonce, "images": [jpeg("a.jpg"), jpeg("b.jpg")]})
    # then: the replay lands where the first did; its originals were stored and deleted again
    assert first.status_code == again.status_code == 303 and first["Location"] == again["Location"]
    photos = photos_of(studio, event)
    assert len(photos) == 2
    assert recorded.originals_of(tenant_id=studio.org.pk, event_id=event.pk) == sorted(p.original.name for p in photos)
    assert len(recorded.original_writes()) == 4 and len(recorded.deletes) == 2
    assert all(not inside for _, inside in recorded.original_writes() + recorded.deletes)


def test_a_form_with_a_bad_file_stores_no_original(recorded: RecordingStorage, studio: StudioPeople) -> None:
    # given: two good photos and one that is not an image
    event = new_event(studio.org)
    client = signed_in(studio.owner)
    bad = SimpleUploadedFile("notes.jpg", b"this is not a picture", content_type="image/jpeg")
    # when: they are sent in one form
    response = client.post(
        f"/studio/events/{event.pk}/photos", {"nonce": "n" * 24, "images": [jpeg("a.jpg"), bad, jpeg("b.jpg")]}
    )
    # then: the form names the bad file, and nothing was stored or written
    assert response.status_code == 400
    assert "notes.jpg:" in text(response) and "Nothing was uploaded: 1 of 3 photos was refused" in text(response)
    assert recorded.writes == []
    assert photos_of(studio, event) == []


def test_a_refusal_while_storing_deletes_the_originals_already_stored(
    recorded: RecordingStorage, studio: StudioPeople, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the second of three stores is refused (the uploader lost the role meanwhile)
    event = new_event(studio.org)
    client = signed_in(studio.photographer)
    fail_on_call(monkeypatch, "photo_original_store", 2)
    # when: three photos are sent
    response = client.post(
        f"/studio/events/{event.pk}/photos",
        {"nonce": "n" * 24, "images": [jpeg("a.jpg"), jpeg("b.jpg"), jpeg("c.jpg")]},
    )
    # then: the form shows the refusal; the first original was deleted at once; no photo
    assert response.status_code == 403
    assert "Your role changed" in text(response)
    [(first, inside)] = recorded.original_writes()
    assert inside is False and recorded.deletes == [(first, False)]
    assert recorded.originals_of(tenant_id=studio.org.pk, event_id=event.pk) == []
    assert photos_of(studio, event) == []


def test_a_failed_transaction_deletes_every_stored_original(
    recorded: RecordingStorage, studio: StudioPeople, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the third photo's rows are refused inside the form's transaction
    event = new_event(studio.org)
    client = signed_in(studio.photographer)
    fail_on_call(monkeypatch, "photo_create", 3)
    nonce = "n" * 24
    # when: three photos are sent
    response = client.post(
        f"/studio/events/{event.pk}/photos", {"nonce": nonce, "images": [jpeg("a.jpg"), jpeg("b.jpg"), jpeg("c.jpg")]}
    )
    # then: the transaction rolled back (no photo, no render request) and the three originals,
    # stored before it, are deleted after it
    assert response.status_code == 403
    assert photos_of(studio, event) == []
    with system_context("test: upload rows"):
        assert not OutboxMessage.objects.filter(topic=services.PHOTO_UPLOADED_TOPIC, tenant_id=studio.org.pk).exists()
    assert len(recorded.original_writes()) == 3
    assert sorted(recorded.deletes) == sorted(recorded.original_writes())
    assert recorded.originals_of(tenant_id=studio.org.pk, event_id=event.pk) == []
    # and: the form can be sent again with the same nonce (nothing was stored for it)
    monkeypatch.undo()
    again = client.post(
        f"/studio/events/{event.pk}/photos", {"nonce": nonce, "images": [jpeg("a.jpg"), jpeg("b.jpg"), jpeg("c.jpg")]}
    )
    assert again.status_code == 303
    assert len(photos_of(studio, event)) == 3
