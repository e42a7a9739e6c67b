"""Business refusals of commerce, rendered as RFC 7807 problems by the API."""

from __future__ import annotations

from typing import Any

from apps.core.problems import DomainError, InvalidInput, NotFound


class InvalidCheckoutLine(InvalidInput):
    """A line names a product the studio does not sell, a photo the product is not of, or a
    quantity the product does not allow."""

    slug = "invalid-checkout-line"
    title = "Invalid checkout line"


class MixedCurrencies(InvalidInput):
    slug = "mixed-currencies"
    title = "One checkout, one currency"


class ProviderUnavailable(InvalidInput):
    slug = "payment-provider-unavailable"
    title = "Payment provider unavailable"


class InvalidReturnUrl(InvalidInput):
    """A checkout's return URL that is not an absolute http(s) URL a provider can send the
    shopper back to."""

    slug = "invalid-return-url"
    title = "Invalid return URL"


class InvalidShippingAddress(InvalidInput):
    """A checkout with prints without a complete, valid shipping address, or a download-only
    checkout with one; `errors` names the fields (`shipping.<field>`)."""

    slug = "invalid-shipping-address"
    title = "Invalid shipping address"


class CheckoutNotFound(NotFound):
    slug = "checkout-not-found"
    title = "Checkout not found"


class CheckoutNotAwaitingSession(DomainError):
    """The payment-session retry endpoint was called for a checkout that does not need one."""

    status_code = 409
    slug = "checkout-not-awaiting-payment-session"
    title = "The checkout does not need a payment session"


class PaidWithoutAmount(DomainError):
    """A paid fact that does not say what was charged (amount and currency). Every provider's
    paid event and capture answer carries both; without them the charge cannot be checked
    against the checkout, so nothing is granted (a webhook event fails for good and stays in the
    admin for an operator)."""

    status_code = 422
    slug = "paid-without-amount"
    title = "Paid without an amount"


class PartialRefundUnnamed(DomainError):
    """A provider event reports part of a payment refunded without naming the refund (a total,
    like Stripe's `charge.refunded`, which Darkroom does not act on): it cannot say which refund
    completed, so nothing is landed or recorded (a webhook event fails for good and stays in the
    admin for an operator). Every adapter maps the events that name their refund."""

    status_code = 422
    slug = "partial-refund-unnamed"
    title = "Partial refund naming no refund"


class RefundTotalAmbiguous(PartialRefundUnnamed):
    """A provider event gives only the payment's cumulative refunded total where Darkroom would
    need more: a total is what had gone back when the provider made the event, which may be
    delivered after later events. It names no refund while the total reaches the whole payment
    after a refund of it failed at the provider (the total may have been made before the failure,
    counting money that went back to the merchant), or it names a refund Darkroom does not know
    without that refund's own amount (the total less what Darkroom counts cannot size it: the
    refunds it counts may be made after it). Nothing is landed or recorded (a webhook event fails
    for good and stays in the admin for an operator)."""

    status_code = 422
    slug = "refund-total-ambiguous"
    title = "Refund total that cannot be placed"


class RefundCurrencyMismatch(DomainError):
    """A provider event reports a refund in a currency other than its payment's (Stripe's refund
    `currency`, PayPal's `amount.currency_code`, Flutterwave's `currency`, compared whatever their
    case), or an amount naming no currency: no refund of the payment is in it, and its figure
    read as the payment's currency would count 5000 JPY as 50.00 EUR. Nothing is landed or
    recorded (a webhook event fails for good and stays in the admin for an operator)."""

    status_code = 422
    slug = "refund-currency-mismatch"
    title = "Refund in another currency"


class RefundAmountUnreadable(DomainError):
    """A provider event reports a refund amount (its own, or the payment's refunded total) that
    no refund can be: nothing or less, or beyond what a bigint of minor units holds (a `Refund`
    row could not store it). Nothing is landed or recorded (a webhook event fails for good and
    stays in the admin for an operator)."""

    status_code = 422
    slug = "refund-amount-unreadable"
    title = "Unreadable refund amount"


class SecondChargeRefundedInPart(DomainError):
    """A provider event reports part of a second charge (`duplicate_charge`) refunded outside
    Darkroom (its dashboard): Darkroom gives a second charge back whole, and a part can neither
    land its refund nor be sent on top. Nothing is landed or recorded (a webhook event fails for
    good and stays in the admin for an operator)."""

    status_code = 422
    slug = "second-charge-refunded-in-part"
    title = "Part of a second charge refunded at the provider"


class PaymentForUnknownCheckout(DomainError):
    """A provider event names a checkout (or reference) Darkroom does not have."""

    status_code = 404
    slug = "payment-for-unknown-checkout"
    title = "Payment for an unknown checkout"


class EntitlementNotFound(NotFound):
    slug = "entitlement-not-found"
    title = "No such download"


class CheckoutNotShippable(DomainError):
    """A checkout that cannot be marked shipped: not paid, nothing to ship (no confirmed print),
    or already shipped (`AlreadyShipped`)."""

    status_code = 409
    slug = "checkout-not-shippable"
    title = "The checkout cannot be shipped"


class AlreadyShipped(CheckoutNotShippable):
    slug = "checkout-already-shipped"
    title = "Already shipped"


class CheckoutNotRefundable(DomainError):
    """A refund the studio cannot ask for: the checkout is not paid (never paid, refunded
    already), or a refund of it is under way (`RefundAlreadyRequested`)."""

    status_code = 409
    slug = "checkout-not-refundable"
    title = "The checkout cannot be refunded"


class PrintsNotRestockable(CheckoutNotRefundable):
    """A refund asked to put prints back in stock for an order with none waiting to be shipped."""

    slug = "prints-not-restockable"
    title = "No prints to put back in stock"


class RefundAlreadyRequested(CheckoutNotRefundable):
    slug = "refund-already-requested"
    title = "Refund already requested"


class RefundExceedsPayment(CheckoutNotRefundable):
    """A refund of some items that would give back more than is left of the payment (parts of it
    were refunded in the provider's dashboard, or items refunded since a refused refund): the
    provider would refuse it. Nothing is written; refund the order's last items instead, which
    take what is left."""

    slug = "refund-exceeds-payment"
    title = "More than is left of the payment"


class RefundNotSettleable(DomainError):
    """A refund an operator cannot record as paid back outside the provider: it is not one the
    provider left unpaid (refused, or failed after it landed), it was settled already, the note
    saying how is missing, or another refund of the payment still awaits the provider. Nothing
    is written."""

    status_code = 409
    slug = "refund-not-settleable"
    title = "The refund cannot be settled outside the provider"


class RefundLinesInvalid(DomainError):
    """Items named for a refund that are not refundable items of the order: another order's,
    never charged (sold out, released), or named twice. Nothing is written."""

    status_code = 400
    slug = "refund-lines-invalid"
    title = "Those items cannot be refunded"


class RefundNotRecordedYet(Exception):
    """A provider's refund event arrived before Darkroom recorded the refund it is about (the
    provider answered the refund call, but its id is not stored yet). Retryable: the webhook
    consumer tries again with backoff, and by then the refund's id is stored."""


class CheckoutHoldLimited(DomainError):
    """A new checkout would hold more than its holder (a client network, a shop session) may
    hold unpaid at once. With `retry_after`: 429, the same checkout may be placed after that
    many seconds (or sooner, once one of the holder's open checkouts is paid); without: 409,
    waiting does not help (the checkout alone is over the limit). Nothing is written."""

    status_code = 429
    slug = "checkout-hold-limited"
    title = "Too much held by unpaid orders"

    def __init__(self, detail: str, *, retry_after: int | None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail, extra=extra)
        self.retry_after = retry_after
        if retry_after is None:
            self.status_code = 409


class OpenCheckoutsLimitReached(CheckoutHoldLimited):
    """The shop session already has SHOP_OPEN_CHECKOUTS_PER_SESSION open checkouts at the studio
    (`checkout_ids`, soonest to lapse first)."""

    slug = "open-checkouts-limit"
    title = "Too many orders awaiting payment"

    def __init__(self, detail: str, *, retry_after: int | None, checkout_ids: list[str]) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.checkout_ids = checkout_ids


class PrintHoldLimitReached(CheckoutHoldLimited):
    """Unpaid checkouts from the client's network would hold more of a print than the network may
    (SHOP_NETWORK_PRINT_HOLD_PERCENT of its stock at once; units it let lapse recently count while
    little is left). The problem's body names the print (`product`), how many more of it the
    network may hold now (`available`), its share (`share`) and which rule refused (`reason`:
    `share`, or `lapsed`)."""

    slug = "print-hold-limit"
    title = "Too many of this print awaiting payment"
