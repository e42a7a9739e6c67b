"""RFC 9457 (formerly 7807) problem details: the one error format of the API.

Every error leaving an API view passes through `problem_exception_handler`, so a client always
gets `application/problem+json` with `type`, `title`, `status`, `detail` (and `errors` for
field-level validation failures: always, for `/problems/validation-error`).

Each `type` is a URI of a page saying when the problem happens and what to do
(`apps.core.problem_pages`, `/problems/<slug>`), as RFC 9457 asks of a type URI. The pages are
made from one registry (`problem_types`): the types declared here (DRF's, the middleware's, the
generic ones) and every `DomainError` subclass, which registers itself when its class is made.
`tests/core/test_problem_types.py` finds every type the code can emit and opens its page.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ProblemType:
    """A kind of problem the API answers with, as its page explains it to an integrator."""

    slug: str
    title: str
    when: str  # when it happens
    what_to_do: str

    @property
    def uri(self) -> str:
        return f"/problems/{self.slug}"


# What a type that says nothing of its own is about, and what to do, by its HTTP status.
_WHEN_BY_STATUS = {
    400: "The request cannot be taken as it was sent; `detail` says why.",
    403: "The credential is valid, but may not do this.",
    404: "The request names something this studio does not have (another studio's things are answered the same way).",
    409: "The request conflicts with the current state of what it names; `detail` says how.",
    410: "What the request names has expired.",
    413: "The request is larger than this endpoint takes.",
    422: "The request is well formed, but names something that cannot take it; `detail` says what.",
    429: "Too many requests of this kind for now.",
    502: "A payment provider did not give a usable answer.",
    503: "This part of Darkroom is switched off or unreachable for now.",
}
_WHAT_TO_DO_BY_STATUS = {
    400: "Correct the request as `detail` says and send it again. Nothing was written.",
    403: "Use a credential allowed to do this; sending the request again with this one gets the same answer.",
    404: "Check the path and the ids in it (and in the body) against what the studio has.",
    409: "Read the current state of what the request names, then decide; the same request gets the same answer "
    "until that state changes. With a `Retry-After` header, wait that many seconds before retrying.",
    410: "Ask for a new one.",
    413: "Send a smaller body; `detail` gives the limit.",
    422: "Change the request as `detail` says; the same request is refused again.",
    429: "Wait the number of seconds in the `Retry-After` header, then send the request again.",
}
_WHAT_TO_DO_ON_SERVER_ERROR = (
    "Retry later (a write with the same Idempotency-Key, so it is applied once). If it keeps failing, "
    "contact support and quote the problem's `request_id`."
)

# What to do about a problem only Darkroom's own work meets: a payment provider's notification
# it did not act on, or its background work (e-mail, payouts, photo matching) standing back.
PROVIDER_NOTIFICATION_WHAT_TO_DO = (
    "Nothing is asked of an API client or a shopper: this concerns a notification a payment provider sent "
    "to Darkroom. Darkroom kept it without acting on it, for its support team to check with the provider. "
    "If an order looks wrong meanwhile, contact support and quote the order's id."
)
BACKGROUND_WORK_WHAT_TO_DO = (
    "Nothing is asked of you: Darkroom's background work tries again by itself. If an API request ever gets "
    "this answer, send it again after a few seconds with the same Idempotency-Key."
)

_TYPES: dict[str, ProblemType] = {}


def register_problem_type(slug: str, title: str, status: int, *, when: str = "", what_to_do: str = "") -> ProblemType:
    """Add a problem type to the registry the pages are made from, and return it. A slug seen
    before keeps its first title and words (a type declared in this module before the
    `DomainError` subclasses that reuse it, e.g. `not-found`). Without words of its own, a type
    gets those of its HTTP status."""
    known = _TYPES.get(slug)
    if known is not None:
        return known
    problem = ProblemType(
        slug=slug,
        title=title,
        when=when or _WHEN_BY_STATUS.get(status, "`detail` says what went wrong."),
        what_to_do=what_to_do
        or _WHAT_TO_DO_BY_STATUS.get(status, _WHAT_TO_DO_ON_SERVER_ERROR if status >= 500 else ""),
    )
    _TYPES[slug] = problem
    return problem


def problem_types() -> dict[str, ProblemType]:
    """Every registered problem type by slug, in slug order. `DomainError` subclasses register on
    import; the URL map imports every module defining one (tests/core/test_problem_types.py)."""
    return dict(sorted(_TYPES.items()))


VALIDATION_ERROR = register_problem_type(
    "validation-error",
    "Invalid input",
    400,
    when="A field of the request is missing, has a value of the wrong type, or breaks a rule: a slug with "
    "characters other than letters, digits, hyphens and underscores, or one the shop keeps for its own "
    "pages; an access-code event without its code; a field the operation does not take. `errors` names "
    "each field by its path (`lines.0.product`) with what is wrong with it; `non_field_errors` holds what "
    "concerns the request as a whole.",
    what_to_do="Correct the fields named in `errors` and send the request again. Nothing was written, and a "
    "refused request is not stored under its Idempotency-Key, so the same key may be sent again.",
)
MALFORMED_REQUEST = register_problem_type(
    "malformed-request",
    "Malformed request",
    400,
    when="The body is not JSON Darkroom can read: a syntax error, or a string that is not Unicode text "
    '(a lone surrogate such as "\\ud800").',
    what_to_do="Send a valid JSON body, encoded as UTF-8, with `Content-Type: application/json`.",
)
NOT_AUTHENTICATED = register_problem_type(
    "not-authenticated",
    "Authentication required",
    401,
    when="The request carries no API key Darkroom reads and no signed-in session: no key at all, or one "
    "sent another way (`Authorization: Token <key>`, an `X-Api-Key` header).",
    what_to_do="Send the studio's API key as `Authorization: Bearer <key>` (the word Bearer in any case).",
)
AUTHENTICATION_FAILED = register_problem_type(
    "authentication-failed",
    "Authentication failed",
    401,
    when="The Authorization header uses the Bearer scheme, but the key is unknown or revoked, or the header "
    "is not exactly `Bearer <key>`.",
    what_to_do="Check the key and send exactly one after Bearer. A revoked key never works again: a studio "
    "owner makes a new one on the studio's API keys page.",
)
PERMISSION_DENIED = register_problem_type(
    "permission-denied",
    "Permission denied",
    403,
    when="The credential is valid, but its role may not do this (an API key asking for another API key, a "
    "photographer changing prices).",
    what_to_do="Use a credential whose role may do it: each operation's description in the API reference "
    "(/api/docs/) names the roles.",
)
NOT_FOUND = register_problem_type(
    "not-found",
    "Not found",
    404,
    when="No endpoint at this path (`detail` says when only a trailing slash is in the way), or the object "
    "the path names does not exist in this studio (another studio's objects are answered the same way).",
    what_to_do="Check the path and the ids in it; no API path ends with a slash.",
)
METHOD_NOT_ALLOWED = register_problem_type(
    "method-not-allowed",
    "Method not allowed",
    405,
    when="The endpoint does not take this HTTP method.",
    what_to_do="Use one of the methods in the `Allow` header.",
)
NOT_ACCEPTABLE = register_problem_type(
    "not-acceptable",
    "Not acceptable",
    406,
    when="The Accept header asks for a media type the endpoint does not produce.",
    what_to_do="Accept `application/json` (errors come as `application/problem+json`).",
)
UNSUPPORTED_MEDIA_TYPE = register_problem_type(
    "unsupported-media-type",
    "Unsupported media type",
    415,
    when="The body's Content-Type is not one the endpoint reads.",
    what_to_do="Send JSON with `Content-Type: application/json`; uploads as `multipart/form-data`.",
)
RATE_LIMITED = register_problem_type(
    "rate-limited",
    "Too many requests",
    429,
    when="This caller sent more requests to this endpoint than its rate limit allows for now.",
    what_to_do="Wait the number of seconds in the `Retry-After` header, then send the request again.",
)
PAYLOAD_TOO_LARGE = register_problem_type(
    "payload-too-large",
    "Payload too large",
    413,
    when="The request body is larger than this endpoint takes (`detail` gives the limit). Uploads take "
    "larger bodies, but only with an API key or a signed-in session.",
    what_to_do="Send a smaller body, or send the upload with the API key.",
)
TOO_MANY_PARAMETERS = register_problem_type(
    "too-many-parameters",
    "Too many parameters",
    400,
    when="More query parameters, form fields or files than Darkroom reads in one request.",
    what_to_do="Send fewer: no operation needs that many.",
)
BAD_REQUEST = register_problem_type(
    "bad-request",
    "Bad request",
    400,
    when="The request cannot be read as sent: a Content-Length that is not a number, or a parameter that "
    "is not what the page expects; `detail` says which.",
    what_to_do="Correct it as `detail` says and send it again.",
)
LENGTH_REQUIRED = register_problem_type(
    "length-required",
    "Length required",
    411,
    when="A body was sent without a Content-Length header where Darkroom needs one.",
    what_to_do="Send the body with its Content-Length.",
)
INTERNAL_ERROR = register_problem_type(
    "internal-error",
    "Internal server error",
    500,
    when="Darkroom failed to handle the request. Nothing of it was applied.",
    what_to_do=_WHAT_TO_DO_ON_SERVER_ERROR,
)
SANDBOX_UNAVAILABLE = register_problem_type(
    "sandbox-unavailable",
    "The sandbox is unavailable",
    503,
    when="The sandbox payment provider (for trying Darkroom out, never in production) cannot reach the "
    "services it keeps its payments in.",
    what_to_do="Wait the number of seconds in the `Retry-After` header and try again; nothing was charged.",
)
REQUEST_FAILED = register_problem_type(
    "error",
    "Request failed",
    400,
    when="The request failed in a way no other problem type names; `detail` says how.",
    what_to_do="Read `detail`. If it does not say enough, contact support and quote the problem's `request_id`.",
)


def _first_paragraph(docstring: str | None) -> str:
    return " ".join(inspect.cleandoc(docstring).split("\n\n")[0].split()) if docstring else ""


class DomainError(Exception):
    """A business rule refused the request. Subclasses set status, slug and title.

    Each subclass is a problem type (`register_problem_type`), whose public page an integrator
    reads: it says when the problem happens (`when_it_happens`, else the first paragraph of the
    subclass's own docstring, when that is written for them) and what to do (`what_to_do`);
    either left out, the words of its status. Those words name no setting, function, table or
    module (tests/core/test_problem_types.py), so a docstring written for engineers keeps its
    engineering and the class says it plainly in `when_it_happens`."""

    status_code = 409
    slug = "conflict"
    title = "Conflict"
    when_it_happens = ""
    what_to_do = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register_problem_type(
            cls.slug,
            cls.title,
            cls.status_code,
            when=cls.__dict__.get("when_it_happens") or _first_paragraph(cls.__dict__.get("__doc__")),
            what_to_do=cls.__dict__.get("what_to_do", ""),
        )

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}


class NotFound(DomainError):
    status_code = 404
    slug = NOT_FOUND.slug
    title = NOT_FOUND.title


class InvalidInput(DomainError):
    """Field validation a service does (a reserved slug, an access code that does not match the
    visibility): the same problem type and body as a serializer's, with `errors` by field."""

    status_code = 400
    slug = VALIDATION_ERROR.slug
    title = VALIDATION_ERROR.title


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


# The problem type of each DRF exception; another APIException is REQUEST_FAILED.
DRF_PROBLEM_TYPES: dict[type[exceptions.APIException], ProblemType] = {
    exceptions.ParseError: MALFORMED_REQUEST,
    exceptions.ValidationError: VALIDATION_ERROR,
    exceptions.NotAuthenticated: NOT_AUTHENTICATED,
    exceptions.AuthenticationFailed: AUTHENTICATION_FAILED,
    exceptions.PermissionDenied: PERMISSION_DENIED,
    exceptions.NotFound: NOT_FOUND,
    exceptions.MethodNotAllowed: METHOD_NOT_ALLOWED,
    exceptions.NotAcceptable: NOT_ACCEPTABLE,
    exceptions.UnsupportedMediaType: UNSUPPORTED_MEDIA_TYPE,
    exceptions.Throttled: RATE_LIMITED,
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


def _not_authenticated_detail(exc: exceptions.NotAuthenticated, context: dict[str, Any]) -> str:
    """DRF's "Authentication credentials were not provided." says nothing of how to provide them:
    the view's first authenticator says it (`not_authenticated_detail`), as it gives the
    `WWW-Authenticate` challenge. A detail raised on purpose is kept."""
    request = context.get("request")
    authenticators = getattr(request, "authenticators", None) or ()
    say = getattr(authenticators[0], "not_authenticated_detail", None) if authenticators else None
    if say is None or str(exc.detail) != str(exceptions.NotAuthenticated.default_detail):
        return str(exc.detail)
    return str(say(request))


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        members = dict(exc.extra)
        if exc.slug == VALIDATION_ERROR.slug:
            members.setdefault("errors", {"non_field_errors": [exc.detail]})  # the shape of every such problem
        body = problem_body(exc.status_code, exc.title, exc.detail, slug=exc.slug, **members)
        return Response(body, status=exc.status_code, content_type=PROBLEM_CONTENT_TYPE)
    if isinstance(exc, RequestDataTooBig):
        body = problem_body(413, PAYLOAD_TOO_LARGE.title, str(exc), slug=PAYLOAD_TOO_LARGE.slug)
        return Response(body, status=413, content_type=PROBLEM_CONTENT_TYPE)
    if isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        # Django refuses to parse past DATA_UPLOAD_MAX_NUMBER_FIELDS / _FILES (a query string read
        # by content negotiation or `TenantApi.query_parameters`, a form body): the client's input.
        if isinstance(exc, TooManyFieldsSent):
            detail = f"More than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} query parameters or form fields."
        else:
            detail = f"More than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} files."
        body = problem_body(400, TOO_MANY_PARAMETERS.title, detail, slug=TOO_MANY_PARAMETERS.slug)
        return Response(body, status=400, content_type=PROBLEM_CONTENT_TYPE)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_default_handler(exc, context)
    if response is None:
        logger.exception("unhandled API error", exc_info=exc)
        body = problem_body(500, INTERNAL_ERROR.title, "An unexpected error occurred.", slug=INTERNAL_ERROR.slug)
        return Response(body, status=status.HTTP_500_INTERNAL_SERVER_ERROR, content_type=PROBLEM_CONTENT_TYPE)

    assert isinstance(exc, exceptions.APIException)
    problem = next(
        (value for klass, value in DRF_PROBLEM_TYPES.items() if isinstance(exc, klass)),
        REQUEST_FAILED,
    )
    extra: dict[str, Any] = {}
    if isinstance(exc, exceptions.ValidationError):
        extra["errors"] = _flatten_errors(exc.detail)
        detail = "The request has invalid fields; see `errors`."
    elif isinstance(exc.detail, dict | list):
        extra["errors"] = _flatten_errors(exc.detail)
        detail = problem.title
    elif isinstance(exc, exceptions.NotAuthenticated):
        detail = _not_authenticated_detail(exc, context)
    else:
        detail = str(exc.detail)
    response.data = problem_body(response.status_code, problem.title, detail, slug=problem.slug, **extra)
    response.content_type = PROBLEM_CONTENT_TYPE
    return response
