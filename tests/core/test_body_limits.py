"""Request bodies are held to DARKROOM_MAX_BODY_BYTES on every path but the upload and selfie
views (apps/core/middleware.py, LARGE_BODY_VIEWS), and a body over its limit is refused with 413
before anything reads it: the sign-in page, the cart, an upload sent without a credential. A body
sent without Content-Length is read up to the limit and no further. Uploads keep their limit."""

from __future__ import annotations

import io
import json
import os
import sys
import uuid
from typing import Any

import pytest
from django.contrib.sessions.models import Session
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from PIL import Image
from rest_framework.test import APIClient

from apps.catalog.models import Event, Photo
from apps.tenancy.context import tenant_context
from tests.factories.catalog import EventFactory
from tests.factories.commerce import Shop
from tests.fixtures import TenantBundle
from tests.web.shop.conftest import shop  # noqa: F401 - fixture
from tests.web.studio.conftest import StudioPeople, form_nonce_on, signed_in, studio  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

MiB = 2**20


class CountingInput(io.BytesIO):
    """The server's request stream, counting what the application reads from it."""

    taken = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.taken += len(data)
        return data


def wsgi_post(
    path: str,
    body: bytes,
    *,
    content_type: str = MULTIPART_CONTENT,
    declare_length: bool = True,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes, CountingInput]:
    """POST through Django's real WSGI handler (every middleware), as gunicorn hands it over: with
    Content-Length, or (declare_length=False) chunked, de-chunked and terminated."""
    stream = CountingInput(body)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": content_type,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": stream,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if declare_length:
        environ["CONTENT_LENGTH"] = str(len(body))
    else:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        environ["wsgi.input_terminated"] = True
    for name, value in (headers or {}).items():
        environ[f"HTTP_{name.upper().replace('-', '_')}"] = value
    captured: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        captured["status"] = int(status.split()[0])
        captured["headers"] = dict(response_headers)

    # As Django's test client does: the test's own connection (and transaction) stays open.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        chunks = WSGIHandler()(environ, start_response)
        try:
            content = b"".join(chunks)
        finally:
            chunks.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return captured["status"], captured["headers"], content, stream


def multipart(size: int, **fields: str) -> bytes:
    """A form of `fields` and one file of `size` bytes."""
    upload = SimpleUploadedFile("big.jpg", b"\xff" * size, content_type="image/jpeg")
    return encode_multipart(BOUNDARY, {**fields, "image": upload})


@pytest.mark.parametrize("declared", ["²", "①", "٣"])
def test_a_content_length_of_digits_that_are_not_ascii_is_400(declared: str) -> None:
    # when: a body is posted with a Content-Length Python calls digits but int() refuses or misreads
    response = Client().post("/studio/login/", data="x", content_type="text/plain", CONTENT_LENGTH=declared)
    # then: a 400 problem, not a 500
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"


def test_a_large_anonymous_post_to_the_sign_in_page_is_413_unread() -> None:
    # given: a 2 MiB form, twice the small limit, for the sign-in page
    body = multipart(2 * MiB, username="someone", password="x")
    # when: a browser and an API client send it
    page = wsgi_post("/studio/login/", body, headers={"Accept": "text/html"})
    problem = wsgi_post("/studio/login/", body)
    # then: 413 each time, a page for the browser and a problem for the client; nothing read
    status, headers, content, stream = page
    assert status == 413 and headers["Content-Type"].startswith("text/html") and stream.taken == 0
    status, headers, content, stream = problem
    assert status == 413 and headers["Content-Type"] == "application/problem+json" and stream.taken == 0
    assert json.loads(content)["type"] == "/problems/payload-too-large"


def test_a_large_anonymous_post_to_the_cart_is_413_unread_and_writes_nothing(shop: Shop) -> None:  # noqa: F811
    # given: no session yet
    sessions = Session.objects.count()
    # when: a 2 MiB form is posted to the shop's cart
    status, _, content, stream = wsgi_post(f"/s/{shop.org.slug}/cart/update", multipart(2 * MiB, product="1"))
    # then: a 413 problem; the body was not read, and no session (cart) was written
    assert status == 413 and stream.taken == 0
    assert json.loads(content)["status"] == 413
    assert Session.objects.count() == sessions


def test_a_body_without_content_length_is_read_up_to_the_limit_and_no_further(
    shop: Shop,  # noqa: F811
    settings: Any,
) -> None:
    # when: a 5 MiB form is sent chunked (no Content-Length) to the cart
    status, _, _, stream = wsgi_post(
        f"/s/{shop.org.slug}/cart/update", multipart(5 * MiB, product="1"), declare_length=False
    )
    # then: 413 once the small limit is passed, with at most one byte past it read
    assert status == 413
    assert stream.taken == settings.API_MAX_BODY_BYTES + 1


def test_a_small_body_without_content_length_is_read_as_sent(tenant_a: TenantBundle) -> None:
    # when: an API client sends a small JSON body chunked (Django alone would read it as empty)
    body = json.dumps({"title": "Chunked Run", "date": "2026-06-01", "slug": "chunked-run"}).encode()
    status, _, content, _ = wsgi_post(
        "/api/v1/events",
        body,
        content_type="application/json",
        declare_length=False,
        headers={"Authorization": f"Bearer {tenant_a.api_key}", "Idempotency-Key": str(uuid.uuid4())},
    )
    # then: the event is made from it
    assert status == 201, content
    with tenant_context(tenant_a.org.pk):
        assert Event.objects.filter(slug="chunked-run").exists()


def test_an_upload_without_a_credential_is_413_before_the_csrf_check_parses_it(
    studio: StudioPeople,  # noqa: F811
    parses: list[int],
) -> None:
    # given: an anonymous browser holding a valid CSRF cookie and token (any sign-in page gives one)
    browser = Client(enforce_csrf_checks=True)
    assert browser.get("/studio/login/").status_code == 200
    token = browser.cookies["csrftoken"].value
    event = EventFactory(tenant=studio.org)
    big = SimpleUploadedFile("big.jpg", b"\xff" * 2 * MiB, content_type="image/jpeg")
    # when: it posts 2 MiB to the studio's upload
    response = browser.post(f"/studio/events/{event.pk}/photos", {"images": [big], "csrfmiddlewaretoken": token})
    # then: 413, and nothing parsed the body
    assert response.status_code == 413
    assert parses == []


@pytest.mark.parametrize("authorization", [None, "Bearer drk_not_a_key", "Basic c29tZW9uZTpwYXNz"])
def test_an_api_upload_without_a_live_key_is_413_unparsed(
    tenant_a: TenantBundle, parses: list[int], authorization: str | None
) -> None:
    event = EventFactory(tenant=tenant_a.org)
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    big = SimpleUploadedFile("big.jpg", b"\xff" * 2 * MiB, content_type="image/jpeg")
    response = client.post(
        f"/api/v1/events/{event.pk}/photos", {"image": big}, format="multipart", HTTP_IDEMPOTENCY_KEY="k-anon"
    )
    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"
    assert parses == []


def _noisy_png() -> bytes:
    """A noisy 1200x1000 PNG barely compresses: about 3.6 MB, over the small limit."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (1200, 1000), os.urandom(1200 * 1000 * 3)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.django_db(transaction=True, databases=["default", "owner"])
def test_the_studio_upload_still_takes_a_large_photo(studio: StudioPeople, settings: Any) -> None:  # noqa: F811
    # given: a photo several times the small limit
    photo = _noisy_png()
    assert len(photo) > 2 * settings.API_MAX_BODY_BYTES
    event = EventFactory(tenant=studio.org)
    client = signed_in(studio.photographer)
    action = f"/studio/events/{event.pk}/photos"
    nonce = form_nonce_on(client.get(f"/studio/events/{event.pk}/"), action)
    # when: the photographer uploads it
    response = client.post(
        action, {"nonce": nonce, "images": [SimpleUploadedFile("big.png", photo, content_type="image/png")]}
    )
    # then: it is kept
    assert response.status_code == 303, response.content
    with tenant_context(studio.org.pk):
        assert Photo.objects.filter(event=event).count() == 1


def test_a_selfie_over_the_small_limit_reaches_the_drop_in_page_and_one_over_its_own_is_413(
    settings: Any,
) -> None:
    path = "/attendee/not-a-real-token/drop-in"
    # when: a 2 MiB selfie (a phone's) and one over DROPIN_MAX_SELFIE_BYTES are sent
    phone = wsgi_post(path, multipart(2 * MiB, consent="yes"))
    huge = wsgi_post(path, multipart(settings.DROPIN_MAX_SELFIE_BYTES + 70 * 1024, consent="yes"))
    # then: the first reaches the page (which refuses the made-up link), the second is 413 unread
    assert phone[0] != 413
    assert huge[0] == 413 and huge[3].taken == 0


def test_a_selfie_through_the_api_needs_a_key_past_the_small_limit(tenant_a: TenantBundle) -> None:
    event = EventFactory(tenant=tenant_a.org)
    body = multipart(2 * MiB, email="ann@example.com", consent="true")
    path = f"/api/v1/events/{event.pk}/selfies"
    anonymous = wsgi_post(path, body, headers={"Idempotency-Key": str(uuid.uuid4())})
    keyed = wsgi_post(
        path, body, headers={"Idempotency-Key": str(uuid.uuid4()), "Authorization": f"Bearer {tenant_a.api_key}"}
    )
    assert anonymous[0] == 413 and anonymous[3].taken == 0
    assert keyed[0] != 413 and keyed[3].taken == len(body)
