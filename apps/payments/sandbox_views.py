"""The sandbox provider's pages: the hosted pay page and a simple status page.

They stand in for a provider's hosted checkout, so they need no Darkroom login: the checkout
id in the URL (a random UUID) is the shopper's capability, as a provider's session URL is.
Turned off entirely with SANDBOX_ENABLED = False.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from apps.commerce.models import Checkout
from apps.payments.providers.base import ProviderError, minor_to_major
from apps.payments.sandbox import SandboxCheckout, sandbox_checkout, sandbox_session_outcome, sandbox_settle
from apps.tenancy.context import tenant_context

_ACTIONS = {"pay": "paid", "fail": "failed"}


def _found(checkout_id: uuid.UUID) -> SandboxCheckout:
    if not settings.SANDBOX_ENABLED:
        raise Http404("The sandbox is turned off.")
    found = sandbox_checkout(checkout_id=checkout_id)
    if found is None:
        raise Http404("No sandbox checkout with this id.")
    return found


def _context(found: SandboxCheckout, **extra: Any) -> dict[str, Any]:
    """The page's values. A `closed` session (its checkout expired, or the session closed or past
    its expiry, whatever the checkout's row says yet) can no longer be paid: the page offers no
    Pay or Fail and claims no charge; `paid_late` when a payment still got in before the close
    (Darkroom refunds it)."""
    checkout = found.checkout
    with tenant_context(checkout.tenant_id):
        txn = getattr(Checkout.objects.select_related("transaction").get(pk=checkout.pk), "transaction", None)
    outcome = sandbox_session_outcome(checkout=checkout)
    closed = checkout.status == Checkout.Status.EXPIRED or outcome == "expired"
    return {
        "checkout": checkout,
        "transaction_status": txn.status if txn is not None else None,
        "amount": minor_to_major(checkout.amount_minor, checkout.currency),
        "lines": [
            {
                "line": line,
                "amount": minor_to_major(line.amount_minor, line.currency),
                "charged": line.state == "confirmed" and not closed,
            }
            for line in found.lines
        ],
        "payable": checkout.status == Checkout.Status.AWAITING_PAYMENT and not closed,
        "closed": closed,
        "paid_late": closed and outcome == "paid",
        "final": checkout.status not in Checkout.OPEN_STATUSES,
        **extra,
    }


@require_http_methods(["GET", "POST"])
def pay_page(request: HttpRequest, checkout_id: uuid.UUID) -> HttpResponse:
    """GET: the amount, the lines and Pay / Fail buttons. POST (action=pay|fail): the sandbox
    settles the payment once and sends its signed webhook(s) to Darkroom asynchronously, then
    the shopper is sent back as a provider would: to the checkout's own return URL (the shop's
    checkout page, or the integrator's), else to the sandbox status page."""
    found = _found(checkout_id)
    if request.method == "POST":
        outcome = _ACTIONS.get(request.POST.get("action", ""))
        if outcome is None:
            return render(request, "sandbox/pay.html", _context(found, error="Choose Pay or Fail."), status=400)
        try:
            sandbox_settle(checkout=found.checkout, outcome=outcome)
        except ProviderError as exc:
            return render(request, "sandbox/pay.html", _context(found, error=exc.detail), status=409)
        if found.checkout.return_url:
            return redirect(found.checkout.return_url)
        return redirect("sandbox-status", checkout_id=checkout_id)
    return render(request, "sandbox/pay.html", _context(found))


@require_http_methods(["GET"])
def status_page(request: HttpRequest, checkout_id: uuid.UUID) -> HttpResponse:
    """Where the sandbox sends the shopper back: the checkout's status, refreshed until final."""
    return render(request, "sandbox/status.html", _context(_found(checkout_id)))
