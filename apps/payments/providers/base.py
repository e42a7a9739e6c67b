"""The one interface every payment provider adapter implements, and the values it speaks in.

An adapter is the boundary between Darkroom and a provider's HTTP API: it formats requests
(amounts, idempotency keys, return URLs), authenticates webhook deliveries with the provider's
real signature scheme and translates provider payloads into `WebhookEnvelope`s whose `status`
the commerce state machine understands. Adapters hold no database state and open no
transaction; callers must never call `create_session`, `close_payment_session`, `fetch_status`,
`refund`, `payout` (or PayPal's `capture`) inside a database transaction (STYLE.md: no provider
calls in transactions).

Money is integer minor units plus an ISO 4217 code everywhere in this interface; adapters
convert to and from the provider's representation (Flutterwave and PayPal use decimal major
units) exactly, never through floats.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, ClassVar

from apps.core import currencies
from apps.core.problems import DomainError, NotFound
from apps.core.text import is_storable_text
from apps.payments.providers.returns import RETURN_PARAMETER, ShopperReturn


class PaymentStatus(StrEnum):
    """What a provider says about a payment, in the commerce state machine's vocabulary.

    PENDING: not settled yet (session open, asynchronous payment method still processing).
    APPROVED: the buyer approved but the merchant must still capture (PayPal orders only);
        it is NOT money received: capture, then wait for the capture's own status.
    PAID: money captured. FAILED: the attempt was declined or failed for good.
    REFUNDED: a refund completed (also partial ones: compare the envelope's `amount_minor`).
    REFUND_FAILED: a refund the provider had accepted did not complete (the card was closed, say):
        the money went back to the merchant's balance, not to the shopper. `refund_id` names it.
    EXPIRED: the session or order timed out or was voided unpaid.
    UNKNOWN: an event type Darkroom does not act on; record it and ignore it.
    """

    PENDING = "pending"
    APPROVED = "approved"
    PAID = "paid"
    FAILED = "failed"
    REFUNDED = "refunded"
    REFUND_FAILED = "refund_failed"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


class WebhookSignatureError(DomainError):
    """A webhook delivery failed authentication; `detail` says why. Nothing may be recorded."""

    status_code = 400
    slug = "invalid-webhook-signature"
    title = "Invalid webhook signature"
    when_it_happens = (
        "A notification posted to a payment provider's webhook address at Darkroom (/webhooks/<provider>) "
        "does not carry a valid signature of that provider: it is missing, does not match the body, or was "
        "made with another signing secret; `detail` says which. Darkroom recorded nothing of it."
    )
    what_to_do = (
        "A provider sends a refused notification again by itself. If the provider's genuine notifications "
        "are refused, the webhook's signing secret at the provider is not the one Darkroom has: set the "
        "same secret in both places."
    )


class WebhookPayloadError(DomainError):
    """An authenticated delivery whose body is not the JSON shape the provider documents."""

    status_code = 400
    slug = "malformed-webhook"
    title = "Malformed webhook payload"
    when_it_happens = (
        "A notification posted to a payment provider's webhook address at Darkroom has a valid signature, "
        "but its body is not the JSON the provider documents (a field missing, or a value that cannot be "
        "read); `detail` says what."
    )
    what_to_do = (
        "Nothing, if the provider sent it: Darkroom's support team is told of it. When you send test "
        "notifications yourself, send them as the provider documents them."
    )


class ProviderError(DomainError):
    """A provider API call failed. `retryable` is True for timeouts, 409, 429 and 5xx.
    `response_body` holds the start of the provider's error answer, for adapters that read the
    provider's error codes out of it (never shown as it is)."""

    status_code = 502
    slug = "payment-provider-error"
    title = "Payment provider error"
    when_it_happens = (
        "A payment provider did not give Darkroom a usable answer: it timed out, was unavailable, or "
        "refused the call; `detail` says which provider and what it said."
    )

    def __init__(
        self,
        detail: str,
        *,
        provider: str,
        retryable: bool,
        http_status: int | None = None,
        extra: dict[str, Any] | None = None,
        response_body: bytes = b"",
    ) -> None:
        super().__init__(detail, extra=extra)
        self.provider = provider
        self.retryable = retryable
        self.http_status = http_status
        self.response_body = response_body


class PayoutDestinationError(DomainError):
    """A payout destination the provider cannot pay to (malformed account id, e-mail or bank
    account); `detail` says what is expected. Raised before anything is sent."""

    status_code = 400
    slug = "invalid-payout-destination"
    title = "Invalid payout destination"
    when_it_happens = (
        "A payout destination that the payment provider cannot pay to: not written the way that provider "
        "needs (a Stripe connected account id, a PayPal e-mail address, a Flutterwave bank code and account "
        "number), empty, or too long; `detail` says what is expected. Nothing was sent to the provider, and "
        "nothing was written."
    )
    what_to_do = "Send the destination written as `detail` says."


class UnknownProviderError(NotFound):
    """`get_provider` was asked for a provider name Darkroom does not have."""

    slug = "unknown-payment-provider"
    title = "Unknown payment provider"
    when_it_happens = (
        "A notification was posted to a webhook address at Darkroom naming a payment provider Darkroom "
        "does not take payments with here (/webhooks/<provider>), or the sandbox where it is turned off."
    )
    what_to_do = (
        "Point the provider's webhook at the address of its own name: /webhooks/stripe, /webhooks/paypal "
        "or /webhooks/flutterwave."
    )


class SessionCloseOutcome(StrEnum):
    """What `close_payment_session` found, all of them final (nothing left to do):

    CLOSED: the provider closed the open session now; the shopper can no longer pay in it.
    ALREADY_CLOSED: it was closed before (expired at the provider, or closed by an earlier call).
    COMPLETED: the shopper got there first: the session was paid (or failed) before it could be
        closed. The provider's webhook reports that payment, and the state machine refunds it as
        a late payment.
    NOT_SUPPORTED: the provider's API has no call that closes the session; the adapter's
        docstring says what bounds the shopper's window instead. Nothing was sent.
    """

    CLOSED = "closed"
    ALREADY_CLOSED = "already_closed"
    COMPLETED = "completed"
    NOT_SUPPORTED = "not_supported"


@dataclass(frozen=True)
class ProviderSession:
    """A hosted payment page: where to send the shopper and the provider's reference for it.

    `reference` is what the checkout stores (`stripe_checkout_session_id`, `flutterwave_tx_ref`,
    `paypal_order_id`, or the sandbox reference) and what webhooks carry back.
    """

    reference: str
    payment_url: str


@dataclass(frozen=True)
class PaymentState:
    """The provider's current view of one payment (`fetch_status`, `capture`).

    Amount and currency are what the provider reports as charged; callers compare them with the
    checkout before granting anything (Flutterwave's hosted page, for one, documents this check).
    """

    status: PaymentStatus
    amount_minor: int | None = None
    currency: str | None = None
    payment_id: str | None = None


@dataclass(frozen=True)
class RefundResult:
    """A refund the provider accepted: its id, PENDING or REFUNDED (or FAILED), and the amount."""

    refund_id: str
    status: PaymentStatus
    amount_minor: int
    currency: str


class PayoutStatus(StrEnum):
    """What a provider says about a payout it answered.

    PAID: the provider has moved the money (a Stripe transfer, the sandbox).
    PENDING: accepted; the final state comes later (PayPal batch, Flutterwave transfer).
    FAILED: the provider answered, and says this payout failed or was denied: nothing was paid.
    """

    PAID = "paid"
    PENDING = "pending"
    FAILED = "failed"


@dataclass(frozen=True)
class PayoutResult:
    """A payout the provider answered: its id for the payout, the status, and the amount and
    currency the provider reports (the caller compares them with what it asked for)."""

    provider_payout_id: str
    status: PayoutStatus
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class PayoutEvent:
    """What a provider's payout webhook says about one payout, in the settle task's vocabulary.

    `result` maps the provider's payload the way the adapter's `payout_status` maps the object
    read back (same statuses, same caution), so a webhook and the settle task cannot disagree.
    `payout_id` is Darkroom's payout id when the provider echoes it (Stripe `metadata[payout_id]`,
    Flutterwave `reference`, PayPal `sender_item_id`): it finds a payout whose provider answer is
    not recorded yet. `review` is non-empty when the provider reports what only an operator can
    settle (a partly reversed Stripe transfer, a failed Flutterwave transfer, a blocked PayPal
    item): it says why, and the payout goes to `needs_review` instead of settling.
    """

    result: PayoutResult
    payout_id: str | None = None
    review: str = ""


@dataclass(frozen=True)
class WebhookEnvelope:
    """One authenticated webhook delivery, translated.

    `event_id` is the provider's id of the event (dedupe key with the provider name).
    `reference` is the provider reference of the session/order the checkout stored, when the
    event carries it (Stripe charge events and some PayPal refund events do not); `checkout_id`
    is Darkroom's checkout id echoed back by the provider (Stripe metadata/client_reference_id,
    Flutterwave tx_ref, PayPal custom_id). `payment_id` is the provider's id of the underlying payment (Stripe
    PaymentIntent, Flutterwave transaction id, PayPal capture id). `raw` is the parsed JSON body
    (plain floats; store the raw bytes if exact figures are needed).

    For REFUNDED, `amount_minor` is the amount refunded, `refund_id` the provider's id of the
    one refund the event is about, where the event names one (the id `refund` returned as
    `RefundResult.refund_id`; None on every other event), and `refund_amount_minor` that one
    refund's own amount, where the event says it. Several refunds of one payment each send
    their own event. Per provider:
        Stripe `refund.created` / `refund.updated` with the refund `succeeded`: the object is the
            refund, `refund_id` its id; `amount_minor` and `refund_amount_minor` are THIS
            refund's `amount` (its `charge.refunded` reports only the charge's cumulative
            `amount_refunded`, which cannot say which refund completed: it is not acted on).
        PayPal PAYMENT.CAPTURE.REFUNDED / .REVERSED: the resource is the refund, `refund_id` its
            id, `refund_amount_minor` its `amount`; `amount_minor` is
            `seller_payable_breakdown.total_refunded_amount`, CUMULATIVE over the capture's
            refunds, or this refund's own `amount` when the breakdown lacks it.
        Flutterwave `refund.completed`: `data` is the refund, `refund_id` its `id`;
            `amount_minor` and `refund_amount_minor` are THIS refund's amount (`AmountRefunded`
            / `amount_refunded` / `amount`): Flutterwave reports no total. Its refund objects
            may name no currency: the amount then stays as written, in major units
            (`amount_major`), for the payment's currency to convert when the event is applied.
        Sandbox `payment.refunded`: `refund_id` is the refund's `re_sbx_...` id,
            `refund_amount_minor` its `refund_amount_minor`; `amount_minor` is CUMULATIVE (the
            refunds of the payment up to and including this one).

    For REFUND_FAILED, `refund_id` names the refund and `refund_failure` says why (Stripe
    `refund.failed`, or `refund.updated` with the refund `failed` or `canceled`; Flutterwave
    `refund.completed` with the refund `failed`).

    Every envelope whose status is not UNKNOWN names at least one of `reference`, `checkout_id`
    and `payment_id`; a known event type that names none (a payment Darkroom did not create)
    comes back UNKNOWN, to be recorded and ignored rather than refused (a 4xx would only make
    the provider redeliver it for days).

    `payout` is set for a provider's payout events (transfers, payout items), whose `status` is
    UNKNOWN: the payment state machine never acts on them; the payouts app settles the payout.
    Their `reference` is the provider's payout id (what operators search the webhook ledger by).
    """

    provider: str
    event_id: str
    event_type: str
    status: PaymentStatus
    reference: str | None = None
    checkout_id: str | None = None
    payment_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    occurred_at: datetime | None = None
    payout: PayoutEvent | None = None
    refund_id: str | None = None
    refund_amount_minor: int | None = None
    # A REFUNDED event's amount in major units, as written, when the event names no currency
    # (`amount_minor` is None then): the payment's currency converts it.
    amount_major: str | None = None
    # A REFUND_FAILED event's reason, as the provider gives it ("expired_or_canceled_card").
    refund_failure: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def unstorable_fields(self) -> list[str]:
        """The identifiers PostgreSQL text cannot hold (a NUL, a lone surrogate). No provider
        sends such ids; the rest of the body is kept as bytes, whatever its strings hold."""
        names = ("event_id", "event_type", "reference", "checkout_id", "payment_id", "currency", "refund_id")
        values: dict[str, str | None] = {name: getattr(self, name) for name in names}
        if self.payout is not None:
            values["payout.provider_payout_id"] = self.payout.result.provider_payout_id
            values["payout.payout_id"] = self.payout.payout_id
            values["payout.currency"] = self.payout.result.currency
            values["payout.review"] = self.payout.review
        return [name for name, value in values.items() if value is not None and not is_storable_text(value)]


@dataclass(frozen=True)
class WebhookSetup:
    """What a provider says about Darkroom's webhook endpoint at its end (`webhook_setup`).

    `problems` are what keeps events from landing (a missing subscription, a wrong URL): each one a
    sentence an operator can act on. `notes` are what the operator should know but need not fix
    (a version that cannot be read, what to set where nothing can be read). `checked` is False
    when the provider has no API to read the setup from: nothing was asked, `notes` say what to
    set by hand.
    """

    checked: bool
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def events_not_subscribed(needed: frozenset[str], *subscriptions: object) -> list[str]:
    """The event types of `needed` that none of a webhook's subscription lists holds, sorted; "*"
    covers every one. Each of `subscriptions` is a provider's JSON list, whose strings count
    (anything else holds none)."""
    names = {item for found in subscriptions if isinstance(found, list) for item in found if isinstance(item, str)}
    return [] if "*" in names else sorted(needed - names)


class PaymentProvider(ABC):
    """A payment provider adapter. Implementations are stateless apart from caches of
    credentials (OAuth tokens, certificates) and are safe to share between threads.
    """

    name: str
    # Whether one session of the provider can take two successful payments, each of its own
    # payment id (README "A second charge"): then a refund event naming a payment id other than
    # the one stored may be of a second charge Darkroom has not seen yet. Flutterwave's hosted page
    # can; a Stripe session (one PaymentIntent), a PayPal CAPTURE order and the sandbox cannot.
    charges_a_session_twice: ClassVar[bool] = False

    @abstractmethod
    def create_session(
        self,
        *,
        checkout_id: str,
        amount_minor: int,
        currency: str,
        email: str,
        description: str,
        success_url: str,
        cancel_url: str,
        expires_at: datetime | None = None,
    ) -> ProviderSession:
        """Create (or, for a repeated checkout id, get back) the hosted payment session.

        The checkout id is the provider's idempotency key, so retrying after a timeout returns
        the same session instead of a second one. The provider sends the shopper back to
        `success_url` after paying and to `cancel_url` otherwise (`returns.py`: one return URL
        told apart by `darkroom_return`). `expires_at` is when the checkout expires
        unpaid: adapters whose provider lets a session time out make it end then, or as soon
        after as the provider allows (None: the provider's default lifetime). Must be called
        outside any transaction. Raises ProviderError.
        """

    @classmethod
    def return_says_paid(cls, query: Mapping[str, str]) -> bool:
        """Whether the URL the shopper came back to (its query) says they paid: the success
        URL's `darkroom_return=paid` (`returns.py`). Never proof of payment, which only the
        webhook gives: it may change what a page says while it waits, and nothing else."""
        return query.get(RETURN_PARAMETER) == ShopperReturn.PAID

    @abstractmethod
    def close_payment_session(self, *, reference: str) -> SessionCloseOutcome:
        """Close the session behind `reference` (what `create_session` returned) so the shopper can
        no longer pay in it: called once its checkout expired unpaid.

        Idempotent: closing a closed session again answers ALREADY_CLOSED, and a session that
        was paid first answers COMPLETED; neither is an error. A provider without such a call
        answers NOT_SUPPORTED without sending anything. Must be called outside any transaction.
        Raises ProviderError (retryable for timeouts, 409, 429 and 5xx).
        """

    @abstractmethod
    def verify_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> None:
        """Authenticate a delivery against the raw request bytes; never re-serialised JSON.

        Raises WebhookSignatureError with the reason (missing or malformed header, mismatch,
        stale timestamp, untrusted certificate, ...).
        """

    @abstractmethod
    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> WebhookEnvelope:
        """Translate an already verified delivery. Raises WebhookPayloadError."""

    @abstractmethod
    def fetch_status(self, *, reference: str) -> PaymentState:
        """Ask the provider for the payment's current state (reconciliation, missed webhooks).

        Raises ProviderError.
        """

    @abstractmethod
    def refund(
        self, *, reference: str, amount_minor: int, idempotency_key: str, payment_id: str | None = None
    ) -> RefundResult:
        """Refund `amount_minor` of the payment behind `reference`: of its charge `payment_id`
        (the provider's id of it, as its events name it) when given, which the adapter refuses
        (ProviderError, not retryable, nothing refunded) unless it is a charge of `reference`.
        Only a Flutterwave tx_ref can be charged more than once (a second charge is refunded by
        its own id); the other providers' sessions have one payment, which the id must name.

        `idempotency_key` is sent as the provider's idempotency key: the same key never refunds
        twice. Must be called outside any transaction. Raises ProviderError.
        """

    @abstractmethod
    def normalize_payout_destination(self, destination: str) -> str:
        """Validate where this provider pays money to and return its canonical form (what a
        PayoutDestination stores). No network call. Raises PayoutDestinationError.
        """

    @abstractmethod
    def payout(
        self,
        *,
        payout_id: str,
        amount_minor: int,
        currency: str,
        destination: str,
        description: str,
    ) -> PayoutResult:
        """Send `amount_minor` of `currency` to `destination` (as `normalize_payout_destination`
        accepts it).

        `payout_id` is the provider's idempotency key: a retry after a timeout returns the first
        attempt's payout, never a second one. Must be called outside any transaction.
        Raises ProviderError: `retryable` for timeouts, 409, 429 and 5xx and where the adapter
        knows the outcome is unknown (money may have moved); otherwise not retryable. A
        non-retryable error does NOT prove nothing was paid (a refusal of a retry whose first
        attempt timed out, an unreadable 2xx answer): `apps.payouts.services.payout_submit`
        credits a payout back only for the first attempt's 4xx. Raises PayoutDestinationError
        (nothing sent) for a destination the adapter does not accept, ValueError for a bad amount
        or currency.
        """

    @abstractmethod
    def payout_status(self, *, payout_id: str, provider_payout_id: str) -> PayoutResult:
        """The provider's current view of a payout this adapter made: `payout_id` is ours,
        `provider_payout_id` the id `payout` returned. Read-only; call outside any transaction.

        Statuses follow the adapter's `payout` mapping: FAILED only where the provider says the
        money never left or came back (the caller credits it back), PAID only where it says the
        receiver has it, anything in between or unclear PENDING. Amount and currency are what the
        provider reports for this payout (the caller compares them with the payout).
        Raises ProviderError: retryable for timeouts, 409, 429 and 5xx; non-retryable with
        `http_status` 404 for a payout the provider does not know; non-retryable for an answer
        that belongs to another payout (its reference is not `payout_id`) or that lacks the
        amount or currency. ValueError for an empty id.
        """

    def payout_sendable_minor(self, *, amount_minor: int, currency: str) -> int:
        """The most of a positive `amount_minor` a payout can send in `currency`: all of it by
        default; an adapter whose provider takes only some amounts (PayPal: whole units of HUF,
        JPY and TWD) says less, and the rest stays in the wallet."""
        return amount_minor

    def confirm_payment(self, *, envelope: WebhookEnvelope) -> WebhookEnvelope:
        """The envelope of a verified delivery as the provider's API confirms it, for providers
        whose documentation says a webhook must not be trusted alone before giving value (the
        webhook consumer calls it before processing, outside any transaction). The default: the
        envelope as it is (its signature binds the body). Raises ProviderError."""
        return envelope

    def webhook_setup(self, *, url: str) -> WebhookSetup:
        """Ask the provider whether its webhook endpoint for this account delivers to `url` (where
        Darkroom receives this provider's webhooks) every event the adapter acts on. Read-only;
        call outside any transaction. The default: the provider has no API to ask, so nothing is
        sent and the answer says so. Raises ProviderError when the provider could not be asked
        (unreachable, credentials refused)."""
        return WebhookSetup(
            checked=False,
            notes=(f"{self.name} has no API to read its webhook settings from: point them at {url} by hand",),
        )

    def authenticate(self, *, body: bytes, headers: Mapping[str, str]) -> WebhookEnvelope:
        """`verify_webhook` then `parse_webhook`: what a webhook endpoint calls."""
        self.verify_webhook(body=body, headers=headers)
        return self.parse_webhook(body=body, headers=headers)


# --- helpers shared by the adapters --------------------------------------------------------


def identified_or_unknown(envelope: WebhookEnvelope) -> WebhookEnvelope:
    """Downgrade an envelope that cannot be matched to any payment to UNKNOWN."""
    if envelope.reference or envelope.checkout_id or envelope.payment_id:
        return envelope
    return replace(envelope, status=PaymentStatus.UNKNOWN)


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that works on plain dicts and on Django's HttpHeaders."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def require_bytes(body: object) -> bytes:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError("webhook bodies are verified as the raw request bytes")
    return bytes(body)


def parse_json_object(body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parse a webhook body twice: with Decimal numbers (for amounts) and plain (for `raw`).

    Raises WebhookPayloadError unless the body is a UTF-8 JSON object.
    """
    try:
        exact = json.loads(body, parse_float=Decimal)
        plain = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookPayloadError(f"body is not valid JSON: {exc}") from exc
    if not isinstance(exact, dict):
        raise WebhookPayloadError("body is not a JSON object")
    return exact, plain


def as_dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_str(value: object) -> str | None:
    """A non-empty string, or None; ints (Flutterwave transaction ids) become strings."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


_EPOCH_MIN = int(datetime(1, 1, 2, tzinfo=UTC).timestamp())
_EPOCH_MAX = int(datetime(9999, 12, 30, tzinfo=UTC).timestamp())


def epoch_to_datetime(value: object) -> datetime | None:
    """Unix seconds as an aware datetime; None for anything else, also for seconds outside what
    a datetime can hold (a provider's timestamp is informational, never worth a 500)."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    if not _EPOCH_MIN <= value <= _EPOCH_MAX:  # before int(): 1e999999999 is a Decimal too
        return None
    return datetime.fromtimestamp(int(value), tz=UTC)


def iso_to_datetime(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- money ---------------------------------------------------------------------------------

_CURRENCY = re.compile(r"^[A-Z]{3}$")
# A well-formed code outside CURRENCY_EXPONENTS can only come from rows written before that table
# existed, when any three letters were accepted and amounts in them were typed and stored with 2
# decimals: `minor_to_major` shows such amounts as they were entered, so old pages, receipts and
# statements stay readable. Nothing converts an amount into minor units of such a code.
_LEGACY_EXPONENT = 2


def normalize_currency(currency: str) -> str:
    """The code in capitals ("eur" -> "EUR"); ValueError unless it is three letters. This checks
    the shape only: `apps.core.currencies.currency_supported` says whether Darkroom sells in it."""
    code = currency.upper()
    if not _CURRENCY.match(code):
        raise ValueError(f"not an ISO 4217 currency code: {currency!r}")
    return code


def currency_exponent(currency: str) -> int:
    """The decimals of a currency Darkroom sells in, from `apps.core.currencies` ("usd" -> 2).
    Raises ValueError for a malformed code and UnsupportedCurrency (a ValueError) for one outside
    the table."""
    return currencies.currency_exponent(normalize_currency(currency))


def minor_to_major(amount_minor: int, currency: str) -> str:
    """12345, "USD" -> "123.45"; 500, "JPY" -> "500". Exact (no floats). A well-formed code
    outside the currency table (an old row) is shown with 2 decimals; ValueError for a malformed
    one."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError("amounts are integers in minor units")
    exponent = currencies.CURRENCY_EXPONENTS.get(normalize_currency(currency), _LEGACY_EXPONENT)
    value = Decimal(amount_minor).scaleb(-exponent)
    return f"{value:.{exponent}f}"


def money_text(amount_minor: int, currency: str) -> str:
    """12345, "EUR" -> "123.45 EUR": an amount as people read it (exact, the currency's own
    number of decimals); what pages and messages show. Below zero with the minus sign (U+2212),
    never a hyphen: -2250, "EUR" -> "\u221222.50 EUR" (a wallet's balance, an account's in the
    admin)."""
    amount = int(amount_minor)
    text = f"{minor_to_major(abs(amount), currency)} {currency}"
    return f"\u2212{text}" if amount < 0 else text


# 10**21 major units is past any bigint of minor units. Not lower: an amount field of the studio's
# forms holds 20 digits, which their own maximum refuses with a message naming it.
_MAX_AMOUNT_DIGITS = 21


def major_to_minor(value: object, currency: str) -> int:
    """ "123.45" or Decimal("123.45") or 123 -> 12345 for USD. Raises ValueError if inexact, and
    UnsupportedCurrency (a ValueError) for a currency outside the table: its decimals are unknown,
    so no amount in it is guessed into minor units."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError(f"not an amount: {value!r}")
    try:
        amount = Decimal(value) if not isinstance(value, Decimal) else value
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {value!r}") from exc
    # Beyond what a bigint holds (no price comes near): refused before scaling, which would
    # overflow the Decimal context or build an integer of millions of digits.
    if not amount.is_finite() or (amount and amount.adjusted() >= _MAX_AMOUNT_DIGITS):
        raise ValueError(f"not an amount: {value!r}")
    minor = amount.scaleb(currency_exponent(currency))
    if minor != minor.to_integral_value():
        raise ValueError(f"{value!r} has more decimals than {currency} allows")
    return int(minor)


def check_amount(amount_minor: int) -> int:
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor <= 0:
        raise ValueError("amount_minor must be a positive integer")
    return amount_minor


# --- payouts -------------------------------------------------------------------------------

MAX_PAYOUT_DESTINATION_LENGTH = 200  # what payouts.PayoutDestination.destination holds


def destination_text(destination: object) -> str:
    """The destination without surrounding whitespace; PayoutDestinationError unless it is a
    non-empty string of at most MAX_PAYOUT_DESTINATION_LENGTH characters."""
    if not isinstance(destination, str):
        raise PayoutDestinationError("the payout destination must be a string")
    text = destination.strip()
    if not text:
        raise PayoutDestinationError("the payout destination is empty")
    if len(text) > MAX_PAYOUT_DESTINATION_LENGTH:
        raise PayoutDestinationError(
            f"the payout destination is longer than {MAX_PAYOUT_DESTINATION_LENGTH} characters"
        )
    return text


def check_payout_id(payout_id: str) -> str:
    """The payout id is every provider's idempotency key: an empty one would dedupe nothing."""
    if not isinstance(payout_id, str) or not payout_id.strip() or payout_id != payout_id.strip():
        raise ValueError("payout_id must be a non-empty string without surrounding whitespace")
    return payout_id


def answer_id(value: str | None, *, provider: str, what: str) -> str | None:
    """An id read from a provider's answer that a later call puts into its URL (a capture, a
    transaction): ASCII and printable, as every provider's ids are. Raises ProviderError (not
    retryable) for anything else, rather than an encoding error out of the next call."""
    if value is None or (value.isascii() and value.isprintable()):
        return value
    raise ProviderError(f"{provider}: {what}: unreadable id {value[:40]!r}", provider=provider, retryable=False)


def check_provider_payout_id(provider_payout_id: str) -> str:
    """The provider's payout id goes into a URL path: an empty one would address a list."""
    if not isinstance(provider_payout_id, str) or not provider_payout_id.strip():
        raise ValueError("provider_payout_id must be a non-empty string")
    return provider_payout_id
