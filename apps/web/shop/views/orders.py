"""The shopper's way back to what they bought, from any browser.

* `GET /s/<studio>/orders/<token>`: a signed order link (in the receipt and the "find my orders"
  e-mail; apps/commerce/order_links.py). A valid token of one of this studio's checkouts adds the
  checkout to this browser's session (`remember_checkout`) and redirects (303) to its page, which
  shows its status and fresh download links. A tampered token, another studio's, or one naming
  no checkout gets the 404 page.
* `GET /s/<studio>/orders/`: "Find my orders", an e-mail form (with a fresh form nonce).
* `POST /s/<studio>/orders/` (`email`, `nonce`): a bad address is counted per client address
  (`apps.web.shop.limits`; over it: 429 with Retry-After) and re-renders the form (400). A valid
  one goes through `submit_once` around `order_links_request`, which queues one e-mail listing the
  studio's paid orders of that address if it has any, and lands (303) on the "sent" page whatever
  it found, so the page tells nobody whether an address bought anything. Only a submission that
  reaches the lookup counts, per client address and per e-mail address asked about (inside the
  form's transaction, so over either limit: 429 with Retry-After, nothing written). One effect
  per intent, whatever the browser does:
  - a resubmitted form (a double click, a reload that re-posts, a browser retry) is one
    submission: its key is the form's nonce alone (`LOOKUP_FORM_CALLER`), not the session's, since
    a fresh browser's two clicks both leave before the first one's session cookie comes back; a
    click while the first is still in its transaction waits for it (at most
    LOOKUP_SUBMISSION_WAIT_SECONDS) and lands where it did;
  - a session asking again about an address it asked about within
    SHOP_ORDER_LOOKUP_REPEAT_SECONDS (a fresh form, the back button) lands on the "sent" page at
    once, counted nowhere and writing nothing (`order_lookup_asked_recently`, in Redis; the answer
    is the same whether the address bought anything). Another address counts, and so does every
    request of another session: the limits hold against many sessions and addresses.
* `GET /s/<studio>/orders/sent`: "If we have paid orders for that address, we've e-mailed
  their links."
"""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from apps.commerce.order_links import OrderLinkInvalid, order_token_checkout_id
from apps.commerce.services.order_links import order_links_request
from apps.core.problems import DomainError
from apps.web.shop.forms import OrderLookupForm
from apps.web.shop.limits import order_lookup_asked, order_lookup_asked_recently, order_lookup_wait
from apps.web.shop.selectors import Studio, checkout_exists
from apps.web.shop.session import remember_checkout
from apps.web.shop.views.common import render_page, shop_view
from apps.web.submit_once import SubmissionInFlight, form_nonce, session_caller, submit_once

# The key space of lookup form submissions: the nonce alone (random, 144 bits, known only to the
# browser its page was rendered for) names one rendered form, whichever session posts it.
LOOKUP_FORM_CALLER = "web-form:order-lookup"
# How long a submission waits for the same form still in its transaction (a double click): the
# lookup's transaction takes milliseconds.
LOOKUP_SUBMISSION_WAIT_SECONDS = 5.0


class LookupRefusedForNow(DomainError):
    """Over the client address's or the e-mail address's lookup budget; retry after `retry_after` seconds."""

    status_code = 429
    slug = "order-lookup-limited"
    title = "Too many requests"
    when_it_happens = (
        "Too many order look-ups in the shop in a short time, from the same internet address or for the "
        "same e-mail address."
    )
    what_to_do = "Wait the number of seconds in the `Retry-After` header, then look the order up again."

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


def _lookup_url(studio: Studio) -> str:
    return reverse("shop:orders", kwargs={"studio_slug": studio.slug})


def _checkout_url(studio: Studio, checkout_id: uuid.UUID) -> str:
    return reverse("shop:checkout", kwargs={"studio_slug": studio.slug, "checkout_id": checkout_id})


def _lookup_page(
    request: HttpRequest,
    studio: Studio,
    *,
    sent: bool = False,
    error: str = "",
    field_errors: dict[str, Any] | None = None,
    email: str = "",
    status: int = 200,
    retry_after: int | None = None,
) -> HttpResponse:
    response = render_page(
        request,
        "shop/orders.html",
        studio=studio,
        context={
            "sent": sent,
            "error": error,
            "field_errors": field_errors or {},
            "email": email,
            "nonce": form_nonce(),
            "action": _lookup_url(studio),
        },
        status=status,
    )
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


@require_GET
@shop_view
def order_link_open(request: HttpRequest, studio: Studio, token: str) -> HttpResponse:
    checkout_id = order_token_checkout_id(tenant_id=studio.id, token=token)
    if not checkout_exists(tenant_id=studio.id, checkout_id=checkout_id):
        raise OrderLinkInvalid(f"No checkout {checkout_id}.")
    remember_checkout(request, studio.id, checkout_id)
    response = HttpResponseRedirect(_checkout_url(studio, checkout_id), status=303)
    response["Cache-Control"] = "private, no-store"
    return response


@require_http_methods(["GET", "POST"])
@shop_view
def order_lookup(request: HttpRequest, studio: Studio) -> HttpResponse:
    if request.method == "GET":
        return _lookup_page(request, studio)
    form = OrderLookupForm(request.POST)
    raw_email = str(request.POST.get("email", ""))
    if not form.is_valid():
        wait = order_lookup_wait(request, tenant_id=studio.id, email=None)
        if wait:
            return _too_many_page(request, studio, email=raw_email, wait=wait)
        return _lookup_page(request, studio, field_errors=form.errors, email=raw_email, status=400)
    email: str = form.cleaned_data["email"]
    session_caller(request)  # the session whose repeats are remembered
    session_key = str(request.session.session_key)
    sent_url = reverse("shop:orders-sent", kwargs={"studio_slug": studio.slug})
    if order_lookup_asked_recently(tenant_id=studio.id, session_key=session_key, email=email):
        return HttpResponseRedirect(sent_url, status=303)

    def effect() -> str:
        wait = order_lookup_wait(request, tenant_id=studio.id, email=email)
        if wait:
            raise LookupRefusedForNow("Over the lookup limits.", retry_after=wait)
        order_links_request(tenant_id=studio.id, email=email)
        return sent_url

    try:
        response = submit_once(
            request,
            tenant_id=studio.id,
            caller=LOOKUP_FORM_CALLER,
            effect=effect,
            wait_seconds=LOOKUP_SUBMISSION_WAIT_SECONDS,
        )
    except LookupRefusedForNow as exc:
        return _too_many_page(request, studio, email=raw_email, wait=exc.retry_after)
    except SubmissionInFlight:
        return _lookup_page(
            request,
            studio,
            error="This form is still being processed. Reload this page in a moment.",
            email=raw_email,
            status=409,
            retry_after=1,
        )
    except DomainError as exc:
        return _lookup_page(request, studio, error=exc.detail, email=raw_email, status=exc.status_code)
    order_lookup_asked(tenant_id=studio.id, session_key=session_key, email=email)
    return response


def _too_many_page(request: HttpRequest, studio: Studio, *, email: str, wait: int) -> HttpResponse:
    return _lookup_page(
        request,
        studio,
        error=f"Too many requests. Please wait {wait} seconds before asking again.",
        email=email,
        status=429,
        retry_after=wait,
    )


@require_GET
@shop_view
def order_lookup_sent(request: HttpRequest, studio: Studio) -> HttpResponse:
    return _lookup_page(request, studio, sent=True)
