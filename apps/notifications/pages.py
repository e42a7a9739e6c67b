"""What the attendee's signed-link pages (inbox, mark read, new link, resubscribe, unsubscribe,
drop-in) share: their request budget and the check of their token (only the current generation
of the link opens a page; unsubscribing also takes an earlier one, `apps.notifications.selectors`).
Refusals are an HTML page for a browser and an RFC 7807 problem otherwise
(`apps.core.problems.problem_page_or_json`).

The budget.

Their token is checked by HMAC, which costs little, but every page also reads the attendee and
their notifications, and a guessed or leaked link could be hammered. `attendee_page_limited`
counts each request against the client's address (`apps.core.client_address`, which believes
`X-Forwarded-For` only from `TRUSTED_PROXIES`) in the API's sliding-window limiter
(`apps.ops.ratelimit`): `ATTENDEE_PAGE_RATE` (120 a minute) across all these pages. Over it the
request gets a 429 problem with `Retry-After` before the token is even read, so it writes
nothing. It follows `RATE_LIMIT_ENABLED` and, like every limiter here, lets requests through
when Redis is unreachable (logged and counted).

The unsubscribe POST is the exception (`unsubscribe_limited`): RFC 8058 one-click unsubscribes
come from the mail providers' own servers, which many of their users share, and refusing one
fails a legal obligation. A POST whose token we signed (an HMAC check, no database read) counts
against that attendee's own `ATTENDEE_PAGE_RATE` instead of the address's, whatever the link's
generation; one whose token we did not sign counts against the address as every page does, so a
flood of forged tokens is still held back.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse

from apps.core.client_address import rate_limit_address
from apps.core.problems import DomainError, domain_error_page, problem_page_or_json
from apps.notifications.models import Attendee
from apps.notifications.selectors import (
    AttendeeLinkInvalid,
    attendee_from_token,
    attendee_from_unsubscribe_token,
    token_claims,
)
from apps.ops.ratelimit import setting_rate_wait

ATTENDEE_PAGE_KEY = "attendee:page:"


def attendee_page_wait(request: HttpRequest) -> int:
    """Count one attendee-page request from this client: 0 if admitted, else seconds to wait."""
    return setting_rate_wait((f"{ATTENDEE_PAGE_KEY}a{rate_limit_address(request)}", "ATTENDEE_PAGE_RATE"))


def attendee_page_limited(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Refuse the request with a 429 problem (and `Retry-After`) when its client is over
    `ATTENDEE_PAGE_RATE`; otherwise run the view."""

    @wraps(view)
    def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = attendee_page_wait(request)
        if wait:
            return _too_many(request, wait, "Too many requests for attendee pages from this address.")
        return view(request, *args, **kwargs)

    return limited


def _signed_attendee_key(token: str) -> str | None:
    """The budget key of the attendee a token we signed names (`token_claims`), or None for a
    token we did not sign. Reads no database."""
    try:
        tenant_id, attendee_id, _ = token_claims(token)
    except AttendeeLinkInvalid:
        return None
    return f"{ATTENDEE_PAGE_KEY}t{tenant_id}:p{attendee_id}"


def unsubscribe_wait(request: HttpRequest, token: str) -> int:
    """Count one unsubscribe request: a POST with a token we signed against that attendee's
    budget, anything else against the client's address. 0 if admitted, else seconds to wait."""
    key = _signed_attendee_key(token) if request.method == "POST" else None
    if key is None:
        return attendee_page_wait(request)
    return setting_rate_wait((key, "ATTENDEE_PAGE_RATE"))


def _too_many(request: HttpRequest, wait: int, detail: str) -> HttpResponse:
    return problem_page_or_json(request, 429, "Too many requests", detail, slug="rate-limited", retry_after=wait)


def unsubscribe_limited(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """`attendee_page_limited` for the unsubscribe page, whose POST counts against the signed
    attendee rather than the client address (`unsubscribe_wait`)."""

    @wraps(view)
    def limited(request: HttpRequest, token: str) -> HttpResponse:
        wait = unsubscribe_wait(request, token)
        if wait:
            return _too_many(request, wait, "Too many unsubscribe requests for this link or from this address.")
        return view(request, token)

    return limited


def attendee_or_problem(request: HttpRequest, token: str) -> Attendee | HttpResponse:
    """The attendee the signed token of their current link names, or the refusal to answer with
    (404 for a tampered, foreign, unknown or replaced link)."""
    try:
        return attendee_from_token(token=token)
    except DomainError as exc:
        return domain_error_page(request, exc)


def unsubscribing_attendee_or_problem(request: HttpRequest, token: str) -> tuple[Attendee, bool] | HttpResponse:
    """For the unsubscribe page only: the attendee a link of their current or an earlier
    generation names and whether it is current, or the refusal (404, as above)."""
    try:
        return attendee_from_unsubscribe_token(token=token)
    except DomainError as exc:
        return domain_error_page(request, exc)
