"""Business refusals of commerce, rendered as RFC 7807 problems by the API."""

from __future__ import annotations

from typing import Any

from apps.core.problems import PROVIDER_NOTIFICATION_WHAT_TO_DO, DomainError, InvalidInput, NotFound


class InvalidCheckoutLine(InvalidInput):
    """A line names a product the studio does not sell, a photo the product is not of, or a
    quantity the product does not allow."""

    slug = "invalid-checkout-line"
    title = "Invalid checkout line"
    what_to_do = (
        "Correct the line `detail` names: GET /api/v1/events/{id}/products lists what an event sells, "
        "with each product's photo. Nothing was written."
    )


class MixedCurrencies(InvalidInput):
    """The checkout's lines are priced in more than one currency (products of events priced in
    different currencies), and one checkout is paid in one currency. Nothing was written."""

    slug = "mixed-currencies"
    title = "One checkout, one currency"
    what_to_do = "Place one checkout per currency; `detail` names the currencies."


class ProviderUnavailable(InvalidInput):
    """The checkout names a payment provider this Darkroom does not take payments with: one it
    is not set up for, or the sandbox (for trying Darkroom out) where it is turned off. Nothing
    was written."""

    slug = "payment-provider-unavailable"
    title = "Payment provider unavailable"
    what_to_do = "Send the checkout with a provider the studio takes payments with."


class InvalidReturnUrl(InvalidInput):
    """A checkout's return URL that is not an absolute http(s) URL a provider can send the
    shopper back to."""

    slug = "invalid-return-url"
    title = "Invalid return URL"
    what_to_do = "Send a full http or https address of your storefront, or leave the return URL out."


class InvalidShippingAddress(InvalidInput):
    """A checkout with prints without a complete, valid shipping address, or a download-only
    checkout with one; `errors` names the fields (`shipping.<field>`)."""

    slug = "invalid-shipping-address"
    title = "Invalid shipping address"
    what_to_do = (
        "Send a complete shipping address when the checkout has prints, and none when it has not; "
        "correct each field `errors` names. Nothing was written."
    )


class CheckoutNotFound(NotFound):
    """The request names a checkout (an order) this studio does not have (another studio's
    checkouts are answered the same way)."""

    slug = "checkout-not-found"
    title = "Checkout not found"
    what_to_do = "Check the checkout's id: it is the `id` of the answer to POST /api/v1/checkouts."


class CheckoutNotAwaitingSession(DomainError):
    """The payment-session retry endpoint was called for a checkout that does not need one."""

    status_code = 409
    slug = "checkout-not-awaiting-payment-session"
    title = "The checkout does not need a payment session"
    when_it_happens = (
        "POST /api/v1/checkouts/{id}/payment-session asked again for the payment page of a checkout that "
        "is not waiting for one: its page is ready, or it is still reserving stock, paid or closed "
        "(`detail` gives its status)."
    )
    what_to_do = (
        "Read the checkout (GET /api/v1/checkouts/{id}): its `status` says where it is, and `payment_url` "
        "is the payment page once it is ready. Ask again only after making the page failed."
    )


class PaidWithoutAmount(DomainError):
    """A paid fact that does not say what was charged (amount and currency). Every provider's
    paid event and capture answer carries both; without them the charge cannot be checked
    against the checkout, so nothing is granted (a webhook event fails for good and stays in the
    admin for an operator)."""

    status_code = 422
    slug = "paid-without-amount"
    title = "Paid without an amount"
    when_it_happens = (
        "A payment provider told Darkroom an order was paid without saying how much was charged, in which "
        "currency. Darkroom cannot check such a payment against the order, so it grants nothing on it."
    )
    what_to_do = PROVIDER_NOTIFICATION_WHAT_TO_DO


class PartialRefundUnnamed(DomainError):
    """A provider event reports part of a payment refunded without naming the refund (a total,
    like Stripe's `charge.refunded`, which Darkroom does not act on): it cannot say which refund
    completed, so nothing is landed or recorded (a webhook event fails for good and stays in the
    admin for an operator). Every adapter maps the events that name their refund."""

    status_code = 422
    slug = "partial-refund-unnamed"
    title = "Partial refund naming no refund"
    when_it_happens = (
        "A payment provider told Darkroom that part of a payment was refunded without saying which refund "
        "it was. Darkroom cannot tell which refund completed, so it records nothing from it."
    )
    what_to_do = PROVIDER_NOTIFICATION_WHAT_TO_DO


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
    when_it_happens = (
        "A payment provider told Darkroom only how much of a payment had been refunded in all, where "
        "Darkroom needs to know which refund it was: such a total may be older than other news of the "
        "payment that came first. Darkroom records nothing from it."
    )
    what_to_do = PROVIDER_NOTIFICATION_WHAT_TO_DO


class RefundCurrencyMismatch(DomainError):
    """A provider event reports a refund in a currency other than its payment's (Stripe's refund
    `currency`, PayPal's `amount.currency_code`, Flutterwave's `currency`, compared whatever their
    case), or an amount naming no currency: no refund of the payment is in it, and its figure
    read as the payment's currency would count 5000 JPY as 50.00 EUR. Nothing is landed or
    recorded (a webhook event fails for good and stays in the admin for an operator)."""

    status_code = 422
    slug = "refund-currency-mismatch"
    title = "Refund in another currency"
    when_it_happens = (
        "A payment provider reported a refund in a currency other than the payment's, or an amount with no "
        "currency. It cannot be a refund of that payment, so Darkroom records nothing from it."
    )
    what_to_do = PROVIDER_NOTIFICATION_WHAT_TO_DO


class RefundAmountUnreadable(DomainError):
    """A provider event reports a refund amount (its own, or the payment's refunded total) that
    no refund can be: nothing or less, or beyond what a bigint of minor units holds (a `Refund`
    row could not store it). Nothing is landed or recorded (a webhook event fails for good and
    stays in the admin for an operator)."""

    status_code = 422
    slug = "refund-amount-unreadable"
    title = "Unreadable refund amount"
    when_it_happens = (
        "A payment provider reported a refund amount no refund can be: zero, less than zero, or larger "
        "than any amount Darkroom can record. Darkroom records nothing from it."
    )
    what_to_do = PROVIDER_NOTIFICATION_WHAT_TO_DO


class SecondChargeRefundedInPart(DomainError):
    """A provider event reports part of a second charge (`duplicate_charge`) refunded outside
    Darkroom (its dashboard): Darkroom gives a second charge back whole, and a part can neither
    land its refund nor be sent on top. Nothing is landed or recorded (a webhook event fails for
    good and stays in the admin for an operator)."""

    status_code = 422
    slug = "second-charge-refunded-in-part"
    title = "Part of a second charge refunded at the provider"
    when_it_happens = (
        "A payment provider reported that part of a second charge (a shopper charged twice for one order) "
        "was refunded in the provider's own dashboard. Darkroom gives a second charge back whole, so it "
        "can neither record that part as its refund nor send the rest on top; it records nothing from it."
    )
    what_to_do = PROVIDER_NOTIFICATION_WHAT_TO_DO


class PaymentForUnknownCheckout(DomainError):
    """A provider event names a checkout (or reference) Darkroom does not have."""

    status_code = 404
    slug = "payment-for-unknown-checkout"
    title = "Payment for an unknown checkout"
    when_it_happens = (
        "A payment provider's notification names an order Darkroom does not have, so there is nothing to apply it to."
    )
    what_to_do = PROVIDER_NOTIFICATION_WHAT_TO_DO


class EntitlementNotFound(NotFound):
    """A download link names a photo its buyer can no longer download: the purchase was
    refunded, or the photo, bought with all the event's photos, was withdrawn since."""

    slug = "entitlement-not-found"
    title = "No such download"
    what_to_do = (
        "Ask the shopper's downloads again (GET /api/v1/entitlements with their e-mail address): it lists "
        "each photo they may still download, with fresh links."
    )


class CheckoutNotShippable(DomainError):
    """A checkout that cannot be marked shipped: not paid, nothing to ship (no confirmed print),
    or already shipped (`AlreadyShipped`)."""

    status_code = 409
    slug = "checkout-not-shippable"
    title = "The checkout cannot be shipped"
    when_it_happens = (
        "An order was marked shipped that cannot be: it is not paid, it has no prints, or none of its prints "
        "is left to ship (each sold out, or refunded or being refunded). `detail` says which. Nothing was "
        "changed."
    )
    what_to_do = "Mark shipped only a paid order that has prints left to ship."


class AlreadyShipped(CheckoutNotShippable):
    """The order was marked shipped already (`detail` says when, and with which carrier)."""

    slug = "checkout-already-shipped"
    title = "Already shipped"
    what_to_do = (
        "Nothing is needed: the shopper was told when it was marked shipped, and the shipment stays as first recorded."
    )


class CheckoutNotRefundable(DomainError):
    """A refund the studio cannot ask for: the checkout is not paid (never paid, refunded
    already), or a refund of it is under way (`RefundAlreadyRequested`)."""

    status_code = 409
    slug = "checkout-not-refundable"
    title = "The checkout cannot be refunded"
    when_it_happens = "A refund of an order that is not paid: it was never paid, or it is refunded in full already."
    what_to_do = (
        "Read the order (GET /api/v1/checkouts/{id}): only an order whose `status` is paid is refunded. "
        "Nothing was written."
    )


class PrintsNotRestockable(CheckoutNotRefundable):
    """A refund asked to put prints back in stock for an order with none waiting to be shipped."""

    slug = "prints-not-restockable"
    title = "No prints to put back in stock"
    when_it_happens = (
        "A refund asked to put prints back in stock (`restock_prints`), but none of the items refunded is "
        "a print waiting to be shipped: none of them is a print, or the order's prints were shipped "
        "already. Nothing was written."
    )
    what_to_do = (
        "Send the refund without `restock_prints`, or name the prints in it: shipped prints do not come "
        "back into stock."
    )


class RefundAlreadyRequested(CheckoutNotRefundable):
    """A refund of the order, or of one of the items named, is under way or done already.
    Nothing was written; `detail` says which items."""

    slug = "refund-already-requested"
    title = "Refund already requested"
    what_to_do = (
        "Wait until the refund under way is done, then refund only the items not refunded yet "
        "(GET /api/v1/checkouts/{id} shows the order as it is now)."
    )


class RefundExceedsPayment(CheckoutNotRefundable):
    """A refund of some items that would give back more than is left of the payment (parts of it
    were refunded in the provider's dashboard, or items refunded since a refused refund): the
    provider would refuse it. Nothing is written; refund the order's last items instead, which
    take what is left."""

    slug = "refund-exceeds-payment"
    title = "More than is left of the payment"
    when_it_happens = (
        "The items named for a refund come to more than is left of the payment: part of it was refunded in "
        "the payment provider's own dashboard, or other items were refunded since. The provider would "
        "refuse it. Nothing was written."
    )
    what_to_do = (
        "Refund the order's remaining items together (or send the refund without `lines`): the order's last "
        "items give back whatever is left of the payment."
    )


class RefundNotSettleable(DomainError):
    """A refund an operator cannot record as paid back outside the provider: it is not one the
    provider left unpaid (refused, or failed after it landed), it was settled already, the note
    saying how is missing, or another refund of the payment still awaits the provider. Nothing
    is written."""

    status_code = 409
    slug = "refund-not-settleable"
    title = "The refund cannot be settled outside the provider"
    when_it_happens = (
        "Darkroom's support team tried to record a refund as paid back to the shopper another way (a bank "
        "transfer, say), and it cannot be: the payment provider did not refuse or fail that refund, it was "
        "recorded so already, the note saying how the shopper was paid is missing or too long, or another "
        "refund of the payment is still with the provider. Nothing was written."
    )
    what_to_do = (
        "Nothing is asked of an API client: only Darkroom's support team records such refunds. They correct "
        "what `detail` says, or wait for the provider, and try again."
    )


class RefundLinesInvalid(DomainError):
    """Items named for a refund that are not refundable items of the order: another order's,
    never charged (sold out, released), or named twice. Nothing is written."""

    status_code = 400
    slug = "refund-lines-invalid"
    title = "Those items cannot be refunded"
    what_to_do = (
        "Send in `lines` the ids of the order's own charged lines, each once: GET /api/v1/checkouts/{id} "
        "lists them with their state."
    )


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
    when_it_happens = (
        "A new order would leave one shopper holding more than they may in orders not paid yet. With a "
        "`Retry-After` header (status 429), the same order may be placed once that many seconds have passed, "
        "or sooner once one of their open orders is paid; without one (status 409), waiting does not help: "
        "the order alone is over the limit. Nothing was written."
    )
    what_to_do = (
        "With `Retry-After`, wait that many seconds (or pay an open order) and send it again; without it, "
        "order less, as `detail` says."
    )

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
    when_it_happens = (
        "A shopper placing an order in the shop already has as many orders awaiting payment at the studio "
        "as one shopper may have at once. Nothing was written."
    )
    what_to_do = (
        "Pay for one of those orders, or wait until an unpaid one lapses (the `Retry-After` header gives "
        "the seconds until the first does), then place the order again."
    )

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
    when_it_happens = (
        "A checkout sent with `shopper_ip` would leave the shopper's network (an IPv4 address, or an IPv6 "
        "/64) holding more of a print, in orders not yet paid, than one network may: a share of the print's "
        "stock. Units the network let lapse unpaid recently count as still held while little of "
        "the print is left. The body names the print (`product`), how many more of it the network may hold "
        "now (`available`), the share (`share`) and the rule that refused (`reason`: `share` or `lapsed`). "
        "Nothing was written."
    )
    what_to_do = (
        "With a `Retry-After` header (status 429), wait that many seconds, or until one of the network's "
        "orders is paid, and send it again. Without one (status 409) the quantity alone is over the share: "
        "order at most `share` of the print."
    )
