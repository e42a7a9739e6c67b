"""Request id, body-size and API-404 middleware. Only the body-size check of a large upload asks
the database (or the API-key cache) whether its caller is signed in or holds an API key."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

from apps.core.client_address import client_address
from apps.core.logging import loggable_path
from apps.core.problems import PROBLEM_CONTENT_TYPE, problem_page_or_json, problem_response, wants_html
from apps.core.request_context import accept_or_generate, reset_request_id, set_request_id
from apps.tenancy.authentication import request_has_credential

REQUEST_ID_HEADER = "X-Request-ID"
logger = logging.getLogger("darkroom.request")


def _signed_in_user_id(request: HttpRequest) -> int | None:
    user = getattr(request, "user", None)
    return int(user.pk) if user is not None and user.is_authenticated else None


class RequestIdMiddleware:
    """Accept the caller's X-Request-ID (or make one), expose it to logs and tasks, echo it.

    Logs one `request` line per request (method, path, status, duration_ms, client, and for the
    admin the signed-in user_id): the access log, structured like every other line (the
    Procfile's gunicorn writes none of its own).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        request_id = accept_or_generate(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        token = set_request_id(request_id)
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            fields: dict[str, Any] = {
                "method": request.method,
                "path": loggable_path(request),  # without the tokens some paths carry
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                "client": client_address(request),
            }
            if request.path.startswith("/admin/"):
                # The admin reads every studio's rows (a system context, audited once per
                # process): its access log says who read what.
                fields["user_id"] = _signed_in_user_id(request)
            logger.info("request", extra=fields)
            return response
        finally:
            # A reused thread must not carry this id into its next request. Django logs a 4xx/5xx
            # only after this returns; ContextFilter then reads the id from `request.request_id`.
            reset_request_id(token)


# Room for a selfie form's other fields (e-mail, name, consent, CSRF token) around its file.
SELFIE_ENVELOPE_BYTES = 64 * 1024


@dataclass(frozen=True)
class LargeBodies:
    """A view that takes multipart bodies larger than DARKROOM_MAX_BODY_BYTES: at most the
    setting `setting` names plus `envelope` bytes. `credential`: only from a signed-in session or
    with a live API key (anonymous callers keep the small limit). `view_refuses`: the view itself
    answers a declared oversize body, on its own page, before anything reads it."""

    setting: str
    envelope: int = 0
    credential: bool = False
    view_refuses: bool = False

    def limit(self) -> int:
        return int(getattr(settings, self.setting)) + self.envelope


# By URL name. Every other view, and every body that is not multipart, is held to
# DARKROOM_MAX_BODY_BYTES. Webhooks are not here: providers send small JSON (tests/payments).
LARGE_BODY_VIEWS: dict[str, LargeBodies] = {
    "catalog-event-photos": LargeBodies("API_MAX_UPLOAD_BYTES", credential=True),
    "studio:event-upload": LargeBodies("API_MAX_UPLOAD_BYTES", credential=True),
    "event-selfies": LargeBodies("DROPIN_MAX_SELFIE_BYTES", envelope=SELFIE_ENVELOPE_BYTES, credential=True),
    # Anonymous by design: the signed link in the path, checked before the view reads the body.
    "attendee-dropin": LargeBodies("DROPIN_MAX_SELFIE_BYTES", envelope=SELFIE_ENVELOPE_BYTES),
    # Anonymous shoppers; apps/web/shop/views/findme.py refuses over the same limit itself.
    "shop:find-me": LargeBodies("SHOP_FINDME_MAX_BYTES", envelope=SELFIE_ENVELOPE_BYTES, view_refuses=True),
}


def _large_bodies_of(request: HttpRequest) -> LargeBodies | None:
    try:
        return LARGE_BODY_VIEWS.get(resolve(request.path_info).view_name)
    except Resolver404:
        return None


def _too_large(request: HttpRequest, *, length: int | None, limit: int, upload: bool, hint: str = "") -> HttpResponse:
    """413 for a body over `limit` (`length` None: a body sent without Content-Length). A browser
    gets a page (in megabytes for a file upload) outside /api/ and /webhooks/; others the problem."""
    page = wants_html(request) and not request.path.startswith(ApiNotFoundMiddleware.PREFIXES)
    if upload and page:
        size = f"This upload is {length / 2**20:.1f} MB" if length is not None else "This upload is too large"
        title = "Upload too large"
        detail = (
            f"{size}; at most {limit / 2**20:.0f} MB can be sent at once. Nothing was kept: send fewer or"
            " smaller files at a time."
        )
    else:
        size = f"The request body is {length} bytes" if length is not None else "The request body is too large"
        title, detail = "Payload too large", f"{size}; the limit is {limit}."
    if page:
        return problem_page_or_json(request, 413, title, detail + hint, slug="payload-too-large")
    return problem_response(413, title, detail + hint, slug="payload-too-large")


class BodySizeLimitMiddleware:
    """Hold every request body to DARKROOM_MAX_BODY_BYTES (`API_MAX_BODY_BYTES`), except the
    multipart bodies of the views in LARGE_BODY_VIEWS (photo uploads, selfies), and refuse
    anything over its limit with 413 before the body is read: a problem, or for a browser an
    HTML page (in megabytes for a file upload).

    * A declared Content-Length is checked first; the URL is resolved only for one over the small
      limit. A view whose larger limit needs a credential is checked for it in `process_view`
      (after the session and auth middleware, before the CSRF check, which would parse the body).
    * A body without Content-Length (`Transfer-Encoding: chunked`), which Django would otherwise
      read as empty, is read here up to the small limit plus one byte, whatever the path: over it
      413, else it is handed on as a body of that length. A WSGI server that does not mark such
      input as terminated (`wsgi.input_terminated`) gets 411 and nothing is read.
    * Under ASGI, Django reads the body before any middleware: config/asgi.py wraps the app in
      `apps.core.asgi_body_limit.BodyLimitASGI`, which holds that read to these same limits.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = int(settings.API_MAX_BODY_BYTES)
        declared = str(request.META.get("CONTENT_LENGTH") or "").strip()
        if not declared:
            if request.META.get("HTTP_TRANSFER_ENCODING"):
                refusal = self._buffer_unsized_body(request, limit)
                if refusal is not None:
                    return refusal
            return self.get_response(request)
        if not (declared.isascii() and declared.isdigit()):  # "²" is a digit to Python, not to int()
            return problem_response(400, "Bad request", "Content-Length is not a number.", slug="bad-request")
        length = int(declared)
        if length <= limit:
            return self.get_response(request)
        # Multipart uploads stream to temp files, so some views may take more than a body held in memory.
        upload = request.META.get("CONTENT_TYPE", "").startswith("multipart/form-data")
        large = _large_bodies_of(request) if upload else None
        if large is None:
            return _too_large(request, length=length, limit=limit, upload=upload)
        if length > large.limit() and not large.view_refuses:
            return _too_large(request, length=length, limit=large.limit(), upload=True)
        if large.credential:
            request.body_needs_credential = (length, limit)  # type: ignore[attr-defined]
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        needs = getattr(request, "body_needs_credential", None)
        if needs is None or request_has_credential(request):
            return None
        length, limit = needs
        hint = f" Bodies over {limit} bytes are taken here only from a signed-in member or with an API key."
        return _too_large(request, length=length, limit=limit, upload=True, hint=hint)

    @staticmethod
    def _buffer_unsized_body(request: HttpRequest, limit: int) -> HttpResponse | None:
        """Read a body sent without Content-Length, up to `limit` + 1 bytes; None once it is
        handed on as a body of known length, else the refusal (nothing beyond that is read)."""
        # Under ASGI the body was read before any middleware, bounded by BodyLimitASGI (config/asgi.py).
        asgi = isinstance(request, ASGIRequest)
        if not (asgi or request.META.get("wsgi.input_terminated")):
            return problem_response(
                411, "Length required", "Send the request body with a Content-Length header.", slug="length-required"
            )
        source = request._stream if asgi else request.META["wsgi.input"]
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = source.read(min(64 * 1024, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            upload = request.META.get("CONTENT_TYPE", "").startswith("multipart/form-data")
            return _too_large(
                request, length=None, limit=limit, upload=upload, hint=" A larger body must declare its Content-Length."
            )
        body = b"".join(chunks)
        request.META["CONTENT_LENGTH"] = str(len(body))
        request._stream = io.BytesIO(body)
        return None


class ApiNotFoundMiddleware:
    """A 404 for a path under /api/ or /webhooks/ that no view answered (Django's HTML page, or
    the technical page under DEBUG) becomes an RFC 7807 problem, naming the path and, when only
    a trailing slash is in the way, the path that exists. Views' own JSON 404s pass unchanged."""

    PREFIXES = ("/api/", "/webhooks/")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code != 404 or not request.path.startswith(self.PREFIXES):
            return response
        content_type = response.get("Content-Type", "")
        if content_type.startswith((PROBLEM_CONTENT_TYPE, "application/json")):
            return response
        detail = f"No endpoint at {request.path}."
        if request.path.endswith("/"):
            try:
                resolve(request.path.rstrip("/"))
            except Resolver404:
                pass
            else:
                detail += f" Did you mean {request.path.rstrip('/')} (no trailing slash)?"
        return problem_response(404, "Not found", detail, slug="not-found")
