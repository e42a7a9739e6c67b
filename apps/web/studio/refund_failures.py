"""Why a refund failed, in words a studio owner reads on the sale page.

A refund the provider accepted and then could not complete (its `refund_failed` event) keeps the
provider's reason in `Refund.last_error`, as `refund_apply_provider_failure` writes it: "The
payment provider could not complete this refund after accepting it (<reason>)." (and in its
audit row). The reasons are the provider's own codes: Stripe's refund `failure_reason`
("expired_or_canceled_card"), or the refund's status when it gives none ("failed",
"canceled"); the sandbox sends Stripe's codes; Flutterwave passes its refund's free-text comment
or status; PayPal's adapter reports no refund failed after it was accepted. A refund the provider
refused outright keeps the provider's error message there instead. Neither is shown as it is:
the owner reads a plain sentence for each known code (`failure_reason_said`), a neutral one for
any other, and "refused it" for a refusal; operators read `last_error` itself in the admin.
"""

from __future__ import annotations

import re

from apps.commerce.models import Refund

# Stripe's `failure_reason` codes (and the refund statuses its adapter passes when there is none).
_STRIPE_REASONS: dict[str, str] = {
    "expired_or_canceled_card": "The shopper's card has expired or was cancelled, so it could not take the money.",
    "lost_or_stolen_card": "The shopper's card was reported lost or stolen, so it could not take the money.",
    "declined": "The shopper's bank declined the refund.",
    "charge_for_pending_refund_disputed": (
        "The shopper disputed the payment with their bank while the refund was under way."
    ),
    "insufficient_funds": "There was not enough money available to pay the refund.",
    "merchant_request": "The refund was cancelled at your request.",
    "canceled": "The refund was cancelled at {provider}.",
}

# The codes each provider adapter passes on, by provider name (`Checkout.provider`).
REASONS_BY_PROVIDER: dict[str, dict[str, str]] = {
    "stripe": _STRIPE_REASONS,
    "sandbox": _STRIPE_REASONS,  # it plays Stripe
    "flutterwave": {},  # free text: the neutral sentence
    "paypal": {},
}

_NEUTRAL = "The money did not reach the shopper's card or account."

# How `refund_apply_provider_failure` keeps the provider's reason (apps/commerce/services/payment.py).
_FAILED_AT_PROVIDER = re.compile(
    r"\AThe payment provider could not complete this refund after accepting it \((?P<code>.*)\)\.\Z", re.S
)


def failure_code(refund: Refund) -> str:
    """The provider's code of a refund that failed after the provider accepted it, as kept in
    `last_error`; "" for any other refund (a refusal, or none)."""
    found = _FAILED_AT_PROVIDER.match(refund.last_error)
    return found["code"].strip() if found else ""


def failure_reason_said(refund: Refund, *, provider: str, provider_label: str) -> str:
    """Why the provider `provider` (shown as `provider_label`) could not complete `refund` after
    accepting it: a plain sentence for a code its adapter passes on, else a neutral one."""
    code = failure_code(refund).lower()
    said = REASONS_BY_PROVIDER.get(provider, {}).get(code, _NEUTRAL)
    return said.format(provider=provider_label)
