"""The body-size limits under ASGI, before Django reads the body.

Under WSGI, `BodySizeLimitMiddleware` refuses an oversize body before anything reads it. Django's
ASGI handler instead reads the whole body (to memory, then a temporary file) before any middleware
runs. `BodyLimitASGI` wraps that handler and holds what it may read to what the middleware
accepts, so a huge body is never read, whichever server runs the app:

* A declared Content-Length over the path's limit: Django gets an empty body, and the middleware
  answers 413 from the header, as under WSGI (the view's own page for a view that refuses itself).
* A body without Content-Length (chunked): Django gets at most the small limit plus one byte, and
  the middleware refuses one that reached it.
* A body longer than it declared is cut at its declared length.

The path's limit is the middleware's: `DARKROOM_MAX_BODY_BYTES`, or for a multipart body to a view
in LARGE_BODY_VIEWS that view's own. For a view that takes them only from members, that needs a
live credential, checked as the middleware checks it before any byte is read: an API key that
resolves (`Authorization: Bearer <key>`), or the session cookie of a signed-in user. A forged or
revoked one keeps the small limit, so its oversize body is refused unread, as under WSGI.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from importlib import import_module
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user
from django.http import HttpRequest
from django.http.cookie import parse_cookie
from django.urls import Resolver404, resolve

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1").strip()
    return None


async def _path_limit(scope: Scope) -> int:
    """The most a body with a declared length may carry to this path (see the middleware)."""
    # Imported here: the middleware module imports the tenancy app, which needs the app registry.
    from apps.core.middleware import LARGE_BODY_VIEWS

    limit = int(settings.API_MAX_BODY_BYTES)
    if not (_header(scope, b"content-type") or "").startswith("multipart/form-data"):
        return limit
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :]
    try:
        large = LARGE_BODY_VIEWS.get(resolve(path).view_name)
    except Resolver404:
        return limit
    if large is None:
        return limit
    if large.credential and not await sync_to_async(_holds_live_credential, thread_sensitive=True)(scope):
        return limit
    return max(limit, large.limit())


def _holds_live_credential(scope: Scope) -> bool:
    """Whether the request carries a live credential, as `request_has_credential` judges one once
    the middleware ran: an API key that resolves, or the session of a signed-in user. Reads no
    body; asks Redis (the key cache) and the database (keys, sessions)."""
    # Imported here: the tenancy app needs the app registry.
    from apps.tenancy.authentication import api_key_of
    from apps.tenancy.selectors import api_key_resolve

    key = api_key_of(_header(scope, b"authorization") or "")
    if key is not None:
        return api_key_resolve(raw_key=key) is not None
    session_key = parse_cookie(_header(scope, b"cookie") or "").get(settings.SESSION_COOKIE_NAME)  # as Django reads it
    if not session_key:
        return False
    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return bool(get_user(request).is_authenticated)


class BodyLimitASGI:
    """ASGI middleware: the application reads at most the bytes the body-size rules accept."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is None:
            # Chunked: the middleware reads up to the small limit plus one byte and refuses past it.
            allowance = int(settings.API_MAX_BODY_BYTES) + 1
        elif not (declared.isascii() and declared.isdigit()):
            allowance = 0  # the middleware answers 400 from the header
        elif int(declared) > await _path_limit(scope):
            allowance = 0  # the middleware (or the view) answers 413 from the header
        else:
            allowance = int(declared)
        await self.app(scope, _bounded_receive(receive, allowance), send)


def _bounded_receive(receive: Receive, allowance: int) -> Receive:
    """`receive`, ending the request body after `allowance` bytes. After a body that ended by
    itself, later calls pass the server's next message on (the disconnect Django listens for);
    after one cut short, they wait until cancelled, so the rest of it is never pulled."""
    state = {"left": allowance, "ended": False, "cut": False}

    async def bounded() -> Message:
        if state["ended"]:
            if state["cut"]:
                await asyncio.Event().wait()  # Django cancels this once its response is sent
            return await receive()
        if state["left"] <= 0:
            state["ended"] = state["cut"] = True
            return {"type": "http.request", "body": b"", "more_body": False}
        message = await receive()
        if message["type"] != "http.request":
            return message
        body = bytes(message.get("body", b""))
        more = bool(message.get("more_body", False))
        if len(body) >= state["left"] and (more or len(body) > state["left"]):
            body, more, state["cut"] = body[: state["left"]], False, True
        state["left"] -= len(body)
        state["ended"] = not more
        return {"type": "http.request", "body": body, "more_body": more}

    return bounded
