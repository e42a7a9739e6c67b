"""The sandbox provider's pages: the hosted pay page and a simple status page.

They stand in for a provider's hosted checkout, so they need no Darkroom login: the checkout
id in the URL (a random UUID) is the shopper's capability, as a provider's session URL is.
Turned off entirely with SANDBOX_ENABLED = False.

The sandbox keeps its payment sessions in Redis and sends its webhooks through Celery: while
either is unreachable its pages answer 503 with Retry-After (a page, or a problem for non-browser
clients), and a Pay pressed then can be pressed again (it settles once and re-sends the same event).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from kombu.exceptions import OperationalError as BrokerUnavailable

from apps.catalog.models import ProductKind
from apps.commerce.models import Checkout, CheckoutLine, Provider, Receipt
from apps.core.problems import problem_page_or_json
from apps.core.redis_guard import REDIS_ERRORS, redis_failed, redis_skipped
from apps.payments.providers.base import ProviderError, minor_to_major
from apps.payments.providers.registry import get_provider
from apps.payments.providers.returns import ShopperReturn, return_url_marked
from apps.payments.providers.sandbox import SandboxProvider
from apps.payments.sandbox import SandboxCheckout, sandbox_checkout, sandbox_session_outcome, sandbox_settle
from apps.tenancy.context import tenant_context

_ACTIONS = {"pay": "paid", "fail": "failed"}
UNAVAILABLE_RETRY_AFTER_SECONDS = 30

logger = logging.getLogger("darkroom.payments.sandbox")


def _unavailable(request: HttpRequest) -> HttpResponse:
    return problem_page_or_json(
        request,
        503,
        "The sandbox is unavailable",
        "The sandbox keeps its payment sessions in Redis and sends its payments through Celery, and "
        "cannot reach them now. Nothing was charged by this request; try again shortly.",
        slug="sandbox-unavailable",
        retry_after=UNAVAILABLE_RETRY_AFTER_SECONDS,
    )


def _needs_redis(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A 503 instead of the page while Redis or the broker is unreachable (not even asked while
    this process skips Redis after a failure, `apps.core.redis_guard`)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if redis_skipped("sandbox"):
            return _unavailable(request)
        try:
            return view(request, *args, **kwargs)
        except REDIS_ERRORS as error:
            redis_failed("sandbox", error)
            return _unavailable(request)
        except BrokerUnavailable as error:
            logger.warning("sandbox webhook not queued (broker)", extra={"error_class": type(error).__name__})
            return _unavailable(request)

    return wrapped


def _found(checkout_id: uuid.UUID) -> SandboxCheckout:
    if not settings.SANDBOX_ENABLED:
        raise Http404("The sandbox is turned off.")
    found = sandbox_checkout(checkout_id=checkout_id)
    if found is None:
        raise Http404("No sandbox checkout with this id.")
    return found


def _session_exists(checkout: Checkout) -> bool:
    """Whether the sandbox holds the checkout's payment session (Pay on a checkout without one is
    refused: the session is created once its prints are reserved)."""
    provider = get_provider(Provider.SANDBOX)
    assert isinstance(provider, SandboxProvider)
    try:
        provider.session_details(reference=checkout.sandbox_reference or provider.reference_for(str(checkout.pk)))
    except ProviderError:
        return False
    return True


def _state(checkout: Checkout, outcome: str | None, transaction_status: str | None) -> str:
    """What pressing Pay would do now, which is what the page says and offers:

    * "payable": the session takes payment and the checkout is open: Pay charges, Darkroom
      fulfils. "refunded_if_paid": the session takes payment but the checkout is no longer open
      (e.g. sold out): Pay charges, and Darkroom refunds the payment (the state machine's late
      payment).
    * "paid" / "refunded": the session was paid (and, for "refunded", Darkroom refunded it since):
      nothing more is charged; Pay only re-sends the same payment event.
    * "failed": the session was settled as failed: Pay is refused (409), nothing was charged.
    * "closed" / "paid_late": the checkout expired or its session closed: Pay is refused (409);
      "paid_late" when a payment still got in before the close (Darkroom refunds it).
    * "no_session": the sandbox has no session for the checkout yet (or never will, for a final
      checkout): Pay is refused.
    """
    closed = checkout.status == Checkout.Status.EXPIRED or outcome == "expired"
    if closed:
        return "paid_late" if outcome == "paid" else "closed"
    if outcome == "paid":
        return "refunded" if transaction_status == "refunded" else "paid"
    if outcome == "failed":
        return "failed"
    if not _session_exists(checkout):
        return "no_session"
    return "payable" if checkout.status in Checkout.OPEN_STATUSES else "refunded_if_paid"


def _return_url(checkout: Checkout, outcome: ShopperReturn) -> str:
    """Where a provider sends the shopper back after `outcome`: the session's success or cancel
    URL (the checkout's return URL with `darkroom_return`), else, for a checkout that gave no
    return URL, the sandbox's status page."""
    if not checkout.return_url:
        return reverse("sandbox-status", kwargs={"checkout_id": checkout.pk})
    provider = get_provider(Provider.SANDBOX)
    assert isinstance(provider, SandboxProvider)
    try:
        session = provider.session_details(
            reference=checkout.sandbox_reference or provider.reference_for(str(checkout.pk))
        )
    except ProviderError:
        return return_url_marked(checkout.return_url, outcome)
    return str(session["success_url" if outcome == ShopperReturn.PAID else "cancel_url"])


_CHARGED_STATES = frozenset({"payable", "refunded_if_paid", "paid", "refunded", "paid_late"})


def _context(found: SandboxCheckout, **extra: Any) -> dict[str, Any]:
    """The page's values: `state` (see `_state`) decides its heading, total and buttons, so what it
    says is what pressing Pay will do. Only "payable" and "refunded_if_paid" offer Pay and Fail;
    "Total charged" appears only once the session was paid."""
    checkout = found.checkout
    with tenant_context(checkout.tenant_id):
        txn = getattr(Checkout.objects.select_related("transaction").get(pk=checkout.pk), "transaction", None)
    transaction_status = txn.status if txn is not None else None
    state = _state(checkout, sandbox_session_outcome(checkout=checkout), transaction_status)
    return {
        "checkout": checkout,
        "transaction_status": transaction_status,
        "amount": minor_to_major(checkout.amount_minor, checkout.currency),
        "lines": [
            {
                "line": line,
                "amount": minor_to_major(line.amount_minor, line.currency),
                "charged": line.state == "confirmed" and state in _CHARGED_STATES,
            }
            for line in found.lines
        ],
        "state": state,
        "payable": state in ("payable", "refunded_if_paid"),
        # A provider's page has a way back without paying (Stripe's back link, PayPal's cancel).
        "back_url": _return_url(checkout, ShopperReturn.CANCELLED) if state in ("payable", "refunded_if_paid") else "",
        "closed": state in ("closed", "paid_late"),
        "paid_late": state == "paid_late",
        "final": checkout.status not in Checkout.OPEN_STATUSES,
        "status_text": checkout.get_status_display().lower(),
        **extra,
    }


@require_http_methods(["GET", "POST"])
@_needs_redis
def pay_page(request: HttpRequest, checkout_id: uuid.UUID) -> HttpResponse:
    """GET: the amount, the lines and Pay / Fail buttons. POST (action=pay|fail): the sandbox
    settles the payment once and sends its signed webhook(s) to Darkroom asynchronously, then
    the shopper is sent back as a provider would (`_return_url`): after Pay to the session's
    success URL, after Fail to its cancel URL (the shop's checkout page, or the integrator's),
    else to the sandbox status page."""
    found = _found(checkout_id)
    if request.method == "POST":
        outcome = _ACTIONS.get(request.POST.get("action", ""))
        if outcome is None:
            return render(request, "sandbox/pay.html", _context(found, error="Choose Pay or Fail."), status=400)
        try:
            sandbox_settle(checkout=found.checkout, outcome=outcome)
        except ProviderError as exc:
            return render(request, "sandbox/pay.html", _context(found, error=exc.detail), status=409)
        # Fail plays a payment the provider refused: the shopper did not pay, and comes back so.
        returned = ShopperReturn.PAID if outcome == "paid" else ShopperReturn.CANCELLED
        return redirect(_return_url(found.checkout, returned))
    return render(request, "sandbox/pay.html", _context(found))


def _receipt_context(found: SandboxCheckout) -> dict[str, Any]:
    """What the status page says of a paid order, by the shop's order page's rule: its receipt
    (`receipt_status`: "sent" with `receipt_sent_at`, else on its way while one is pending or
    sending; "" without one) and whether it has downloads. Nothing for any other status: a
    payment that did not go through has no receipt."""
    checkout = found.checkout
    if checkout.status != Checkout.Status.PAID:
        return {"receipt_status": "", "receipt_sent_at": None, "has_downloads": False}
    with tenant_context(checkout.tenant_id):
        receipt = Receipt.objects.filter(checkout_id=checkout.pk).values_list("status", "sent_at").first()
    return {
        "receipt_status": receipt[0] if receipt else "",
        "receipt_sent_at": receipt[1] if receipt else None,
        "has_downloads": any(
            line.kind != ProductKind.PRINT and line.state == CheckoutLine.State.CONFIRMED for line in found.lines
        ),
    }


def _version(context: dict[str, Any]) -> str:
    """A fingerprint of what the status page's live region shows (the checkout's and its
    payment's status; the rest of the page does not change while it polls)."""
    shown = f"{context['checkout'].status}\n{context['transaction_status']}"
    return hashlib.sha256(shown.encode()).hexdigest()[:16]


@require_http_methods(["GET"])
@_needs_redis
def status_page(request: HttpRequest, checkout_id: uuid.UUID) -> HttpResponse:
    """Where the sandbox sends the shopper back: the checkout's status, refreshed until final;
    once paid, its receipt as the shop's order page says it (`_receipt_context`).

    The page's own poll (htmx, `?since=<version>`) gets an empty 204 while nothing it shows has
    changed, so htmx swaps nothing and the page's live region is announced on real changes only.
    Any other request gets the whole page."""
    found = _found(checkout_id)
    context = {**_context(found), **_receipt_context(found)}
    context["version"] = _version(context)
    if request.headers.get("HX-Request") == "true" and request.GET.get("since") == context["version"]:
        unchanged = HttpResponse(status=204)
        unchanged["Cache-Control"] = "no-store"
        return unchanged
    return render(request, "sandbox/status.html", context)
