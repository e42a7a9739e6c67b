"""Find-me refuses what would cost the server before spending it: a selfie whose pixel count is a
decompression bomb is never decoded, and an oversize upload is refused before its body is read
(CSRF is still enforced on the search). Only searches that reach the face backend spend the
shopper's budget, and a shopper who spent it is refused before the upload is read."""

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
from apps.dropin.faces.fake import fake_face_image
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


def selfie_post(browser: Client, tenant: Any, event: Event, image: bytes, name: str = "me.png", **fields: str) -> Any:
    upload = SimpleUploadedFile(name, image, "application/octet-stream")
    return browser.post(path_of(tenant, event), {"image": upload, **fields})


def gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="GIF")
    return buffer.getvalue()


def test_uploads_refused_before_the_face_search_do_not_spend_the_budget(
    tenant_a: Any, event: Event, settings: Any
) -> None:
    # given: two searches a minute per session, three per client address, and a 2 KB file limit
    settings.SHOP_FINDME_SESSION_RATE = "2/min"
    settings.SHOP_FINDME_ADDRESS_RATE = "3/min"
    settings.SHOP_FINDME_MAX_BYTES = 2_000
    selfie = fake_face_image(["ann"])
    assert len(selfie) < 2_000
    browser = Client()
    # when: the shopper picks every kind of wrong file first
    refused = [
        browser.post(path_of(tenant_a, event), {}).status_code,  # no file
        selfie_post(browser, tenant_a, event, b"this is not an image").status_code,
        selfie_post(browser, tenant_a, event, gif(), "me.gif").status_code,  # a readable image of the wrong type
        selfie_post(browser, tenant_a, event, png_claiming(7_000, 7_000)).status_code,  # over the pixel limit
        selfie_post(browser, tenant_a, event, selfie + b"\0" * 3_000).status_code,  # over the size limit
        selfie_post(browser, tenant_a, event, b"\0" * 200_000).status_code,  # declared over the size limit
    ]
    # then: each is refused for what it is, not for the rate
    assert refused == [400, 422, 422, 422, 413, 413]
    # and: the session still has its two searches, the third is refused
    searches = [selfie_post(browser, tenant_a, event, selfie).status_code for _ in range(3)]
    assert searches == [200, 200, 429]
    # and: the client address had spent two of its three: one more session searches, then none
    assert selfie_post(Client(), tenant_a, event, selfie).status_code == 200
    assert selfie_post(Client(), tenant_a, event, selfie).status_code == 429


def test_a_selfie_the_face_backend_rejects_spends_the_budget(tenant_a: Any, event: Event, settings: Any) -> None:
    # given: one search a minute per session
    settings.SHOP_FINDME_SESSION_RATE = "1/min"
    browser = Client()
    # when: a readable selfie without a face reaches the face backend, then a good one is sent
    assert selfie_post(browser, tenant_a, event, fake_face_image([])).status_code == 422
    # then: the backend's work was counted
    assert selfie_post(browser, tenant_a, event, fake_face_image(["ann"])).status_code == 429


def test_a_shopper_over_the_budget_is_refused_before_the_upload_is_read(
    tenant_a: Any, event: Event, settings: Any, parses: list[int]
) -> None:
    # given: one search a minute per session, spent by a browser enforcing CSRF as a real one does
    settings.SHOP_FINDME_SESSION_RATE = "1/min"
    browser = Client(enforce_csrf_checks=True)
    assert browser.get(path_of(tenant_a, event)).status_code == 200
    token = browser.cookies["csrftoken"].value
    selfie = fake_face_image(["ann"])
    assert selfie_post(browser, tenant_a, event, selfie, csrfmiddlewaretoken=token).status_code == 200
    parses.clear()
    # when: it searches again
    limited = selfie_post(browser, tenant_a, event, selfie, csrfmiddlewaretoken=token)
    # then: the wait page (429, Retry-After), and the upload was never parsed
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) >= 1
    assert "Too many searches" in limited.content.decode()
    assert parses == []
