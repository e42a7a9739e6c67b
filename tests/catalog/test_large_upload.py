"""A camera-sized original (several MB) uploads through the idempotent API and replays."""

import io
import os
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from apps.catalog.models import Photo
from apps.tenancy.context import tenant_context
from tests.factories.catalog import EventFactory, image_bytes

pytestmark = pytest.mark.django_db(transaction=True)


def _camera_jpeg() -> bytes:
    # A noisy image barely compresses: a PNG of 1200x1000 random pixels is ~3.6 MB, well above
    # the 1 MiB limit for bodies held in memory.
    buffer = io.BytesIO()
    Image.frombytes("RGB", (1200, 1000), os.urandom(1200 * 1000 * 3)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_multi_megabyte_upload_is_accepted_and_replayed_by_key(tenant_a, member_client, settings):
    # given: an original larger than the in-memory body limit
    payload = _camera_jpeg()
    assert len(payload) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    event = EventFactory(tenant=tenant_a.org)
    client, _ = member_client(tenant_a.org, "photographer")
    url = f"/api/v1/events/{event.pk}/photos"
    key = str(uuid.uuid4())

    def upload():
        image = SimpleUploadedFile("IMG_4242.png", payload, content_type="image/png")
        return client.post(url, {"image": image}, format="multipart", HTTP_IDEMPOTENCY_KEY=key)

    # when: it is uploaded, then retried with the same key and the same file
    first, retry = upload(), upload()
    # then: one photo, and the retry is a replay of the first response
    assert first.status_code == 201, first.content
    assert retry.status_code == 201 and retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    with tenant_context(tenant_a.org.pk):
        assert Photo.objects.filter(event=event).count() == 1


def test_same_key_with_a_different_file_is_422(tenant_a, member_client):
    event = EventFactory(tenant=tenant_a.org)
    client, _ = member_client(tenant_a.org, "photographer")
    url = f"/api/v1/events/{event.pk}/photos"
    key = str(uuid.uuid4())
    first = SimpleUploadedFile("a.jpg", image_bytes(800, 600), content_type="image/jpeg")
    other = SimpleUploadedFile("a.jpg", image_bytes(600, 800), content_type="image/jpeg")
    assert client.post(url, {"image": first}, format="multipart", HTTP_IDEMPOTENCY_KEY=key).status_code == 201
    response = client.post(url, {"image": other}, format="multipart", HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 422


def test_upload_over_the_upload_cap_is_413(tenant_a, member_client, settings):
    settings.API_MAX_UPLOAD_BYTES = 2 * 1024 * 1024
    event = EventFactory(tenant=tenant_a.org)
    client, _ = member_client(tenant_a.org, "photographer")
    image = SimpleUploadedFile("big.png", _camera_jpeg(), content_type="image/png")
    response = client.post(
        f"/api/v1/events/{event.pk}/photos", {"image": image}, format="multipart", HTTP_IDEMPOTENCY_KEY="k-413"
    )
    assert response.status_code == 413
    with tenant_context(tenant_a.org.pk):
        assert Photo.objects.count() == 0
