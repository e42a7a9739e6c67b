"""The body-size limits hold under ASGI too (config/asgi.py): Django's ASGI handler reads a body
whole before any middleware, so the app is wrapped in BodyLimitASGI, which bounds that read."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from django.test.client import BOUNDARY

from apps.catalog.models import Event
from apps.core.asgi_body_limit import BodyLimitASGI, Message
from apps.tenancy.context import tenant_context
from apps.tenancy.models import ApiKey, User
from apps.tenancy.services import api_key_revoke
from config.asgi import application
from tests.core.test_body_limits import MiB, multipart
from tests.factories.catalog import EventFactory
from tests.factories.commerce import Shop
from tests.fixtures import TenantBundle
from tests.web.shop.conftest import shop  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

CHUNK = 64 * 1024


class Served:
    """What one request through the ASGI app gave back, and how many body bytes it pulled."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.taken = 0


def asgi_post(
    path: str,
    body: bytes,
    *,
    declare_length: bool = True,
    content_type: str = "multipart/form-data; boundary=BoUnDaRyStRiNg",
    headers: dict[str, str | bytes] | None = None,
    app: Any = application,
) -> Served:
    """POST through config/asgi.py's application as an ASGI server would: the body in 64 KiB
    messages, pulled one at a time; after it, the disconnect comes only once the response is sent."""
    served = Served()
    sent: list[bytes] = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)] or [b""]
    raw_headers = [(b"content-type", content_type.encode()), (b"host", b"testserver")]
    raw_headers.append(
        (b"content-length", str(len(body)).encode()) if declare_length else (b"transfer-encoding", b"chunked")
    )
    raw_headers += [
        (name.lower().encode(), value if isinstance(value, bytes) else value.encode())
        for name, value in (headers or {}).items()
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }

    async def run() -> None:
        done = asyncio.Event()
        position = 0

        async def receive() -> Message:
            nonlocal position
            if position < len(sent):
                chunk = sent[position]
                position += 1
                served.taken += len(chunk)
                return {"type": "http.request", "body": chunk, "more_body": position < len(sent)}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                served.status = message["status"]
                served.headers = {k.decode(): v.decode() for k, v in message["headers"]}
            elif message["type"] == "http.response.body":
                served.body += message.get("body", b"")
                if not message.get("more_body", False):
                    done.set()

        await app(scope, receive, send)

    # As Django's test client does: the test's own connection (and transaction) stays open.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        async_to_sync(run)()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return served


def test_a_declared_oversize_body_is_413_and_never_read() -> None:
    # given: a 2 MiB form for the sign-in page, twice the small limit
    body = multipart(2 * MiB, username="someone", password="x")
    # when: a browser and an API client send it with its Content-Length
    page = asgi_post("/studio/login/", body, headers={"Accept": "text/html"})
    problem = asgi_post("/studio/login/", body)
    # then: 413 each time (a page, a problem), and the app pulled no byte of it
    assert page.status == 413 and page.headers["Content-Type"].startswith("text/html") and page.taken == 0
    assert problem.status == 413 and problem.headers["Content-Type"] == "application/problem+json"
    assert problem.taken == 0 and json.loads(problem.body)["type"] == "/problems/payload-too-large"


def test_a_content_length_of_digits_that_are_not_ascii_is_400() -> None:
    # given: a Content-Length of "²" (byte 0xB2, which latin-1 reads as a character Python calls a digit)
    # when: it is posted
    served = asgi_post("/studio/login/", b"x", declare_length=False, headers={"content-length": b"\xb2"})
    # then: a 400 problem, not a crash, and nothing read
    assert served.status == 400 and served.taken == 0


def test_a_chunked_body_is_pulled_up_to_the_small_limit_and_no_further(shop: Shop, settings: Any) -> None:  # noqa: F811
    # when: a 5 MiB form is sent chunked (no Content-Length) to the shop's cart
    served = asgi_post(f"/s/{shop.org.slug}/cart/update", multipart(5 * MiB, product="1"), declare_length=False)
    # then: 413; the app pulled messages only until the small limit was passed
    assert served.status == 413
    assert settings.API_MAX_BODY_BYTES < served.taken <= settings.API_MAX_BODY_BYTES + CHUNK


def test_a_small_chunked_body_is_taken_under_asgi(tenant_a: TenantBundle) -> None:
    # when: an API client sends a small JSON body chunked (the middleware used to answer 411 here)
    body = json.dumps({"title": "Chunked Asgi", "date": "2026-06-01", "slug": "chunked-asgi"}).encode()
    served = asgi_post(
        "/api/v1/events",
        body,
        declare_length=False,
        content_type="application/json",
        headers={"Authorization": f"Bearer {tenant_a.api_key}", "Idempotency-Key": str(uuid.uuid4())},
    )
    # then: the event is made from it
    assert served.status == 201, served.body
    with tenant_context(tenant_a.org.pk):
        assert Event.objects.filter(slug="chunked-asgi").exists()


def signed_in_cookie(user: User) -> str:
    """The session cookie of `user`, signed in."""
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


@pytest.mark.parametrize(
    "credential, live",
    [
        ("api key", True),
        ("session", True),
        ("none", False),
        ("forged api key", False),
        ("revoked api key", False),
        ("forged session", False),
    ],
)
def test_an_upload_over_the_small_limit_is_read_whole_with_a_live_credential_and_not_at_all_without(
    tenant_a: TenantBundle, credential: str, live: bool
) -> None:
    # given: a 3 MiB multipart body for the photo upload (under the upload cap), which the API
    # takes past the small limit only from members
    event = EventFactory(tenant=tenant_a.org)
    body = multipart(3 * MiB)
    if credential == "revoked api key":
        with tenant_context(tenant_a.org.pk):
            api_key_revoke(tenant=tenant_a.org, api_key_id=ApiKey.objects.get(tenant=tenant_a.org).pk)
    headers = {
        "api key": {"Authorization": f"Bearer {tenant_a.api_key}"},
        "revoked api key": {"Authorization": f"Bearer {tenant_a.api_key}"},
        "forged api key": {"Authorization": "Bearer dk_forged_0000000000000000"},
        "session": {"Cookie": signed_in_cookie(tenant_a.owner)},
        "forged session": {"Cookie": f"{settings.SESSION_COOKIE_NAME}=forgedforgedforgedforgedforged12"},
        "none": {},
    }[credential]
    # when: it is sent with its Content-Length
    served = asgi_post(
        f"/api/v1/events/{event.pk}/photos",
        body,
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    # then: with a live key or session the app read all of it (the view judges the rest); with
    # none, or a forged or revoked one, 413 from its header and nothing read, as under WSGI
    if live:
        assert served.status != 413 and served.taken == len(body), served.body
    else:
        assert served.status == 413 and served.taken == 0


def test_a_body_longer_than_it_declared_is_cut_at_its_length() -> None:
    # given: an app that reads the whole body, wrapped
    received: list[bytes] = []

    async def reader(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.append(message["body"])
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    # when: a body that declares 10 bytes arrives with 300 KiB
    served = asgi_post(
        "/api/v1/events",
        b"y" * (300 * 1024),
        declare_length=False,
        headers={"content-length": "10"},
        app=BodyLimitASGI(reader),
    )
    # then: the app got exactly the 10 declared bytes, and pulled one message for them
    assert served.status == 204
    assert b"".join(received) == b"y" * 10
    assert served.taken == CHUNK
