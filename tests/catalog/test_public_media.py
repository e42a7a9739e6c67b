"""The public derivatives are served at their storage URL (the shop's thumbnails and previews
load), and nothing outside the public prefix ever is."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.test import Client

from apps.catalog.models import Photo
from apps.catalog.services import photo_generate_derivatives
from apps.catalog.storage import public_url
from apps.tenancy.context import tenant_context
from tests.factories.catalog import PhotoFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def photo(tenant_a: Any) -> Photo:
    """A 640x427 photo of a public event with its derivatives made."""
    made = PhotoFactory(event__tenant=tenant_a.org, image_width=640, image_height=427)
    assert photo_generate_derivatives(tenant_id=tenant_a.org.pk, photo_id=made.pk) == "ready"
    with tenant_context(tenant_a.org.pk):
        made.refresh_from_db()
    return made


def stored(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()


def test_the_gallerys_thumbnails_load_from_their_urls(tenant_a: Any, photo: Photo) -> None:
    # given: the shop's gallery page of the photo's event
    with tenant_context(tenant_a.org.pk):
        event_slug = photo.event.slug
    gallery = Client().get(f"/s/{tenant_a.org.slug}/{event_slug}/").content.decode()
    (src,) = re.findall(r'<img src="([^"]+)"', gallery)
    # when: the browser fetches the thumbnail it names
    response = Client().get(src)
    # then: the stored JPEG, cacheable for good (derivative names are never reused)
    assert src == public_url(photo.thumbnail.name)
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert b"".join(response.streaming_content) == stored(photo.thumbnail.name)
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"


def test_the_preview_loads_and_head_answers_too(photo: Photo) -> None:
    url = public_url(photo.preview.name)
    assert url is not None
    assert b"".join(Client().get(url).streaming_content) == stored(photo.preview.name)
    assert Client().head(url).status_code == 200
    assert Client().post(url).status_code == 405


@pytest.mark.parametrize(
    "path",
    [
        "/media/{original}",  # the private prefix is not routed at all
        "/media/public/../{original}",
        "/media/public/%2e%2e/{original}",
        "/media/public/previews/../../{original}",
        "/media/public//etc/passwd",
        "/media/public/no-such-file.jpg",
    ],
)
def test_nothing_outside_the_public_prefix_is_ever_served(photo: Photo, path: str) -> None:
    # given: the photo's original, which must only leave through a signed download
    original = photo.original.name
    assert original.startswith("private/") and default_storage.exists(original)
    # when / then: no path reaches it
    response = Client().get(path.format(original=original))
    assert response.status_code == 404
