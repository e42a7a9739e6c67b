"""Find-me refuses what would cost the server before spending it: a selfie whose pixel count is a
decompression bomb is never decoded, and an oversize upload is refused before its body is read
(CSRF is still enforced on the search)."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from apps.catalog.models import Event
from apps.web.shop.views import findme
from tests.web.shop.conftest import an_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def event(tenant_a: Any) -> Event:
    return an_event(tenant_a.org, slug="city-run", title="City Run")


def path_of(tenant: Any, event: Event) -> str:
    return f"/s/{tenant.org.slug}/{event.slug}/find-me"


def png_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes of valid PNG whose header claims `width` x `height` pixels (what a
    decompression bomb looks like before it is decoded)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    # IHDR: length(4) type(4) width(4) height(4) ... crc(4), right after the 8-byte signature
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def test_a_selfie_with_too_many_pixels_is_refused_without_being_decoded(
    tenant_a: Any, event: Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a tiny file that claims 49 megapixels, and a search that records being called
    searched: list[int] = []

    def search(**kwargs: Any) -> list[Any]:
        searched.append(1)
        return []

    monkeypatch.setattr(findme, "photos_find_by_selfie", search)
    bomb = png_claiming(7_000, 7_000)
    assert len(bomb) < 1_000
    # when: it is sent as a selfie
    response = Client().post(path_of(tenant_a, event), {"image": SimpleUploadedFile("me.png", bomb, "image/png")})
    # then: 422 with what to do, and the face search never saw it
    assert response.status_code == 422
    assert "at most 40 megapixels" in response.content.decode()
    assert searched == []


def test_an_oversize_upload_is_refused_before_its_body_is_parsed(
    tenant_a: Any, event: Event, settings: Any, parses: list[int]
) -> None:
    # given: a browser enforcing CSRF as a real one does, with the form's token
    settings.SHOP_FINDME_MAX_BYTES = 2_000
    browser = Client(enforce_csrf_checks=True)
    assert browser.get(path_of(tenant_a, event)).status_code == 200
    token = browser.cookies["csrftoken"].value
    # when: a file far over the limit is posted
    upload = SimpleUploadedFile("me.png", b"\0" * 200_000, "image/png")
    response = browser.post(path_of(tenant_a, event), {"image": upload, "csrfmiddlewaretoken": token})
    # then: 413, and the body was never parsed (not even by the CSRF check)
    assert response.status_code == 413
    assert parses == []


def test_a_search_without_the_csrf_token_is_refused(tenant_a: Any, event: Event) -> None:
    browser = Client(enforce_csrf_checks=True)
    upload = SimpleUploadedFile("me.png", png_claiming(10, 10), "image/png")
    assert browser.post(path_of(tenant_a, event), {"image": upload}).status_code == 403
