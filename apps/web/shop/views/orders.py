"""The shopper's way back to what they bought, from any browser.

* `GET /s/<studio>/orders/<token>`: a signed order link (in the receipt and the "find my orders"
  e-mail; apps/commerce/order_links.py). A valid token of one of this studio's checkouts adds the
  checkout to this browser's session (`remember_checkout`) and redirects (303) to its page, which
  shows its status and fresh download links. A tampered token, another studio's, or one naming
  no checkout gets the 404 page.
* `GET /s/<studio>/orders/`: "Find my orders", an e-mail form (with a fresh form nonce).
* `POST /s/<studio>/orders/` (`email`, `nonce`): counted per client address and, for a valid
  address, per e-mail address asked about (`apps.web.shop.limits`; over either: 429 with
  Retry-After, nothing written); a bad address re-renders the form (400). Then `submit_once`
  around `order_links_request`, which queues one e-mail listing the studio's paid orders of that
  address if it has any, and lands (303) on the "sent" page whatever it found, so the page tells
  nobody whether an address bought anything. A resubmitted form lands there again and queues
  nothing more.
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
from apps.web.shop.limits import order_lookup_wait
from apps.web.shop.selectors import Studio, checkout_exists
from apps.web.shop.session import remember_checkout
from apps.web.shop.views.common import render_page, shop_view
from apps.web.submit_once import SubmissionInFlight, form_nonce, session_caller, submit_once


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
    email = form.cleaned_data["email"] if form.is_valid() else None
    wait = order_lookup_wait(request, tenant_id=studio.id, email=email)
    if wait:
        return _lookup_page(
            request,
            studio,
            error=f"Too many requests. Please wait {wait} seconds before asking again.",
            email=raw_email,
            status=429,
            retry_after=wait,
        )
    if email is None:
        return _lookup_page(request, studio, field_errors=form.errors, email=raw_email, status=400)
    sent_url = reverse("shop:orders-sent", kwargs={"studio_slug": studio.slug})

    def effect() -> str:
        order_links_request(tenant_id=studio.id, email=email)
        return sent_url

    try:
        return submit_once(request, tenant_id=studio.id, caller=session_caller(request), effect=effect)
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


@require_GET
@shop_view
def order_lookup_sent(request: HttpRequest, studio: Studio) -> HttpResponse:
    return _lookup_page(request, studio, sent=True)
