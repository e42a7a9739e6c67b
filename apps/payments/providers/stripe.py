"""Stripe adapter: Checkout Sessions through the official `stripe` package, webhooks verified with
the `Stripe-Signature` t/v1 HMAC-SHA256 scheme (see `signing.py`).

Create: one Checkout Session in payment mode per checkout, `Idempotency-Key` = checkout id (a
retry returns the same session), checkout id in `client_reference_id` and in the metadata of
both the session and its PaymentIntent (so `charge.*` events carry it too: Stripe does not copy
session metadata to charges on its own). Reference = the session id (`cs_...`). `success_url` and
`cancel_url` go as given (`returns.py`: `darkroom_return=paid|cancelled`); a literal
`{CHECKOUT_SESSION_ID}` in a checkout's return URL is left for Stripe to fill in.
Amounts are Darkroom's minor units (ISO 4217) except in ISK, which Stripe's API keeps
two-decimal: `to_stripe_amount` / `from_stripe_amount` convert every payment amount sent and
read (sessions, refunds, their events); transfers are not converted. In the three-decimal
currencies (BHD, JOD, KWD, OMR, TND) Stripe takes payment and refund amounts ending in 0 only; a
session or refund for another amount is refused before anything is sent (a non-retryable
ProviderError: the checkout records it as its `payment_session_error`, a refund fails for an
operator).

Session lifetime: without `expires_at` Stripe keeps a session open for 24 hours, far past the
checkout's own expiry (INVENTORY_RESERVATION_TTL_SECONDS, 15 minutes). Stripe accepts an
`expires_at` between 30 minutes and 24 hours after the request, so a session cannot end with its
checkout; it ends `SESSION_EXPIRY_AFTER_CHECKOUT` (35 minutes) after the checkout's expiry. The
value is derived from the checkout's expiry alone, never from the clock: a retried create reuses
the checkout id as its idempotency key, and Stripe refuses a key sent again with other
parameters (`idempotency_error`), so every attempt must send the same value. 35 minutes (30 plus
a 5-minute margin for clock skew and the expiry sweep's lag) keeps an attempt made up to five
minutes after the checkout's expiry within Stripe's minimum; past that the checkout has expired
and no attempt is made. A checkout living longer than about 23 hours sends no `expires_at`
(Stripe's 24-hour cap applies). This bounds the shopper's window even if the close below is lost.

Close: when the checkout expires unpaid, `close_payment_session` expires the session at once
(`POST /v1/checkout/sessions/<id>/expire`, `Idempotency-Key: expire:<id>`). Stripe expires only
`open` sessions and answers anything else with an error; the session is then read back: already
`expired` is ALREADY_CLOSED, `complete` (the shopper paid first) is COMPLETED, and a session
still `open` re-raises the refusal.

Webhook mapping:
    checkout.session.completed        -> PAID, or PENDING while payment_status is "unpaid"
                                         (delayed methods: the money comes with the next event)
    checkout.session.async_payment_succeeded -> PAID
    checkout.session.async_payment_failed    -> FAILED
    checkout.session.expired          -> EXPIRED
    refund.created, refund.updated    -> by the refund's `status`: `succeeded` REFUNDED,
                                         `failed` / `canceled` REFUND_FAILED, `pending` /
                                         `requires_action` UNKNOWN (nothing happened yet).
                                         The object is the refund: refund_id = its id,
                                         amount = its own amount; matched by its
                                         `metadata[session]` (Darkroom's refunds) or its
                                         PaymentIntent (a refund made in the dashboard).
                                         Since API version 2024-10-28 Stripe sends these for
                                         every refund.
    refund.failed                     -> REFUND_FAILED (reason: the refund's failure_reason)
    charge.refunded                   -> UNKNOWN on purpose: it reports the charge's cumulative
                                         `amount_refunded` and (since API version 2022-11-15)
                                         no list of refunds, so it cannot say which of several
                                         refunds completed; a dashboard refund finishing before
                                         Darkroom's would land Darkroom's early. The refund
                                         events above name theirs.
    anything else                     -> UNKNOWN

The endpoint must be subscribed to the session events, `refund.created`, `refund.updated`,
`refund.failed` and, for payouts, the transfer events (README, "Stripe webhook endpoint");
`webhook_setup` reads the account's endpoints (`GET /v1/webhook_endpoints`) and says what is
missing (`manage.py payments_webhooks_check`).

Payouts: a Connect transfer (`POST /v1/transfers`) to the photographer's connected account
(`acct_...`), `Idempotency-Key` = payout id (Stripe replays the first answer for 24 hours), the
payout id also in `transfer_group` and `metadata[payout_id]`. A transfer moves the money when it
is created, so the result is PAID; FAILED when the transfer is fully reversed (`reversed` is
true: Stripe sets it only once the whole amount is reversed, and a reversal adds the money back to
the platform balance); PENDING when it is partly reversed (`amount_reversed` above 0: part of the
money came back, which a payout has no state for, so an operator settles it).
`payout_status` reads the transfer back (`GET /v1/transfers/<id>`) with the same mapping.

Payout webhooks (`transfer.created`, `transfer.updated`, `transfer.reversed`; `data.object` is
the transfer, so the same mapping applies): PAID, FAILED once fully reversed, and a partial
reversal PENDING with a review note, so the payout goes to an operator (see
`apps.payouts.services.payout_apply_provider_event`). Only the platform can reverse a transfer
(the API or the dashboard): a reversal of a paid payout is someone's decision, which is why it
is never credited back to the wallet without an operator.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import stripe
from stripe.params import TransferCreateParams, WebhookEndpointListParams
from stripe.params.checkout import SessionCreateParams

from apps.payments.providers.base import (
    PaymentProvider,
    PaymentState,
    PaymentStatus,
    PayoutDestinationError,
    PayoutEvent,
    PayoutResult,
    PayoutStatus,
    ProviderError,
    ProviderSession,
    RefundResult,
    SessionCloseOutcome,
    WebhookEnvelope,
    WebhookPayloadError,
    WebhookSetup,
    answer_id,
    as_dict,
    as_str,
    check_amount,
    check_payout_id,
    check_provider_payout_id,
    destination_text,
    epoch_to_datetime,
    events_not_subscribed,
    header_value,
    identified_or_unknown,
    normalize_currency,
    parse_json_object,
    require_bytes,
)
from apps.payments.providers.http import HttpRequest, HttpTransport, TransportError, UrllibTransport
from apps.payments.providers.signing import verify_header

SIGNATURE_HEADER = "Stripe-Signature"

_SESSION_EVENTS: dict[str, PaymentStatus] = {
    "checkout.session.completed": PaymentStatus.PAID,
    "checkout.session.async_payment_succeeded": PaymentStatus.PAID,
    "checkout.session.async_payment_failed": PaymentStatus.FAILED,
    "checkout.session.expired": PaymentStatus.EXPIRED,
}
_SETTLED_PAYMENT_STATUSES = frozenset({"paid", "no_payment_required"})
_REFUND_STATUSES: dict[str, PaymentStatus] = {
    "succeeded": PaymentStatus.REFUNDED,
    "pending": PaymentStatus.PENDING,
    "requires_action": PaymentStatus.PENDING,
    "failed": PaymentStatus.FAILED,
    "canceled": PaymentStatus.FAILED,
}
# What a refund event means, by the refund's `status` (`refund.failed` is REFUND_FAILED whatever):
# a refund not finished yet is nothing to act on, one that failed or was canceled is REFUND_FAILED.
REFUND_EVENTS = frozenset({"refund.created", "refund.updated", "refund.failed"})
_REFUND_EVENT_STATUSES: dict[str, PaymentStatus] = {
    refund_status: PaymentStatus.REFUND_FAILED if status is PaymentStatus.FAILED else status
    for refund_status, status in _REFUND_STATUSES.items()
    if status is not PaymentStatus.PENDING
}
_CONNECTED_ACCOUNT = re.compile(r"^acct_[A-Za-z0-9]+$")
TRANSFER_EVENTS = frozenset({"transfer.created", "transfer.updated", "transfer.reversed"})
# Every event type the adapter acts on: what Darkroom's endpoint must be subscribed to ("*" is all).
WEBHOOK_EVENTS = frozenset(_SESSION_EVENTS) | REFUND_EVENTS | TRANSFER_EVENTS
# The oldest endpoint API version Darkroom works with: before it Stripe sends no refund events for
# card refunds, and such a refund never lands.
MIN_WEBHOOK_API_VERSION = "2024-10-28"
_API_VERSION_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
# Stripe allows 16 webhook endpoints per account: one page of 100 is the rule; the bound stops a
# provider that keeps answering `has_more`.
_ENDPOINT_PAGE_SIZE = 100
_MAX_ENDPOINT_PAGES = 20
# Stripe's bounds for a Checkout Session's `expires_at`, counted from the create request.
SESSION_MIN_LIFETIME_SECONDS = 30 * 60
SESSION_MAX_LIFETIME_SECONDS = 24 * 3600
SESSION_EXPIRY_MARGIN_SECONDS = 5 * 60
SESSION_EXPIRY_AFTER_CHECKOUT = SESSION_MIN_LIFETIME_SECONDS + SESSION_EXPIRY_MARGIN_SECONDS
# Currencies Stripe's API counts with more decimals than ISO 4217 (Darkroom's minor units): ISK
# has none in ISO 4217 but stays two-decimal in Stripe's API ("an ISK amount of 100 represents 1
# króna", and only multiples of 100 are accepted), so 5000 ISK travels as 500000.
_STRIPE_EXTRA_DECIMALS: dict[str, int] = {"ISK": 2}
# Three-decimal currencies: Stripe's API counts them in thousandths, as ISO 4217 does, but "to
# ensure compatibility with Stripe's payments partners" a payment or refund amount in one must
# end in 0 (5.124 KWD cannot be charged; 5.120 can). Stripe asks the integration to round; a
# checkout's total is a price Darkroom already showed, so it is refused instead (below).
THREE_DECIMAL_CURRENCIES = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def to_stripe_amount(amount_minor: int, currency: str) -> int:
    """A payment amount in Darkroom's minor units as Stripe's API counts it (see above). Raises
    ProviderError, not retryable, before anything is sent, for an amount in a three-decimal
    currency whose last digit is not 0 (Stripe would refuse it on every attempt)."""
    code = currency.upper()
    if code in THREE_DECIMAL_CURRENCIES and check_amount(amount_minor) % 10:
        raise ProviderError(
            f"stripe: {amount_minor} thousandths of {code} cannot be charged or refunded: Stripe takes "
            f"{code} amounts ending in 0 only (e.g. {amount_minor - amount_minor % 10})",
            provider="stripe",
            retryable=False,
        )
    return check_amount(amount_minor) * 10 ** _STRIPE_EXTRA_DECIMALS.get(code, 0)


def from_stripe_amount(value: object, currency: str | None) -> int | None:
    """A payment amount Stripe reports, in Darkroom's minor units; None when it is not an integer
    or, in a currency Stripe counts with extra decimals, holds a fraction of Darkroom's unit (no
    Darkroom payment is charged such an amount: it is not taken for one)."""
    amount = _int(value)
    if amount is None or currency is None:
        return amount
    scale = 10 ** _STRIPE_EXTRA_DECIMALS.get(currency.upper(), 0)
    return amount // scale if amount % scale == 0 else None


def session_expires_at(checkout_expires_at: datetime, *, now: float) -> int | None:
    """The `expires_at` (Unix seconds) of the Stripe session of a checkout that expires at
    `checkout_expires_at`: SESSION_EXPIRY_AFTER_CHECKOUT later, the same on every attempt (see the
    module docstring). None when that is beyond Stripe's 24-hour cap from `now` (a checkout that
    lives almost a day): Stripe's default lifetime then applies."""
    deadline = int(checkout_expires_at.timestamp()) + SESSION_EXPIRY_AFTER_CHECKOUT
    if deadline > now + SESSION_MAX_LIFETIME_SECONDS - SESSION_EXPIRY_MARGIN_SECONDS:
        return None
    return deadline


def _transfer_status(transfer: Mapping[str, Any]) -> PayoutStatus:
    """What a transfer says of its payout (the create answer, a read back, a webhook)."""
    if transfer.get("reversed") is True:
        return PayoutStatus.FAILED  # fully reversed: the whole amount is back with the platform
    if (_int(transfer.get("amount_reversed")) or 0) > 0:
        return PayoutStatus.PENDING  # partly reversed: neither paid nor failed as a whole
    return PayoutStatus.PAID


def _transfer_event(transfer: Mapping[str, Any]) -> PayoutEvent | None:
    """A transfer event's payload as a payout event; None without an id, amount or currency."""
    transfer_id, amount, currency = (
        as_str(transfer.get("id")),
        _int(transfer.get("amount")),
        _currency(transfer.get("currency")),
    )
    if transfer_id is None or amount is None or currency is None:
        return None
    status = _transfer_status(transfer)
    review = ""
    if status is PayoutStatus.PENDING:
        review = (
            f"stripe: transfer {transfer_id} is partly reversed ({_int(transfer.get('amount_reversed'))} of "
            f"{amount} {currency} came back): settle it in the Stripe dashboard"
        )
    return PayoutEvent(
        result=PayoutResult(provider_payout_id=transfer_id, status=status, amount_minor=amount, currency=currency),
        payout_id=as_str(as_dict(transfer.get("metadata")).get("payout_id")) or as_str(transfer.get("transfer_group")),
        review=review,
    )


class TransportHttpClient(stripe.HTTPClient):
    """Lets the stripe library send through Darkroom's `HttpTransport` (timeouts, tests)."""

    name = "darkroom-transport"

    def __init__(self, transport: HttpTransport, *, timeout: float) -> None:
        super().__init__()
        self._transport = transport
        self._timeout = timeout

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        body = post_data.encode() if isinstance(post_data, str) else post_data
        request = HttpRequest(method.upper(), url, dict(headers or {}), body)
        try:
            response = self._transport.send(request, timeout=self._timeout)
        except TransportError as exc:
            raise stripe.APIConnectionError(f"Stripe unreachable: {exc}", should_retry=True) from exc
        lowered = {key.lower(): value for key, value in response.headers.items()}
        return response.body.decode("utf-8", "replace"), response.status, lowered

    def close(self) -> None:
        return None


def _provider_error(exc: stripe.StripeError) -> ProviderError:
    status = exc.http_status
    retryable = isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError) or (
        status is not None and (status >= 500 or status == 409)
    )
    return ProviderError(
        f"stripe: {exc.user_message or exc}", provider="stripe", retryable=retryable, http_status=status
    )


def _id_of(value: object) -> str | None:
    """An expandable Stripe field: either the id string or the expanded object."""
    return as_str(as_dict(value).get("id")) if isinstance(value, dict) else as_str(value)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _currency(value: object) -> str | None:
    return value.upper() if isinstance(value, str) and value else None


class StripeProvider(PaymentProvider):
    """Stripe Checkout. Thread-safe; one instance per process is enough."""

    name = "stripe"

    def __init__(
        self,
        *,
        secret_key: str,
        webhook_secrets: Sequence[str],
        tolerance_seconds: int = 300,
        transport: HttpTransport | None = None,
        timeout: float = 10.0,
        max_network_retries: int = 2,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.webhook_secrets = tuple(webhook_secrets)
        self.tolerance_seconds = tolerance_seconds
        self._now = now
        self._client = stripe.StripeClient(
            secret_key,
            http_client=TransportHttpClient(transport or UrllibTransport(), timeout=timeout),
            max_network_retries=max_network_retries,
        )

    # --- API calls ---------------------------------------------------------------------------

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
        code = normalize_currency(currency)
        params: SessionCreateParams = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": code.lower(),
                        "unit_amount": to_stripe_amount(amount_minor, code),
                        "product_data": {"name": description or "Darkroom order"},
                    },
                }
            ],
            "customer_email": email,
            "client_reference_id": checkout_id,
            "metadata": {"checkout_id": checkout_id},
            "payment_intent_data": {"metadata": {"checkout_id": checkout_id}},
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        session_end = session_expires_at(expires_at, now=self._now()) if expires_at is not None else None
        if session_end is not None:
            params["expires_at"] = session_end
        try:
            session = self._client.v1.checkout.sessions.create(params=params, options={"idempotency_key": checkout_id})
        except stripe.StripeError as exc:
            raise _provider_error(exc) from exc
        data = session.to_dict()
        reference, url = as_str(data.get("id")), as_str(data.get("url"))
        if not reference or not url:
            raise ProviderError("stripe: session without id or url", provider=self.name, retryable=False)
        return ProviderSession(reference=reference, payment_url=url)

    def close_payment_session(self, *, reference: str) -> SessionCloseOutcome:
        """Expire the session now (`POST /v1/checkout/sessions/<id>/expire`). A refusal (Stripe
        expires only `open` sessions) is checked against the session read back: `expired` is
        ALREADY_CLOSED, `complete` COMPLETED; a session still open re-raises it. Raises
        ProviderError."""
        if not reference:
            raise ValueError("reference must name a Checkout Session")
        try:
            self._client.v1.checkout.sessions.expire(reference, options={"idempotency_key": f"expire:{reference}"})
        except stripe.StripeError as exc:
            refusal = _provider_error(exc)
            if refusal.retryable or exc.http_status != 400:
                raise refusal from exc
            status = self._session(reference).get("status")
            if status == "expired":
                return SessionCloseOutcome.ALREADY_CLOSED
            if status == "complete":
                return SessionCloseOutcome.COMPLETED
            raise refusal from exc
        return SessionCloseOutcome.CLOSED

    def _session(self, reference: str, *, expand: list[str] | None = None) -> dict[str, Any]:
        try:
            session = self._client.v1.checkout.sessions.retrieve(reference, params={"expand": expand or []})
        except stripe.StripeError as exc:
            raise _provider_error(exc) from exc
        return session.to_dict()

    def fetch_status(self, *, reference: str) -> PaymentState:
        session = self._session(reference, expand=["payment_intent.latest_charge"])
        intent = as_dict(session.get("payment_intent"))
        charge = as_dict(intent.get("latest_charge"))
        if session.get("status") == "expired":
            status = PaymentStatus.EXPIRED
        elif session.get("status") == "complete" and as_str(session.get("payment_status")) in _SETTLED_PAYMENT_STATUSES:
            status = PaymentStatus.REFUNDED if charge.get("refunded") is True else PaymentStatus.PAID
        elif intent.get("status") == "canceled" or (
            session.get("status") == "complete" and intent.get("status") == "requires_payment_method"
        ):
            status = PaymentStatus.FAILED
        else:
            status = PaymentStatus.PENDING
        currency = _currency(session.get("currency"))
        return PaymentState(
            status=status,
            amount_minor=from_stripe_amount(session.get("amount_total"), currency),
            currency=currency,
            payment_id=_id_of(session.get("payment_intent")),
        )

    def refund(
        self, *, reference: str, amount_minor: int, idempotency_key: str, payment_id: str | None = None
    ) -> RefundResult:
        """Refund the session's PaymentIntent. A Checkout Session has one, which succeeds once, so
        a `payment_id` naming another is refused (not retryable) before anything is refunded."""
        session = self._session(reference)
        payment_intent = answer_id(
            _id_of(session.get("payment_intent")), provider=self.name, what=f"session {reference}"
        )
        if payment_intent is None:
            raise ProviderError(
                f"stripe: session {reference} has no payment to refund", provider=self.name, retryable=False
            )
        if payment_id is not None and payment_id != payment_intent:
            raise ProviderError(
                f"stripe: {payment_id[:80]!r} is not session {reference}'s payment ({payment_intent})",
                provider=self.name,
                retryable=False,
            )
        try:
            refund = self._client.v1.refunds.create(
                params={
                    "payment_intent": payment_intent,
                    "amount": to_stripe_amount(amount_minor, _currency(session.get("currency")) or ""),
                    "metadata": {"session": reference},
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise _provider_error(exc) from exc
        data = refund.to_dict()
        refund_id, currency = as_str(data.get("id")), _currency(data.get("currency"))
        if refund_id is None or currency is None:
            raise ProviderError("stripe: refund without id or currency", provider=self.name, retryable=False)
        return RefundResult(
            refund_id=refund_id,
            status=_REFUND_STATUSES.get(str(data.get("status")), PaymentStatus.PENDING),
            amount_minor=from_stripe_amount(data.get("amount"), currency) or amount_minor,
            currency=currency,
        )

    # --- payouts -----------------------------------------------------------------------------

    def normalize_payout_destination(self, destination: str) -> str:
        """A connected account id, `acct_` and letters or digits (Stripe ids are case-sensitive)."""
        account = destination_text(destination)
        if not _CONNECTED_ACCOUNT.match(account):
            raise PayoutDestinationError(
                f"a Stripe payout goes to a connected account id like acct_1MTfjCQ9PRzxEwkZ, not {account!r}"
            )
        return account

    def payout(
        self,
        *,
        payout_id: str,
        amount_minor: int,
        currency: str,
        destination: str,
        description: str,
    ) -> PayoutResult:
        """Transfer to the connected account. Idempotent by `payout_id`: Stripe keeps idempotency
        keys for 24 hours only, and a retry can come later (the lost-message sweep), so the
        transfer group (= payout id) is looked up first and an existing transfer is returned.
        Call outside any transaction. Raises ProviderError, PayoutDestinationError, ValueError
        (see `PaymentProvider.payout`).
        """
        code = normalize_currency(currency)
        params: TransferCreateParams = {
            "amount": check_amount(amount_minor),
            "currency": code.lower(),
            "destination": self.normalize_payout_destination(destination),
            "transfer_group": check_payout_id(payout_id),
            "metadata": {"payout_id": payout_id},
        }
        if description:
            params["description"] = description
        existing = self._transfer_of(payout_id=payout_id)
        if existing is not None:
            if (existing.get("amount"), existing.get("currency"), existing.get("destination")) != (
                params["amount"],
                params["currency"],
                params["destination"],
            ):
                raise ProviderError(
                    f"stripe: payout {payout_id} already transferred with other parameters",
                    provider=self.name,
                    retryable=False,
                )
            return self._payout_result(existing, payout_id=payout_id)
        try:
            transfer = self._client.v1.transfers.create(params=params, options={"idempotency_key": payout_id})
        except stripe.StripeError as exc:
            raise _provider_error(exc) from exc
        return self._payout_result(transfer.to_dict(), payout_id=payout_id)

    def payout_status(self, *, payout_id: str, provider_payout_id: str) -> PayoutResult:
        """Read the transfer back. Raises ProviderError (404 from Stripe for an unknown transfer;
        non-retryable if its `metadata[payout_id]` names another payout), ValueError (see
        `PaymentProvider.payout_status`)."""
        check_payout_id(payout_id)
        try:
            transfer = self._client.v1.transfers.retrieve(check_provider_payout_id(provider_payout_id))
        except stripe.StripeError as exc:
            raise _provider_error(exc) from exc
        data = transfer.to_dict()
        sent_for = as_dict(data.get("metadata")).get("payout_id")
        if sent_for not in (None, payout_id):
            raise ProviderError(
                f"stripe: transfer {provider_payout_id} belongs to payout {sent_for!r}, not {payout_id}",
                provider=self.name,
                retryable=False,
            )
        if (
            as_str(data.get("id")) != provider_payout_id
            or _int(data.get("amount")) is None
            or _currency(data.get("currency")) is None
        ):
            raise ProviderError(
                f"stripe: transfer {provider_payout_id} read back without its id, amount or currency",
                provider=self.name,
                retryable=False,
            )
        return self._payout_result(data, payout_id=payout_id)

    def _transfer_of(self, *, payout_id: str) -> dict[str, Any] | None:
        """The transfer an earlier attempt made for `payout_id`, if any (its transfer group)."""
        try:
            page = self._client.v1.transfers.list(params={"transfer_group": payout_id, "limit": 10})
        except stripe.StripeError as exc:
            raise _provider_error(exc) from exc
        transfers = page.to_dict().get("data")
        if not isinstance(transfers, list):
            # Unreadable: an earlier attempt's transfer may exist, so this is no refusal.
            raise ProviderError(
                f"stripe: transfer list for payout {payout_id} without its data", provider=self.name, retryable=True
            )
        for transfer in map(as_dict, transfers):
            if as_dict(transfer.get("metadata")).get("payout_id") == payout_id:
                return transfer
        return None

    def _payout_result(self, data: dict[str, Any], *, payout_id: str) -> PayoutResult:
        transfer_id = as_str(data.get("id"))
        amount, returned_currency = _int(data.get("amount")), _currency(data.get("currency"))
        if transfer_id is None or amount is None or returned_currency is None:
            # Stripe answered 2xx, so the transfer may exist: never report this as a refusal.
            raise ProviderError(
                f"stripe: transfer answer for payout {payout_id} without id, amount or currency",
                provider=self.name,
                retryable=True,
            )
        return PayoutResult(
            provider_payout_id=transfer_id,
            status=_transfer_status(data),
            amount_minor=amount,
            currency=returned_currency,
        )

    # --- webhooks ----------------------------------------------------------------------------

    def webhook_setup(self, *, url: str) -> WebhookSetup:
        """Read the account's webhook endpoints and check the enabled one(s) at `url`: subscribed
        (together) to every event in WEBHOOK_EVENTS, each on API version MIN_WEBHOOK_API_VERSION
        or later. An endpoint without `api_version` follows the account's default version, which
        this key cannot read: a note, not a problem. Read-only. Raises ProviderError."""
        endpoints = self._webhook_endpoints()
        at_url = [endpoint for endpoint in endpoints if endpoint.get("url") == url]
        enabled = [endpoint for endpoint in at_url if endpoint.get("status") == "enabled"]
        problems: list[str] = []
        notes = [
            f"endpoint {endpoint.get('id')} at {url} is {endpoint.get('status')} (another one is enabled)"
            for endpoint in at_url
            if endpoint not in enabled
        ]
        if not enabled:
            problems += [f"endpoint {e.get('id')} at {url} is {e.get('status')}" for e in at_url]
            if not at_url:
                found = ", ".join(f"{e.get('url')} ({e.get('id')}, {e.get('status')})" for e in endpoints) or "none"
                problems.append(f"no enabled webhook endpoint at {url}; endpoints found: {found}")
            return WebhookSetup(checked=True, problems=tuple(problems))
        missing = events_not_subscribed(WEBHOOK_EVENTS, *(endpoint.get("enabled_events") for endpoint in enabled))
        if missing:
            ids = [str(endpoint.get("id")) for endpoint in enabled]
            which = f"endpoint {ids[0]} is" if len(ids) == 1 else f"none of endpoints {', '.join(ids)} is"
            problems.append(f"{which} not subscribed to {', '.join(missing)}")
        for endpoint in enabled:
            version = as_str(endpoint.get("api_version"))
            if version is None:
                notes.append(
                    f"endpoint {endpoint.get('id')} uses the account's default API version, which cannot be read here: "
                    f"make sure it is {MIN_WEBHOOK_API_VERSION} or later (the Stripe dashboard's developer settings)"
                )
            elif not _API_VERSION_DATE.match(version):
                notes.append(f"endpoint {endpoint.get('id')} has an API version Darkroom cannot read: {version!r}")
            elif version[:10] < MIN_WEBHOOK_API_VERSION:
                problems.append(
                    f"endpoint {endpoint.get('id')} is on API version {version}, older than "
                    f"{MIN_WEBHOOK_API_VERSION}: Stripe sends it no refund events for card refunds"
                )
        return WebhookSetup(checked=True, problems=tuple(problems), notes=tuple(notes))

    def _webhook_endpoints(self) -> list[dict[str, Any]]:
        """Every webhook endpoint of the account, following `has_more` with `starting_after`."""
        endpoints: list[dict[str, Any]] = []
        params: WebhookEndpointListParams = {"limit": _ENDPOINT_PAGE_SIZE}
        for _ in range(_MAX_ENDPOINT_PAGES):
            try:
                page = self._client.v1.webhook_endpoints.list(params=params).to_dict()
            except stripe.StripeError as exc:
                raise _provider_error(exc) from exc
            data = page.get("data")
            if not isinstance(data, list):
                raise ProviderError(
                    "stripe: webhook endpoint list without its data", provider=self.name, retryable=True
                )
            endpoints += [as_dict(endpoint) for endpoint in data]
            if page.get("has_more") is not True:
                return endpoints
            last = as_str(as_dict(data[-1]).get("id")) if data else None
            if last is None:
                raise ProviderError(
                    "stripe: webhook endpoint list says it has more without naming its last endpoint",
                    provider=self.name,
                    retryable=False,
                )
            params = {"limit": _ENDPOINT_PAGE_SIZE, "starting_after": last}
        raise ProviderError(
            f"stripe: more than {_MAX_ENDPOINT_PAGES * _ENDPOINT_PAGE_SIZE} webhook endpoints listed",
            provider=self.name,
            retryable=False,
        )

    def verify_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> None:
        verify_header(
            body=require_bytes(body),
            header=header_value(headers, SIGNATURE_HEADER),
            secrets=self.webhook_secrets,
            tolerance_seconds=self.tolerance_seconds,
            header_name=SIGNATURE_HEADER,
            now=self._now,
        )

    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> WebhookEnvelope:
        event, raw = parse_json_object(require_bytes(body))
        event_id, event_type = as_str(event.get("id")), as_str(event.get("type"))
        if event_id is None or event_type is None:
            raise WebhookPayloadError("Stripe event without id or type")
        obj = as_dict(as_dict(event.get("data")).get("object"))
        common: dict[str, Any] = {
            "provider": self.name,
            "event_id": event_id,
            "event_type": event_type,
            "occurred_at": epoch_to_datetime(event.get("created")),
            "raw": raw,
        }
        if event_type in _SESSION_EVENTS:
            status = _SESSION_EVENTS[event_type]
            if (
                event_type == "checkout.session.completed"
                and as_str(obj.get("payment_status")) not in _SETTLED_PAYMENT_STATUSES
            ):
                status = PaymentStatus.PENDING
            currency = _currency(obj.get("currency"))
            envelope = WebhookEnvelope(
                **common,
                status=status,
                reference=as_str(obj.get("id")),
                checkout_id=as_str(obj.get("client_reference_id"))
                or as_str(as_dict(obj.get("metadata")).get("checkout_id")),
                payment_id=_id_of(obj.get("payment_intent")),
                amount_minor=from_stripe_amount(obj.get("amount_total"), currency),
                currency=currency,
            )
        elif event_type in REFUND_EVENTS:
            refund_status = as_str(obj.get("status"))
            status = (
                PaymentStatus.REFUND_FAILED
                if event_type == "refund.failed"
                else _REFUND_EVENT_STATUSES.get(refund_status or "", PaymentStatus.UNKNOWN)
            )
            if status is PaymentStatus.UNKNOWN:
                return WebhookEnvelope(**common, status=status)
            currency = _currency(obj.get("currency"))
            amount = from_stripe_amount(obj.get("amount"), currency)
            envelope = WebhookEnvelope(
                **common,
                status=status,
                reference=as_str(as_dict(obj.get("metadata")).get("session")),
                payment_id=_id_of(obj.get("payment_intent")),
                amount_minor=amount,
                currency=currency,
                refund_id=as_str(obj.get("id")),
                refund_amount_minor=amount,
                refund_failure=(as_str(obj.get("failure_reason")) or refund_status or "")
                if status is PaymentStatus.REFUND_FAILED
                else "",
            )
            if envelope.refund_id is None:  # not a refund Darkroom could tell from another
                return replace(envelope, status=PaymentStatus.UNKNOWN)
        elif event_type in TRANSFER_EVENTS:
            payout = _transfer_event(obj)
            reference = payout.result.provider_payout_id if payout else None
            return WebhookEnvelope(**common, status=PaymentStatus.UNKNOWN, reference=reference, payout=payout)
        else:
            return WebhookEnvelope(**common, status=PaymentStatus.UNKNOWN)
        return identified_or_unknown(envelope)
