"""Watermarked previews and thumbnails: real Pillow images, real storage API, real worker."""

from __future__ import annotations

import io
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image, ImageChops, ImageOps

from apps.catalog.models import Photo
from apps.catalog.services import photo_generate_derivatives
from apps.outbox.relay import relay_batch
from apps.tenancy.context import system_context, tenant_context
from config.celery_app import app as celery_app
from tasks.catalog import generate_derivatives
from tests.catalog.conftest import post
from tests.factories.catalog import EventFactory, PhotoFactory, image_bytes

# A pixel counts as "marked" when some channel moved by more than JPEG noise ever does.
MARK_THRESHOLD = 48


def open_stored(name: str) -> Image.Image:
    with default_storage.open(name, "rb") as handle:
        image = Image.open(io.BytesIO(handle.read()))
        image.load()
    return image


def changed_fraction(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    channels = [band.point(lambda v: 255 if v > MARK_THRESHOLD else 0) for band in diff.split()]
    mask = ImageChops.lighter(ImageChops.lighter(channels[0], channels[1]), channels[2])
    return mask.histogram()[255] / (a.width * a.height)


def clean_resize(photo: Photo, size: tuple[int, int]) -> Image.Image:
    """The original scaled to `size` the way the service scales it, without any watermark."""
    with default_storage.open(photo.original.name, "rb") as handle:
        original = ImageOps.exif_transpose(Image.open(io.BytesIO(handle.read()))).convert("RGB")
    original.thumbnail(size, Image.Resampling.LANCZOS)
    assert original.size == size
    return original


def stored_files(photo: Photo) -> dict[str, list[str]]:
    found = {}
    for kind in ("previews", "thumbnails"):
        directory = f"public/{kind}/t{photo.tenant_id}/e{photo.event_id}"
        found[kind] = sorted(default_storage.listdir(directory)[1]) if default_storage.exists(directory) else []
    return found


@pytest.mark.django_db
def test_preview_and_thumbnail_are_sized_and_visibly_watermarked(tenant_a):
    # given: a 2400x1600 landscape original
    photo = PhotoFactory(event__tenant=tenant_a.org)
    # when: derivatives are generated
    assert photo_generate_derivatives(tenant_id=tenant_a.org.pk, photo_id=photo.pk) == "ready"
    # then: the photo is ready, with a 1600 px preview and a 400 px thumbnail under the public prefix
    with tenant_context(tenant_a.org.pk):
        photo.refresh_from_db()
    assert photo.derivatives_status == "ready" and photo.derivatives_error == ""
    assert photo.preview.name.startswith(f"public/previews/t{tenant_a.org.pk}/e{photo.event_id}/")
    assert photo.thumbnail.name.startswith(f"public/thumbnails/t{tenant_a.org.pk}/e{photo.event_id}/")
    preview, thumbnail = open_stored(photo.preview.name), open_stored(photo.thumbnail.name)
    assert (preview.format, preview.size) == ("JPEG", (1600, 1067))
    assert (thumbnail.format, thumbnail.size) == ("JPEG", (400, 267))
    # and: the preview differs from the plainly resized original well beyond JPEG noise
    reference = clean_resize(photo, preview.size)
    reencoded = Image.open(io.BytesIO(_jpeg(reference)))
    assert changed_fraction(reference, reencoded) < 0.001  # compression alone changes ~nothing
    assert changed_fraction(reference, preview) > 0.03  # the tiled mark covers the image
    # and: so does the thumbnail (it is made from the marked preview)
    assert changed_fraction(clean_resize(photo, thumbnail.size), thumbnail) > 0.01


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("size", "preview", "thumbnail"),
    [((1200, 3000), (640, 1600), (160, 400)), ((300, 200), (300, 200), (300, 200))],
)
def test_derivatives_keep_aspect_and_never_upscale(tenant_a, size, preview, thumbnail):
    photo = PhotoFactory(event__tenant=tenant_a.org, image_width=size[0], image_height=size[1])
    photo_generate_derivatives(tenant_id=tenant_a.org.pk, photo_id=photo.pk)
    with tenant_context(tenant_a.org.pk):
        photo.refresh_from_db()
    assert open_stored(photo.preview.name).size == preview
    assert open_stored(photo.thumbnail.name).size == thumbnail


@pytest.mark.django_db
def test_derivatives_task_is_idempotent(tenant_a):
    # given: a photo whose derivatives were generated once through the task
    photo = PhotoFactory(event__tenant=tenant_a.org)
    message = {"message_id": "m-1", "payload": {"tenant_id": tenant_a.org.pk, "photo_id": photo.pk}}
    assert generate_derivatives.apply(kwargs=message).get() == "ready"
    with tenant_context(tenant_a.org.pk):
        photo.refresh_from_db()
    first_names = (photo.preview.name, photo.thumbnail.name)
    first_bytes = [default_storage.open(name).read() for name in first_names]
    # when: the task runs again (a redelivery) twice more
    for _ in range(2):
        assert generate_derivatives.apply(kwargs=message).get() == "ready"
    # then: same names, byte-identical files, and exactly one preview and one thumbnail stored
    with tenant_context(tenant_a.org.pk):
        photo.refresh_from_db()
    assert (photo.preview.name, photo.thumbnail.name) == first_names
    assert [default_storage.open(name).read() for name in first_names] == first_bytes
    assert stored_files(photo) == {
        "previews": [first_names[0].rsplit("/", 1)[1]],
        "thumbnails": [first_names[1].rsplit("/", 1)[1]],
    }


@pytest.mark.django_db
def test_undecodable_original_marks_the_photo_failed_without_derivatives(tenant_a):
    # given: a photo whose stored original is damaged
    photo = PhotoFactory(event__tenant=tenant_a.org)
    default_storage.delete(photo.original.name)
    default_storage.save(photo.original.name, ContentFile(image_bytes(400, 300)[:300]))
    # when: derivatives are generated / then: failed with a reason, and no files are written
    assert photo_generate_derivatives(tenant_id=tenant_a.org.pk, photo_id=photo.pk) == "failed"
    with tenant_context(tenant_a.org.pk):
        photo.refresh_from_db()
    assert photo.derivatives_status == "failed" and photo.derivatives_error
    assert (photo.preview.name, photo.thumbnail.name) == ("", "")
    assert stored_files(photo) == {"previews": [], "thumbnails": []}


@pytest.mark.django_db
def test_derivatives_of_an_unknown_or_other_tenants_photo_do_nothing(tenant_a, tenant_b):
    photo = PhotoFactory(event__tenant=tenant_a.org)
    assert photo_generate_derivatives(tenant_id=tenant_b.org.pk, photo_id=photo.pk) == "missing"
    assert photo_generate_derivatives(tenant_id=tenant_a.org.pk, photo_id=photo.pk + 10_000) == "missing"
    with tenant_context(tenant_a.org.pk):
        assert Photo.objects.get(pk=photo.pk).derivatives_status == "pending"


@pytest.fixture
def worker():
    with start_worker(
        celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=60, queues=["default"], loglevel="WARNING"
    ):
        yield


# `owner` named explicitly: tests/conftest.py adds it only to module-level transaction markers.
@pytest.mark.django_db(transaction=True, databases=["default", "owner"])
def test_upload_through_the_api_gets_derivatives_from_a_real_worker(worker, tenant_a, member_client):
    # given: an event and a signed-in photographer, and a Celery worker on the default queue
    event = EventFactory(tenant=tenant_a.org)
    client, _ = member_client(tenant_a.org, "photographer")
    upload = io.BytesIO(image_bytes(1800, 1200))
    upload.name = "finish-line.jpg"
    # when: the photo is uploaded (its outbox rows, the render and the drop-in job, commit with it)
    # and the relay publishes them
    response = post(client, f"/api/v1/events/{event.pk}/photos", {"image": upload}, multipart=True)
    assert response.status_code == 201, response.content
    with system_context("test: relay"):
        assert relay_batch(batch_size=10).published == 2
    # then: the worker makes it ready and the photo list shows its public derivative URLs
    deadline = time.monotonic() + 120  # a bound for a loaded machine: the loop ends once rendered
    status = "pending"
    while status == "pending" and time.monotonic() < deadline:
        time.sleep(0.1)
        with tenant_context(tenant_a.org.pk):
            status = Photo.objects.get(pk=response.json()["id"]).derivatives_status
    assert status == "ready"
    listed = client.get(f"/api/v1/events/{event.pk}/photos").json()["results"][0]
    assert listed["derivatives_status"] == "ready"
    assert listed["preview_url"].endswith(".jpg") and listed["thumbnail_url"].endswith(".jpg")
    with tenant_context(tenant_a.org.pk):
        photo = Photo.objects.get(pk=listed["id"])
    assert open_stored(photo.preview.name).size == (1600, 1067)


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85, optimize=True)
    return buffer.getvalue()


@pytest.mark.django_db(transaction=True)
def test_a_render_whose_message_the_broker_lost_is_asked_for_again_and_made(tenant_a):
    from datetime import timedelta

    from django.utils import timezone

    from apps.catalog.services import PHOTO_UPLOADED_TOPIC
    from apps.outbox.models import OutboxMessage
    from tasks.catalog import derivatives_requeue_stale

    # given: three pending photos: asked for 11 minutes ago (its message lost), asked for
    # 5 minutes ago, and one asked for long ago that is already ready
    lost, recent, done = (PhotoFactory(event__tenant=tenant_a.org) for _ in range(3))
    now = timezone.now()
    with system_context("test"):
        Photo.objects.filter(pk=lost.pk).update(derivatives_requested_at=now - timedelta(minutes=11))
        Photo.objects.filter(pk=recent.pk).update(derivatives_requested_at=now - timedelta(minutes=5))
        Photo.objects.filter(pk=done.pk).update(derivatives_requested_at=now - timedelta(hours=1))
    assert (
        generate_derivatives.apply(
            kwargs={"message_id": "m", "payload": {"tenant_id": tenant_a.org.pk, "photo_id": done.pk}}
        ).get()
        == "ready"
    )

    def requests() -> list[OutboxMessage]:
        with system_context("test"):
            return list(OutboxMessage.objects.filter(topic=PHOTO_UPLOADED_TOPIC, status=OutboxMessage.Status.PENDING))

    before = {m.id for m in requests()}
    # when: the beat sweep runs twice
    assert derivatives_requeue_stale() == 1
    assert derivatives_requeue_stale() == 0
    # then: one new render request, for the lost photo only, in its studio
    [message] = [m for m in requests() if m.id not in before]
    assert (message.tenant_id, message.payload["photo_id"]) == (tenant_a.org.pk, lost.pk)
    # and: the consumer makes it ready
    assert (
        generate_derivatives.apply(kwargs={"message_id": str(message.id), "payload": message.payload}).get() == "ready"
    )
    with tenant_context(tenant_a.org.pk):
        assert Photo.objects.get(pk=lost.pk).derivatives_status == "ready"
        assert Photo.objects.get(pk=recent.pk).derivatives_status == "pending"
