"""Photos uploaded after the studio offered every photo of the event as a download get theirs at
upload, until the studio stops it: the service, the API (upload, offer, stop) and uploads racing
the offer (real threads and connections: one download per photo whichever commits first)."""

from __future__ import annotations

import importlib
import io
import threading
import time
import uuid
from typing import Any, cast

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction

from apps.catalog.downloads import (
    DOWNLOADS_FOR_NEW_PHOTOS_STARTED,
    DOWNLOADS_FOR_NEW_PHOTOS_STOPPED,
    DOWNLOADS_OFFERED,
    download_products_ensure,
    downloads_for_new_photos_stop,
)
from apps.catalog.models import Event, Photo, Product, ProductKind
from apps.catalog.products import Actor
from apps.catalog.uploads import photo_create, photo_original_store, photo_upload
from apps.tenancy.context import tenant_context
from apps.tenancy.models import AuditLog, User
from apps.tenancy.services import audit_record
from tests.catalog.conftest import post
from tests.factories.catalog import EventFactory, PhotoFactory, ProductFactory, image_bytes
from tests.fixtures import TenantBundle, backend_pid, waits_for_a_lock

# Uploads store originals outside any transaction, so these tests run outside the test case's.
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "owner"])

ACTOR = Actor(label="test")


def an_event_with_photos(org: Any, count: int) -> Event:
    with tenant_context(org.pk):
        event = cast(Event, EventFactory(tenant=org))
        for _ in range(count):
            PhotoFactory(event=event)
    return event


def upload(bundle: TenantBundle, event: Event) -> Photo:
    jpeg = image_bytes(64, 48)
    with tenant_context(bundle.org.pk):
        return photo_upload(
            tenant_id=bundle.org.pk,
            event_id=event.pk,
            uploaded_by=bundle.owner,
            image=io.BytesIO(jpeg),
            image_size=len(jpeg),
        )


def downloads(event: Event) -> dict[int, tuple[str, bool]]:
    with tenant_context(event.tenant_id):
        rows = Product.objects.filter(event=event, kind=ProductKind.DOWNLOAD)
        return {cast(int, p.photo_id): (p.sku, p.active) for p in rows}


def audits(event: Event, action: str) -> list[tuple[str, dict[str, Any]]]:
    with tenant_context(event.tenant_id):
        rows = AuditLog.objects.filter(action=action, target_id=str(event.pk)).order_by("pk")
        return [(a.actor_label, a.data) for a in rows]


def rule_of(event: Event) -> bool:
    with tenant_context(event.tenant_id):
        return Event.objects.values_list("downloads_for_new_photos", flat=True).get(pk=event.pk)


def test_a_photo_uploaded_after_every_photo_was_offered_gets_its_download(tenant_a: TenantBundle) -> None:
    # given: an event whose photos the studio offered as downloads
    event = an_event_with_photos(tenant_a.org, 2)
    assert download_products_ensure(tenant_id=tenant_a.org.pk, event_id=event.pk, actor=ACTOR).created == 2
    # when: another photo is uploaded
    photo = upload(tenant_a, event)
    # then: it is offered as a download too, at upload, as the offer names it; audited for its uploader
    assert downloads(event)[photo.pk] == (f"E{event.pk}-DOWNLOAD-P{photo.pk}", True)
    assert len(downloads(event)) == 3
    assert audits(event, DOWNLOADS_OFFERED) == [
        ("test", {"created": 2}),
        (f"user:{tenant_a.owner.pk}", {"created": 1, "photo_ids": [photo.pk], "rule": "downloads_for_new_photos"}),
    ]
    assert audits(event, DOWNLOADS_FOR_NEW_PHOTOS_STARTED) == [("test", {})] and rule_of(event) is True


def test_an_event_whose_photos_were_never_all_offered_offers_no_new_photo(tenant_a: TenantBundle) -> None:
    # given: an event that sells one photo as a download, added by hand
    event = an_event_with_photos(tenant_a.org, 1)
    with tenant_context(tenant_a.org.pk):
        ProductFactory(event=event, kind=ProductKind.DOWNLOAD, photo=Photo.objects.get(event=event))
    # when: a photo is uploaded
    photo = upload(tenant_a, event)
    # then: it gets no download: the studio never chose to sell every photo
    assert photo.pk not in downloads(event) and rule_of(event) is False


def test_stopping_keeps_the_downloads_and_offers_no_later_photo(tenant_a: TenantBundle) -> None:
    # given: an event whose photos were offered as downloads, one of them deactivated since
    event = an_event_with_photos(tenant_a.org, 2)
    download_products_ensure(tenant_id=tenant_a.org.pk, event_id=event.pk, actor=ACTOR)
    before = downloads(event)
    # when: the studio stops offering new photos, twice
    with transaction.atomic():
        assert downloads_for_new_photos_stop(tenant_id=tenant_a.org.pk, event_id=event.pk, actor=ACTOR) is True
    with transaction.atomic():
        assert downloads_for_new_photos_stop(tenant_id=tenant_a.org.pk, event_id=event.pk, actor=ACTOR) is False
    photo = upload(tenant_a, event)
    # then: the downloads made are kept, the new photo gets none, and the stop is audited once
    assert downloads(event) == before and photo.pk not in downloads(event)
    assert audits(event, DOWNLOADS_FOR_NEW_PHOTOS_STOPPED) == [("test", {})]
    # and: offering every photo again offers it, and photos uploaded from then on
    again = download_products_ensure(tenant_id=tenant_a.org.pk, event_id=event.pk, actor=ACTOR)
    assert again.created == 1 and upload(tenant_a, event).pk in downloads(event)


def test_a_new_photo_whose_download_sku_is_taken_is_uploaded_without_it(tenant_a: TenantBundle) -> None:
    # given: an event that offers new photos as downloads, and a print already sold under the SKU
    # the next photo's download would get (in lower case: SKUs are unique whatever their case)
    event = an_event_with_photos(tenant_a.org, 1)
    download_products_ensure(tenant_id=tenant_a.org.pk, event_id=event.pk, actor=ACTOR)
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(pg_get_serial_sequence('catalog_photo', 'id'))")
        next_id = int(cursor.fetchone()[0]) + 1
    with tenant_context(tenant_a.org.pk):
        ProductFactory(
            event=event,
            kind=ProductKind.PRINT,
            photo=Photo.objects.get(event=event),
            size="A4",
            sku=f"e{event.pk}-download-p{next_id}",
        )
    # when: the photo is uploaded
    photo = upload(tenant_a, event)
    # then: the upload is not refused; the photo has no download (its SKU is another product's)
    assert photo.pk == next_id and photo.pk not in downloads(event)


def test_the_api_offer_turns_the_rule_on_and_an_api_upload_follows_it(
    tenant_a: TenantBundle, member_client: Any
) -> None:
    # given: an event with a photo, offered through the API
    event = an_event_with_photos(tenant_a.org, 1)
    api = tenant_a.client()
    offered = post(api, f"/api/v1/events/{event.pk}/products/downloads")
    assert offered.status_code == 200
    assert offered.json() == {"created": 1, "not_offered": [], "downloads_for_new_photos": True}
    assert api.get(f"/api/v1/events/{event.pk}").json()["downloads_for_new_photos"] is True
    # when: a photographer uploads a photo through the API
    photographer, _ = member_client(tenant_a.org, "photographer")
    uploaded = post(
        photographer,
        f"/api/v1/events/{event.pk}/photos",
        {"image": SimpleUploadedFile("IMG.JPG", image_bytes(64, 48), content_type="image/jpeg")},
        multipart=True,
    )
    # then: its download exists and is listed with the event's products
    assert uploaded.status_code == 201, uploaded.content
    photo_id = uploaded.json()["id"]
    assert photo_id in downloads(event)
    listed = api.get(f"/api/v1/events/{event.pk}/products").json()["results"]
    assert [p["sku"] for p in listed if p["photo_id"] == photo_id] == [f"E{event.pk}-DOWNLOAD-P{photo_id}"]


def test_the_api_stops_offering_new_photos_once_per_key(tenant_a: TenantBundle, member_client: Any) -> None:
    # given: an event whose photos were offered
    event = an_event_with_photos(tenant_a.org, 1)
    download_products_ensure(tenant_id=tenant_a.org.pk, event_id=event.pk, actor=ACTOR)
    api = tenant_a.client()
    url = f"/api/v1/events/{event.pk}/products/downloads/stop"
    key = str(uuid.uuid4())
    # when: the API stops it, the request retried with its key, then sent again with a new key
    first, retried = post(api, url, key=key), post(api, url, key=key)
    later = post(api, url)
    # then: 200 each time, one audit row, and the event says it no longer offers new photos
    assert first.status_code == retried.status_code == later.status_code == 200
    assert first.json() == later.json() == {"downloads_for_new_photos": False}
    assert retried["Idempotent-Replayed"] == "true"
    assert len(audits(event, DOWNLOADS_FOR_NEW_PHOTOS_STOPPED)) == 1
    assert api.get(f"/api/v1/events/{event.pk}").json()["downloads_for_new_photos"] is False
    # and: only the roles that write the catalog may; an unknown event is a 404
    photographer, _ = member_client(tenant_a.org, "photographer")
    assert post(photographer, url).status_code == 403
    assert post(api, f"/api/v1/events/{10**12}/products/downloads/stop").status_code == 404


# --- uploads racing the offer -------------------------------------------------------------


def _stored(bundle: TenantBundle, event: Event) -> Any:
    jpeg = image_bytes(64, 48)
    with tenant_context(bundle.org.pk):
        return photo_original_store(
            tenant_id=bundle.org.pk,
            event_id=event.pk,
            uploaded_by=bundle.owner,
            image=io.BytesIO(jpeg),
            image_size=len(jpeg),
        )


def _wait_until_blocked_or_done(pids: list[int], thread: threading.Thread, timeout: float = 60.0) -> None:
    """Until the thread's backend waits for a lock, or the thread ended without waiting."""
    deadline = time.monotonic() + timeout
    while thread.is_alive() and not (pids and waits_for_a_lock(pids[0])):
        assert time.monotonic() < deadline, "neither blocked nor done"
        time.sleep(0.02)


def _in_thread(work: Any, pids: list[int], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            pids.append(backend_pid())
            work()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_an_offer_made_while_an_upload_commits_offers_the_uploaded_photo(tenant_a: TenantBundle) -> None:
    # given: an upload whose photo row is written but not committed (the event offers no new photo yet)
    event = an_event_with_photos(tenant_a.org, 1)
    stored = _stored(tenant_a, event)
    org_id, owner = tenant_a.org.pk, tenant_a.owner
    written, commit = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    photo_ids: list[int] = []

    def uploader() -> None:
        with tenant_context(org_id), transaction.atomic(durable=True):
            photo_ids.append(photo_create(tenant_id=org_id, uploaded_by=cast(User, owner), stored=stored).pk)
            written.set()
            assert commit.wait(60)

    def offer() -> None:
        with transaction.atomic(durable=True):
            download_products_ensure(tenant_id=org_id, event_id=event.pk, actor=ACTOR)

    uploading = _in_thread(uploader, [], errors)
    assert written.wait(30), errors
    # when: the studio offers every photo meanwhile, then the upload commits
    offer_pids: list[int] = []
    offering = _in_thread(offer, offer_pids, errors)
    try:
        _wait_until_blocked_or_done(offer_pids, offering)
    finally:
        commit.set()
        uploading.join(60)
        offering.join(60)
    # then: the uploaded photo has exactly one download, whichever saw it
    assert errors == []
    assert set(downloads(event)) == {*_photo_ids(event)} and photo_ids[0] in downloads(event)


def test_an_upload_made_while_the_offer_commits_gets_its_download(tenant_a: TenantBundle) -> None:
    # given: the studio's offer of every photo, done but not committed
    event = an_event_with_photos(tenant_a.org, 1)
    stored = _stored(tenant_a, event)
    org_id, owner = tenant_a.org.pk, tenant_a.owner
    offered, commit = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def offer() -> None:
        with transaction.atomic(durable=True):
            download_products_ensure(tenant_id=org_id, event_id=event.pk, actor=ACTOR)
            offered.set()
            assert commit.wait(60)

    def uploader() -> None:
        with tenant_context(org_id), transaction.atomic(durable=True):
            photo_create(tenant_id=org_id, uploaded_by=cast(User, owner), stored=stored)

    offering = _in_thread(offer, [], errors)
    assert offered.wait(30), errors
    # when: a photo is uploaded meanwhile, then the offer commits
    upload_pids: list[int] = []
    uploading = _in_thread(uploader, upload_pids, errors)
    try:
        _wait_until_blocked_or_done(upload_pids, uploading)
    finally:
        commit.set()
        offering.join(60)
        uploading.join(60)
    # then: every photo, the new one too, has exactly one download
    assert errors == []
    assert set(downloads(event)) == set(_photo_ids(event)) and len(_photo_ids(event)) == 2


def _photo_ids(event: Event) -> list[int]:
    with tenant_context(event.tenant_id):
        return list(Photo.objects.filter(event=event).values_list("pk", flat=True))


# --- events offered before the rule was remembered ----------------------------------------

REMEMBERING = importlib.import_module("apps.catalog.migrations.0009_event_downloads_for_new_photos")


def test_the_migration_turns_the_rule_on_for_events_whose_photos_were_offered(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    # given: two studios' events whose photos were offered before the rule was remembered (an
    # offer's audit row, the rule off), and events never offered (one with another audit row)
    offered = [an_event_with_photos(bundle.org, 1) for bundle in (tenant_a, tenant_b)]
    never = an_event_with_photos(tenant_a.org, 1)
    edited = an_event_with_photos(tenant_b.org, 1)
    for event, action in [
        (offered[0], DOWNLOADS_OFFERED),
        (offered[1], DOWNLOADS_OFFERED),
        (edited, "catalog.event_updated"),
    ]:
        with tenant_context(event.tenant_id):
            audit_record(
                action=action, tenant_id=event.tenant_id, target_type="event", target_id=str(event.pk), data={}
            )
    # when: the migration's step runs (in its transaction, as `migrate` runs it)
    with transaction.atomic():
        remembered = REMEMBERING.remember_offers_on(connection)
    # then: the offered events offer new photos; the others do not
    assert remembered == 2
    assert [rule_of(event) for event in (*offered, never, edited)] == [True, True, False, False]
    # and: a photo uploaded to an offered event now gets its download
    assert upload(tenant_a, offered[0]).pk in downloads(offered[0])
