"""Uploads store their originals before any transaction opens, and keep none they do not use.

The default storage is a RecordingStorage here: it notes whether the writing thread's database
connection was inside a transaction at each write, and lists what an event's folder holds.
"""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from apps.catalog import storage as catalog_storage
from apps.catalog import uploads
from apps.catalog.models import Photo
from apps.catalog.services import (
    PHOTO_UPLOADED_TOPIC,
    originals_sweep_orphans,
    photo_create,
    photo_generate_derivatives,
    photo_original_store,
    photo_originals_discard,
    photo_upload,
)
from apps.dropin.models import DropInJob
from apps.idempotency import protocol
from apps.outbox.models import OutboxMessage
from apps.tenancy.context import system_context, tenant_context
from tests.catalog.conftest import post
from tests.catalog.recording_storage import RecordingStorage, install
from tests.factories.catalog import EventFactory, image_bytes

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def recorded(settings) -> RecordingStorage:
    settings.CATALOG_PRIVATE_PREFIX = f"private-{uuid.uuid4().hex[:8]}"
    return install(settings)


def jpeg_upload(width: int = 800, height: int = 600) -> SimpleUploadedFile:
    return SimpleUploadedFile("IMG_0001.JPG", image_bytes(width, height), content_type="image/jpeg")


def photos_url(event: Any) -> str:
    return f"/api/v1/events/{event.pk}/photos"


def test_the_recorder_tells_a_write_inside_a_transaction_from_one_outside(recorded, tenant_a):
    # given / when: one original written outside a transaction and one inside
    def write() -> str:
        return catalog_storage.save_original(
            name=catalog_storage.original_name(tenant_id=tenant_a.org.pk, event_id=1, extension="jpg"),
            content=io.BytesIO(b"x"),
        )

    outside = write()
    with transaction.atomic():
        inside = write()
    # then: the recorder tells them apart (the checks below would catch a write in a transaction)
    assert recorded.original_writes() == [(outside, False), (inside, True)]


# --- the API --------------------------------------------------------------------------------


def test_an_api_upload_stores_outside_the_transaction_and_commits_photo_job_and_render_request(
    recorded, tenant_a, member_client
):
    # given: an event and a signed-in photographer
    event = EventFactory(tenant=tenant_a.org)
    client, photographer = member_client(tenant_a.org, "photographer")
    # when: a photo is uploaded through the API
    response = post(client, photos_url(event), {"image": jpeg_upload()}, multipart=True)
    # then: one original, written while no transaction was open, named by the new photo
    assert response.status_code == 201, response.content
    with tenant_context(tenant_a.org.pk):
        photo = Photo.objects.get(pk=response.json()["id"])
    assert recorded.original_writes() == [(photo.original.name, False)]
    assert recorded.originals_of(tenant_id=tenant_a.org.pk, event_id=event.pk) == [photo.original.name]
    assert (photo.photographer_id, photo.width, photo.height) == (photographer.pk, 800, 600)
    # and: its render request and its drop-in job committed with it
    with system_context("test: upload rows"):
        renders = list(OutboxMessage.objects.filter(topic=PHOTO_UPLOADED_TOPIC, aggregate_id=str(photo.pk)))
        jobs = DropInJob.objects.filter(photo_id=photo.pk).count()
    assert [m.payload for m in renders] == [{"tenant_id": tenant_a.org.pk, "photo_id": photo.pk}]
    assert jobs == 1
    # and: the derivatives render from the stored original
    assert photo_generate_derivatives(tenant_id=tenant_a.org.pk, photo_id=photo.pk) == "ready"
    listed = client.get(photos_url(event)).json()["results"][0]
    assert listed["preview_url"].endswith(".jpg") and listed["thumbnail_url"].endswith(".jpg")


def test_a_replayed_api_upload_stores_nothing(recorded, tenant_a, member_client):
    # given: an upload that completed under a key
    event = EventFactory(tenant=tenant_a.org)
    client, _ = member_client(tenant_a.org, "photographer")
    key = str(uuid.uuid4())
    payload = image_bytes(800, 600)

    def upload(data: bytes = payload) -> Any:
        image = SimpleUploadedFile("IMG_0001.JPG", data, content_type="image/jpeg")
        return post(client, photos_url(event), {"image": image}, multipart=True, key=key)

    first = upload()
    # when: the client retries with the same file, then (by mistake) with another file
    retry = upload()
    other = upload(image_bytes(600, 800))
    # then: a replay and a 422, and neither stored an original
    assert first.status_code == 201, first.content
    assert retry.status_code == 201 and retry["Idempotent-Replayed"] == "true" and retry.content == first.content
    assert other.status_code == 422
    assert len(recorded.original_writes()) == 1
    assert recorded.originals_of(tenant_id=tenant_a.org.pk, event_id=event.pk) == [recorded.writes[0][0]]


def test_an_upload_whose_key_completed_after_the_look_up_deletes_what_it_stored(
    recorded, tenant_a, member_client, monkeypatch
):
    # given: an upload that completed under a key, and a retry whose look-up of the key ran just
    # before that completion committed (it sees no outcome)
    event = EventFactory(tenant=tenant_a.org)
    client, _ = member_client(tenant_a.org, "photographer")
    key = str(uuid.uuid4())
    payload = image_bytes(800, 600)

    def upload() -> Any:
        image = SimpleUploadedFile("IMG_0001.JPG", payload, content_type="image/jpeg")
        return post(client, photos_url(event), {"image": image}, multipart=True, key=key)

    first = upload()
    monkeypatch.setattr("apps.catalog.apis.idempotency_key_find", lambda **_: None)
    # when: the retry stores its original, then the protocol replays the completed key
    retry = upload()
    # then: the replay answers, and the retry's original is deleted once its transaction ended
    assert first.status_code == 201 and retry["Idempotent-Replayed"] == "true"
    (kept, _), (extra, extra_in_transaction) = recorded.original_writes()
    assert extra_in_transaction is False
    assert (extra, False) in recorded.deletes
    assert recorded.originals_of(tenant_id=tenant_a.org.pk, event_id=event.pk) == [kept]


def test_an_upload_while_its_key_is_in_flight_gets_409_and_keeps_no_original(
    recorded, tenant_a, member_client, runtime_conn
):
    # given: another request holds the key (its transaction holds the key's advisory lock)
    event = EventFactory(tenant=tenant_a.org)
    client, photographer = member_client(tenant_a.org, "photographer")
    key = str(uuid.uuid4())
    lock = protocol.lock_id(tenant_id=tenant_a.org.pk, caller=f"user:{photographer.pk}", key=key)
    runtime_conn.execute("SELECT pg_advisory_xact_lock(%s)", [lock])
    # when: the same key is sent meanwhile
    response = post(client, photos_url(event), {"image": jpeg_upload()}, multipart=True, key=key)
    runtime_conn.rollback()
    # then: 409 with Retry-After; it had stored its original (outside the transaction) and then
    # deleted it, so the event holds no file and no photo
    assert response.status_code == 409 and response["Retry-After"]
    assert [inside for _, inside in recorded.original_writes()] == [False]
    assert recorded.originals_of(tenant_id=tenant_a.org.pk, event_id=event.pk) == []
    with tenant_context(tenant_a.org.pk):
        assert not Photo.objects.filter(event=event).exists()
    # and: the key is free, so the retry uploads
    again = post(client, photos_url(event), {"image": jpeg_upload()}, multipart=True, key=key)
    assert again.status_code == 201, again.content


@pytest.mark.parametrize(
    ("case", "status"),
    [("not an image", 400), ("photographer not in the studio", 400), ("no such event", 404)],
)
def test_a_refused_api_upload_stores_nothing_and_writes_nothing(recorded, tenant_a, member_client, case, status):
    # given: an owner and one of three refusals
    event = EventFactory(tenant=tenant_a.org)
    client, _ = member_client(tenant_a.org, "owner")
    _, staff = member_client(tenant_a.org, "staff")
    data: dict[str, Any] = {"image": jpeg_upload()}
    url = photos_url(event)
    if case == "not an image":
        data["image"] = SimpleUploadedFile("notes.jpg", b"not an image", content_type="image/jpeg")
    elif case == "photographer not in the studio":
        data["photographer_id"] = staff.pk
    else:
        url = f"/api/v1/events/{event.pk + 1000}/photos"
    key = str(uuid.uuid4())
    # when: it is uploaded
    response = post(client, url, data, multipart=True, key=key)
    # then: a problem, no file, no photo, no key (the same key may be used again)
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert recorded.writes == []
    with tenant_context(tenant_a.org.pk):
        assert not Photo.objects.exists()
    fixed = post(client, photos_url(event), {"image": jpeg_upload()}, multipart=True, key=key)
    assert fixed.status_code == 201


# --- the services ---------------------------------------------------------------------------


def test_storing_an_original_refuses_inside_a_transaction(recorded, tenant_a):
    event = EventFactory(tenant=tenant_a.org)
    data = image_bytes(64, 48)
    for store in (photo_original_store, photo_upload):
        with transaction.atomic(), pytest.raises(TransactionManagementError):
            store(
                tenant_id=tenant_a.org.pk,
                event_id=event.pk,
                uploaded_by=tenant_a.owner,
                image=io.BytesIO(data),
                image_size=len(data),
            )
    assert recorded.writes == []


def test_photo_upload_deletes_its_original_when_the_rows_fail(recorded, tenant_a, monkeypatch):
    # given: a database failure while the photo's rows are written
    event = EventFactory(tenant=tenant_a.org)
    data = image_bytes(64, 48)

    def failing_enqueue(**_: Any) -> None:
        raise IntegrityError("simulated")

    monkeypatch.setattr(uploads, "dropin_job_enqueue", failing_enqueue)
    # when: a photo is uploaded in one call
    with pytest.raises(IntegrityError):
        photo_upload(
            tenant_id=tenant_a.org.pk,
            event_id=event.pk,
            uploaded_by=tenant_a.owner,
            image=io.BytesIO(data),
            image_size=len(data),
        )
    # then: its original was stored outside the transaction, and deleted after the rollback
    [(name, inside)] = recorded.original_writes()
    assert inside is False and recorded.deletes == [(name, False)]
    assert recorded.originals_of(tenant_id=tenant_a.org.pk, event_id=event.pk) == []


def test_discarding_keeps_an_original_that_a_committed_photo_names(recorded, tenant_a):
    # given: two stored originals, one of which became a committed photo
    event = EventFactory(tenant=tenant_a.org)
    data = image_bytes(64, 48)
    used, unused = (
        photo_original_store(
            tenant_id=tenant_a.org.pk,
            event_id=event.pk,
            uploaded_by=tenant_a.owner,
            image=io.BytesIO(data),
            image_size=len(data),
        )
        for _ in range(2)
    )
    with transaction.atomic(durable=True):
        photo = photo_create(tenant_id=tenant_a.org.pk, uploaded_by=tenant_a.owner, stored=used)
    # when: both are discarded (as a caller unsure whether its transaction committed would)
    deleted = photo_originals_discard(stored=[used, unused])
    # then: only the unused one is deleted
    assert deleted == 1
    assert recorded.originals_of(tenant_id=tenant_a.org.pk, event_id=event.pk) == [photo.original.name]
    # and: discarding refuses inside a transaction (it would not see what commits)
    with transaction.atomic(), pytest.raises(TransactionManagementError):
        photo_originals_discard(stored=[unused])


def test_an_original_that_could_not_be_discarded_is_left_to_the_orphan_sweep(recorded, tenant_a, monkeypatch):
    # given: a stored original whose photo never committed, and a storage refusing deletes
    event = EventFactory(tenant=tenant_a.org)
    data = image_bytes(64, 48)
    stored = photo_original_store(
        tenant_id=tenant_a.org.pk,
        event_id=event.pk,
        uploaded_by=tenant_a.owner,
        image=io.BytesIO(data),
        image_size=len(data),
    )

    def refuse(name: str) -> None:
        raise OSError("storage unavailable")

    with monkeypatch.context() as patched:
        patched.setattr(recorded, "delete", refuse)
        # when: the uploader discards it
        assert photo_originals_discard(stored=[stored]) == 0
    # then: no error reached the caller, the file is still there, and the sweep deletes it
    assert recorded.originals_of(tenant_id=tenant_a.org.pk, event_id=event.pk) == [stored.name]
    report = originals_sweep_orphans(older_than=timezone.now() + timedelta(seconds=1))
    assert report.deleted == 1
    assert recorded.originals_of(tenant_id=tenant_a.org.pk, event_id=event.pk) == []
