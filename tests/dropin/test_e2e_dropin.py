"""Drop-in on the production path with the real local face backend (dlib): selfies posted to
the API → outbox → relay → a real Celery worker on the `dropin` queue enrols them; a photo
uploaded through the API → its job → the worker finds, matches and notifies; billed once."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import override_settings
from PIL import Image
from rest_framework.test import APIClient

from apps.dropin.models import AttendeeFace, DropInJob, FaceMatch
from apps.ledger.models import LedgerEvent
from apps.notifications.models import Notification
from apps.tenancy.context import system_context
from config.celery_app import app as celery_app
from tests.commerce.fixtures import outbox_idle, running_relay, wait_until
from tests.factories.tenancy import MembershipFactory, UserFactory
from tests.fixtures import purge_queues

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FIXTURES = Path(__file__).parent / "fixtures"
ASTRONAUT_HEAD = (95, 0, 345, 270)  # Eileen Collins' head in astronaut.png (see test_face_backends)
HOPPER_HEAD = (120, 40, 430, 380)


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def head(name: str, area: tuple[int, int, int, int]) -> Image.Image:
    return Image.open(FIXTURES / name).convert("RGB").crop(area)


@contextmanager
def dropin_worker() -> Iterator[None]:
    purge_queues()
    with start_worker(
        celery_app,
        pool="solo",
        perform_ping_check=False,
        shutdown_timeout=60,
        queues=["dropin", "default"],
        loglevel="WARNING",
    ):
        yield
    connection.close()
    purge_queues()


def faces_status() -> list[str]:
    with system_context("test: faces"):
        return sorted(AttendeeFace.objects.values_list("status", flat=True))


def job_status() -> str:
    with system_context("test: jobs"):
        return ",".join(DropInJob.objects.values_list("status", flat=True))


@override_settings(DROPIN_FACE_BACKEND="local", DROPIN_SEARCH_PRICE_MINOR=2)
def test_an_attendee_is_told_once_when_a_photo_of_them_is_uploaded(tenant_a: Any) -> None:
    from apps.tenancy.context import tenant_context
    from tests.factories.catalog import EventFactory

    with tenant_context(tenant_a.org.pk):
        event = EventFactory(tenant=tenant_a.org)
    api = tenant_a.client()
    photographer = APIClient()
    photographer.force_login(MembershipFactory(tenant=tenant_a.org, user=UserFactory(), role="photographer").user)
    with dropin_worker(), running_relay():
        # given: Eileen and Grace register their selfies
        for email, selfie in (
            ("eileen@example.com", head("astronaut.png", ASTRONAUT_HEAD)),
            ("grace@example.com", head("grace_hopper.jpg", HOPPER_HEAD)),
        ):
            response = api.post(
                f"/api/v1/events/{event.pk}/selfies",
                {"email": email, "consent": "true", "image": SimpleUploadedFile("me.jpg", jpeg(selfie))},
                format="multipart",
                HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
            )
            assert response.status_code == 202, response.content
        wait_until(lambda: faces_status() == ["enrolled", "enrolled"], timeout=120)
        # when: a photo showing Eileen (smaller, elsewhere in the frame) is uploaded
        scene = Image.new("RGB", (1200, 800), (118, 128, 140))
        eileen = head("astronaut.png", ASTRONAUT_HEAD)
        scene.paste(eileen.resize((200, 216)), (700, 250))
        upload = io.BytesIO(jpeg(scene))
        upload.name = "crowd.jpg"
        uploaded = photographer.post(
            f"/api/v1/events/{event.pk}/photos",
            {"image": upload},
            format="multipart",
            HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
        )
        assert uploaded.status_code == 201, uploaded.content
        wait_until(lambda: job_status() == "succeeded", timeout=120)
        wait_until(outbox_idle)
    photo_id = uploaded.json()["id"]
    # then: Eileen matched in that photo and told once; Grace not; one search billed once
    with system_context("test: results"):
        eileen_id = AttendeeFace.objects.get(attendee__email="eileen@example.com").attendee_id
        assert list(FaceMatch.objects.values_list("photo_id", "attendee_id")) == [(photo_id, eileen_id)]
        assert list(Notification.objects.filter(kind="new_photos").values_list("attendee_id", "dedupe_key")) == [
            (eileen_id, f"photo:{photo_id}")
        ]
        assert list(LedgerEvent.objects.filter(idempotency_key__startswith="dropin:").values_list("amount_minor")) == [
            (2,)
        ]
        assert all(face.selfie_image is None for face in AttendeeFace.objects.all())
    detail = api.get(f"/api/v1/photos/{photo_id}/dropin").json()
    assert (detail["status"], detail["faces"], detail["matches"], detail["searches"]) == ("succeeded", 1, 1, 1)
