"""Request id, body-size and API-404 middleware; none of them touches the database."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

from apps.core.client_address import client_address
from apps.core.logging import loggable_path
from apps.core.problems import PROBLEM_CONTENT_TYPE, problem_page_or_json, problem_response, wants_html
from apps.core.request_context import accept_or_generate, reset_request_id, set_request_id

REQUEST_ID_HEADER = "X-Request-ID"
logger = logging.getLogger("darkroom.request")


class RequestIdMiddleware:
    """Accept the caller's X-Request-ID (or make one), expose it to logs and tasks, echo it.

    Logs one `request` line per request (method, path, status, duration_ms, client): the access
    log, structured like every other line (the Procfile's gunicorn writes none of its own).
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
            logger.info(
                "request",
                extra={
                    "method": request.method,
                    "path": loggable_path(request),  # without the tokens some paths carry
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "client": client_address(request),
                },
            )
            return response
        finally:
            # A reused thread must not carry this id into its next request. Django logs a 4xx/5xx
            # only after this returns; ContextFilter then reads the id from `request.request_id`.
            reset_request_id(token)


class BodySizeLimitMiddleware:
    """Refuse a declared oversize body with 413 before it is read, for every path: a problem, or
    for a browser's multipart form (studio uploads, selfies) an HTML page in megabytes."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        content_type = request.META.get("CONTENT_TYPE", "")
        # Multipart uploads stream to temp files, so they may be larger than bodies held in memory.
        is_upload = content_type.startswith("multipart/form-data")
        limit = settings.API_MAX_UPLOAD_BYTES if is_upload else settings.API_MAX_BODY_BYTES
        declared = request.META.get("CONTENT_LENGTH")
        if declared:
            try:
                length = int(declared)
            except ValueError:
                return problem_response(400, "Bad request", "Content-Length is not a number.", slug="bad-request")
            if length > limit:
                if is_upload and wants_html(request):  # a browser's form upload: say it in its units
                    return problem_page_or_json(
                        request,
                        413,
                        "Upload too large",
                        f"This upload is {length / 2**20:.1f} MB; at most {limit / 2**20:.0f} MB can be sent"
                        " at once. Nothing was kept: send fewer or smaller files at a time.",
                        slug="payload-too-large",
                    )
                return problem_response(
                    413,
                    "Payload too large",
                    f"The request body is {length} bytes; the limit is {limit}.",
                    slug="payload-too-large",
                )
        return self.get_response(request)


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
