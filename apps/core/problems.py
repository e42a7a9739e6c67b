"""RFC 7807 problem details: the one error format of the API.

Every error leaving an API view passes through `problem_exception_handler`, so a client always
gets `application/problem+json` with `type`, `title`, `status`, `detail` (and `errors` for
field-level validation failures).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_default_handler

from apps.core.request_context import get_request_id

PROBLEM_CONTENT_TYPE = "application/problem+json"
logger = logging.getLogger("darkroom.problems")


class DomainError(Exception):
    """A business rule refused the request. Subclasses set status, slug and title."""

    status_code = 409
    slug = "conflict"
    title = "Conflict"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}


class NotFound(DomainError):
    status_code = 404
    slug = "not-found"
    title = "Not found"


class InvalidInput(DomainError):
    status_code = 400
    slug = "invalid-input"
    title = "Invalid input"


def problem_body(status_code: int, title: str, detail: str, *, slug: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"/problems/{slug}",
        "title": title,
        "status": status_code,
        "detail": detail,
    }
    request_id = get_request_id()
    if request_id:
        body["request_id"] = request_id
    body.update(extra)
    return body


def problem_response(status_code: int, title: str, detail: str, *, slug: str, **extra: Any) -> JsonResponse:
    """A plain Django response in problem format, for middleware and non-DRF views."""
    return JsonResponse(
        problem_body(status_code, title, detail, slug=slug, **extra),
        status=status_code,
        content_type=PROBLEM_CONTENT_TYPE,
    )


def wants_html(request: HttpRequest) -> bool:
    """A browser asking for a page: its Accept header names text/html. API clients, mail
    clients' one-click POSTs and `curl` (no Accept, or */*) get the problem JSON."""
    return "text/html" in request.META.get("HTTP_ACCEPT", "")


def problem_page_or_json(
    request: HttpRequest,
    status_code: int,
    title: str,
    detail: str,
    *,
    slug: str,
    retry_after: int | None = None,
) -> HttpResponse:
    """The refusal of a page people open from a browser (attendee links, studio uploads): an
    HTML page with the same status, title and detail for a browser, else the RFC 7807 problem.
    `retry_after` (seconds) becomes the `Retry-After` header of either."""
    response: HttpResponse
    if wants_html(request):
        referer = request.META.get("HTTP_REFERER", "")
        same_site = url_has_allowed_host_and_scheme(
            referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
        context = {
            "status": status_code,
            "title": title,
            "detail": detail,
            "retry_after": retry_after,
            "back_url": referer if referer and same_site else "",
            "request_id": get_request_id(),
        }
        response = render(request, "problem.html", context, status=status_code)
        response["Cache-Control"] = "no-store"
    else:
        response = problem_response(status_code, title, detail, slug=slug)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def domain_error_page(request: HttpRequest, exc: DomainError) -> HttpResponse:
    """`problem_page_or_json` for a refusal the services raised: its status, title, detail, slug."""
    return problem_page_or_json(request, exc.status_code, exc.title, exc.detail, slug=exc.slug)


_DRF_SLUGS: dict[type[exceptions.APIException], tuple[str, str]] = {
    exceptions.ParseError: ("malformed-request", "Malformed request"),
    exceptions.ValidationError: ("validation-error", "Invalid input"),
    exceptions.NotAuthenticated: ("not-authenticated", "Authentication required"),
    exceptions.AuthenticationFailed: ("authentication-failed", "Authentication failed"),
    exceptions.PermissionDenied: ("permission-denied", "Permission denied"),
    exceptions.NotFound: ("not-found", "Not found"),
    exceptions.MethodNotAllowed: ("method-not-allowed", "Method not allowed"),
    exceptions.NotAcceptable: ("not-acceptable", "Not acceptable"),
    exceptions.UnsupportedMediaType: ("unsupported-media-type", "Unsupported media type"),
    exceptions.Throttled: ("rate-limited", "Too many requests"),
}


def _flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into {"field.sub": ["message", ...]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.update(_flatten_errors(value, name))
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            out[prefix or "non_field_errors"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                out.update(_flatten_errors(item, f"{prefix}[{index}]" if prefix else f"[{index}]"))
    else:
        out[prefix or "non_field_errors"] = [str(detail)]
    return out


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        body = problem_body(exc.status_code, exc.title, exc.detail, slug=exc.slug, **exc.extra)
        return Response(body, status=exc.status_code, content_type=PROBLEM_CONTENT_TYPE)
    if isinstance(exc, RequestDataTooBig):
        body = problem_body(413, "Payload too large", str(exc), slug="payload-too-large")
        return Response(body, status=413, content_type=PROBLEM_CONTENT_TYPE)
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        # Django refuses to parse past DATA_UPLOAD_MAX_NUMBER_FIELDS / _FILES (a query string read
        # by content negotiation or `TenantApi.query_parameters`, a form body): the client's input.
        if isinstance(exc, TooManyFieldsSent):
            detail = f"More than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} query parameters or form fields."
        else:
            detail = f"More than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files."
        body = problem_body(400, "Too many parameters", detail, slug="too-many-parameters")
        return Response(body, status=400, content_type=PROBLEM_CONTENT_TYPE)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_default_handler(exc, context)
    if response is None:
        logger.exception("unhandled API error", exc_info=exc)
        body = problem_body(500, "Internal server error", "An unexpected error occurred.", slug="internal-error")
        return Response(body, status=status.HTTP_500_INTERNAL_SERVER_ERROR, content_type=PROBLEM_CONTENT_TYPE)

    assert isinstance(exc, exceptions.APIException)
    slug, title = next(
        (value for klass, value in _DRF_SLUGS.items() if isinstance(exc, klass)),
        ("error", "Request failed"),
    )
    extra: dict[str, Any] = {}
    if isinstance(exc, exceptions.ValidationError):
        extra["errors"] = _flatten_errors(exc.detail)
        detail = "The request has invalid fields; see `errors`."
    elif isinstance(exc.detail, dict | list):
        extra["errors"] = _flatten_errors(exc.detail)
        detail = title
    else:
        detail = str(exc.detail)
    response.data = problem_body(response.status_code, title, detail, slug=slug, **extra)
    response.content_type = PROBLEM_CONTENT_TYPE
    return response
