"""Flutterwave adapter: v3 Standard (hosted payment link) over JSON/HTTPS, webhooks verified by
`flutterwave-signature` (base64 HMAC-SHA256 of the raw body keyed with the secret hash) or, for
accounts still on the legacy scheme, `verif-hash` (the secret hash itself, constant-time
compared; it does not bind the body, which is why the HMAC header wins when both are present).

Create: `POST /v3/payments` with `tx_ref` = checkout id (Flutterwave's uniqueness key for the
payment) and `X-Idempotency-Key` = checkout id (honoured by Flutterwave's idempotency layer on
POST endpoints). Amounts travel as decimal major-unit strings. Flutterwave has a single
`redirect_url` and appends `status` (`successful`, `cancelled`, ...), `tx_ref` and
`transaction_id` to it, so the success URL is sent without Darkroom's `darkroom_return`
(`returns.py`; a `paid` there would be sent back after a cancel too) and `return_says_paid` reads
Flutterwave's `status`. Reference = tx_ref (the checkout id).

Session lifetime: `session_duration` (minutes, at most 1440; Flutterwave Standard's documented
parameter) is the checkout's remaining lifetime, rounded up to a whole minute, so the hosted page
stops taking payments when the checkout expires (at most a minute later). Flutterwave answers a
repeated `X-Idempotency-Key` with the first response, so a retry computing another duration gets
the first session back. Close: the v3 API has no call that cancels a hosted payment link, so
`close_payment_session` sends nothing and answers NOT_SUPPORTED; `session_duration` is what ends
the page, and a payment that still arrives after the checkout expired is refunded.

Refund: `POST /v3/transactions/<transaction id>/refund` with `X-Idempotency-Key` = the refund's
idempotency key and `amount` (the part to refund, so several partial refunds of one payment each
name their own) as a JSON number in major units, the type Flutterwave documents for it. The
transaction is the one the refund names (`payment_id`, read back by `GET /v3/transactions/<id>/
verify`, whose tx_ref must be the checkout's), else the one `verify_by_reference` answers for the
tx_ref. One tx_ref can hold several successful transactions: the hosted page takes attempt after
attempt under it, each a transaction of its own id, and nothing in Flutterwave's documentation
stops two of them succeeding (the shopper pays again in another tab, or by transfer after paying by
card), so which one `verify_by_reference` answers is not a refund's to trust.

Webhook mapping (v3 payloads carry `event`, v4 payloads `type`; both are read):
    charge.completed, data.status successful/succeeded -> PAID, failed -> PENDING,
                      pending -> PENDING
    charge.failed                                      -> PENDING
A failed charge is one attempt, not the end of the payment: the hosted page lets the shopper try
again, with another card or method, under the same tx_ref (up to `max_retry_attempt` times), so
it closes nothing. The checkout ends paid by a later successful charge or expired at its end
(the page closes with it, `session_duration`).
    refund.completed                                   -> REFUNDED (data is the refund:
                      refund_id = data.id, amount = this refund's AmountRefunded/amount_refunded;
                      Flutterwave reports no cumulative total), data.status failed ->
                      REFUND_FAILED (the money stays with the merchant)
    anything else                                      -> UNKNOWN
Verify before giving value (Flutterwave: "verify that the payment was successful with
Flutterwave before giving value"): `confirm_payment` reads a PAID event's transaction back
(`GET /v3/transactions/<data.id>/verify`) and the event is applied with what that answer says:
its tx_ref must be the event's (else WebhookPayloadError), its status decides (successful PAID,
failed PENDING like a failed attempt, anything else not settled yet: a retryable ProviderError),
and its amount and currency are the ones compared with the checkout. The webhook body, whose
legacy `verif-hash` does not even bind it, never pays a checkout on its own.
v3 deliveries have no event id; the id used for deduplication is `<event>:<data.id>:<status>`
(a redelivery repeats it; a later status change of the same charge is a new event).

Payouts: a bank transfer, `POST /v3/transfers` to `"<bank code>:<account number>"`, with
`reference` = `X-Idempotency-Key` = payout id and the amount as a JSON number in major units.
Flutterwave refuses a reference it has seen; whenever a transfer is refused, the transfer with
this reference is looked up (`GET /v3/transfers?reference=`) and, if it exists, returned: the
payout id pays at most once, and a refusal is only reported when no such transfer exists.
Transfer status: NEW, PENDING (and anything else) -> PENDING, SUCCESSFUL -> PAID, FAILED -> FAILED.

`payout_status` reads the transfer back (`GET /v3/transfers/<id>`), checks its `reference` is
the payout id, and maps SUCCESSFUL -> PAID, anything else -> PENDING, FAILED included: the
caller credits a FAILED payout back, and Flutterwave's documentation does not say that a
transfer which failed after it was queued left the balance untouched or refunded it (its v4
transfers even carry a `reversal` whose initial status was SUCCESSFUL), so an operator settles a
failed transfer after checking the balance history.
Payout webhook: `transfer.completed` (header `verif-hash` or `flutterwave-signature`, as above;
no event id, so `transfer.completed:<data.id>:<status>`) carries the transfer: `id`, `reference`
(the payout id), `amount`, `currency`, `status` and `complete_message`. It is mapped like
`payout_status`: SUCCESSFUL -> PAID, anything else PENDING; FAILED with a review note (the
message and the advice to check the balance history), so the payout goes to an operator rather
than being credited back or left submitted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote, urlencode

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
    WebhookSignatureError,
    answer_id,
    as_dict,
    as_str,
    check_amount,
    check_payout_id,
    check_provider_payout_id,
    destination_text,
    header_value,
    identified_or_unknown,
    iso_to_datetime,
    major_to_minor,
    minor_to_major,
    normalize_currency,
    parse_json_object,
    require_bytes,
)
from apps.payments.providers.http import HttpTransport, JsonApi, UrllibTransport
from apps.payments.providers.returns import return_url_marked

SIGNATURE_HEADER = "flutterwave-signature"
LEGACY_HASH_HEADER = "verif-hash"
DEFAULT_API_BASE = "https://api.flutterwave.com/v3"
MAX_SESSION_MINUTES = 1440


def session_minutes(expires_at: datetime, *, now: float) -> int:
    """`session_duration` for a checkout expiring at `expires_at`: its remaining lifetime in whole
    minutes, rounded up, within Flutterwave's 1 to 1440."""
    remaining = math.ceil((expires_at.timestamp() - now) / 60)
    return max(1, min(MAX_SESSION_MINUTES, remaining))


_CHARGE_STATUSES: dict[str, PaymentStatus] = {
    "successful": PaymentStatus.PAID,
    "succeeded": PaymentStatus.PAID,
    "failed": PaymentStatus.PENDING,  # one attempt failed; the shopper may retry (module docstring)
    "pending": PaymentStatus.PENDING,
}
_REFUND_STATUSES: dict[str, PaymentStatus] = {
    "completed": PaymentStatus.REFUNDED,
    "successful": PaymentStatus.REFUNDED,
    "succeeded": PaymentStatus.REFUNDED,
    "failed": PaymentStatus.FAILED,
}
_TRANSFER_STATUSES: dict[str, PayoutStatus] = {
    "NEW": PayoutStatus.PENDING,
    "PENDING": PayoutStatus.PENDING,
    "SUCCESSFUL": PayoutStatus.PAID,
    "FAILED": PayoutStatus.FAILED,
}
# What a transfer read back means for the payout: only SUCCESSFUL is final (see the docstring).
_READ_TRANSFER_STATUSES: dict[str, PayoutStatus] = {
    **_TRANSFER_STATUSES,
    "FAILED": PayoutStatus.PENDING,
}
TRANSFER_EVENT = "transfer.completed"
# Bank codes are 3 (NUBAN, e.g. 044) to 6 digits; account numbers are 10-digit NUBANs in
# Nigeria, other lengths elsewhere.
_BANK_ACCOUNT = re.compile(r"^(?P<bank>[0-9]{3,6}):(?P<account>[0-9]{6,20})$")


def _json_number(value: str) -> int | float:
    """A decimal major-unit amount as the JSON number Flutterwave expects, exactly: an int when
    whole, else the float whose shortest repr is the same decimal (json.dumps writes repr)."""
    exact = Decimal(value)
    if exact == exact.to_integral_value():
        return int(exact)
    number = float(exact)
    if Decimal(repr(number)) != exact:
        raise ValueError(f"{value} cannot travel as an exact JSON number")
    return number


def sign_body(body: bytes, secret_hash: str) -> str:
    """The `flutterwave-signature` value for a body (what Flutterwave sends)."""
    return base64.b64encode(hmac.new(secret_hash.encode(), body, hashlib.sha256).digest()).decode()


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    return next((data[key] for key in keys if data.get(key) not in (None, "")), None)


def _amount(value: object, currency: str | None) -> int | None:
    if value is None or currency is None:
        return None
    try:
        return major_to_minor(value, currency)
    except ValueError as exc:
        raise WebhookPayloadError(f"Flutterwave amount {value!r} {currency}: {exc}") from exc


def _major_written(value: object) -> str | None:
    """An amount Flutterwave wrote without its currency, kept as written (a JSON number or a
    numeric string), for the payment's currency to convert. Raises WebhookPayloadError for
    anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise WebhookPayloadError(f"Flutterwave refund amount {value!r} is not a number")
    text = str(value).strip()
    try:
        number = Decimal(text)
    except InvalidOperation as exc:
        raise WebhookPayloadError(f"Flutterwave refund amount {value!r} is not a number") from exc
    if not number.is_finite() or number <= 0:
        raise WebhookPayloadError(f"Flutterwave refund amount {value!r} is not an amount")
    return text


def _transfer_event(transfer: Mapping[str, Any]) -> PayoutEvent | None:
    """A `transfer.completed` payload as a payout event, mapped as `payout_status` maps a transfer
    read back; None without an id, amount or currency. Raises WebhookPayloadError for an amount
    the currency cannot hold exactly."""
    transfer_id, currency = as_str(transfer.get("id")), as_str(transfer.get("currency"))
    amount = _amount(transfer.get("amount"), currency)
    if transfer_id is None or amount is None or currency is None:
        return None
    provider_status = str(transfer.get("status") or "").upper()
    review = ""
    if provider_status == "FAILED":
        message = as_str(transfer.get("complete_message")) or "no message"
        review = (
            f"flutterwave: transfer {transfer_id} FAILED ({message}); Flutterwave does not say whether the money "
            "left the balance: check the balance history, then mark the payout paid or not paid"
        )
    return PayoutEvent(
        result=PayoutResult(
            provider_payout_id=transfer_id,
            status=_READ_TRANSFER_STATUSES.get(provider_status, PayoutStatus.PENDING),
            amount_minor=amount,
            currency=currency.upper(),
        ),
        payout_id=as_str(transfer.get("reference")),
        review=review[:2000],
    )


class FlutterwaveProvider(PaymentProvider):
    name = "flutterwave"
    charges_a_session_twice = True  # one tx_ref takes attempt after attempt (module docstring)

    def __init__(
        self,
        *,
        secret_key: str,
        secret_hash: str,
        api_base: str = DEFAULT_API_BASE,
        transport: HttpTransport | None = None,
        timeout: float = 10.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.secret_hash = secret_hash
        self.api_base = api_base.rstrip("/")
        self._secret_key = secret_key
        self._now = now
        self._api = JsonApi(provider=self.name, transport=transport or UrllibTransport(), timeout=timeout)

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._secret_key}"}
        if idempotency_key:
            headers["X-Idempotency-Key"] = idempotency_key
        return headers

    def _data(self, response: dict[str, Any], what: str) -> dict[str, Any]:
        if response.get("status") != "success":
            raise ProviderError(
                f"flutterwave: {what}: {response.get('message')!r}", provider=self.name, retryable=False
            )
        return as_dict(response.get("data"))

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
        body: dict[str, Any] = {
            "tx_ref": checkout_id,
            "amount": minor_to_major(check_amount(amount_minor), code),
            "currency": code,
            "redirect_url": return_url_marked(success_url, None),
            "customer": {"email": email},
            "customizations": {"title": "Darkroom", "description": description},
            "meta": {"checkout_id": checkout_id},
        }
        if expires_at is not None:
            body["session_duration"] = session_minutes(expires_at, now=self._now())
        response = self._api.call(
            "POST",
            f"{self.api_base}/payments",
            headers=self._headers(idempotency_key=checkout_id),
            json_body=body,
        )
        link = as_str(self._data(response, "create payment").get("link"))
        if link is None:
            raise ProviderError("flutterwave: payment link missing", provider=self.name, retryable=False)
        return ProviderSession(reference=checkout_id, payment_url=link)

    @classmethod
    def return_says_paid(cls, query: Mapping[str, str]) -> bool:
        """Flutterwave's own `status` on its one redirect: `successful` (`completed` in some of
        its flows) after a charge went through; `cancelled`, `failed` or none otherwise."""
        return str(query.get("status", "")).lower() in ("successful", "completed")

    def close_payment_session(self, *, reference: str) -> SessionCloseOutcome:
        """Nothing to call: Flutterwave's v3 API cannot cancel a hosted payment link. The page's
        `session_duration` (the checkout's lifetime) ends it; a payment made before that but
        after the checkout expired is refunded by the state machine. Sends nothing."""
        return SessionCloseOutcome.NOT_SUPPORTED

    def fetch_status(self, *, reference: str) -> PaymentState:
        """Verify by tx_ref. A reference with no transaction yet (shopper has not paid) is PENDING."""
        url = f"{self.api_base}/transactions/verify_by_reference?{urlencode({'tx_ref': reference})}"
        try:
            data = self._data(self._api.call("GET", url, headers=self._headers()), "verify")
        except ProviderError as exc:
            if exc.http_status in (400, 404) and "no transaction" in exc.detail.lower():
                return PaymentState(status=PaymentStatus.PENDING)
            raise
        payment_id = answer_id(as_str(data.get("id")), provider=self.name, what=f"verify {reference}")
        return self._verified_state(data, verified=reference, payment_id=payment_id)

    def _verified_state(self, data: dict[str, Any], *, verified: str, payment_id: str | None) -> PaymentState:
        """The state a `verify` answer's `data` gives (of `verified`, a tx_ref or a transaction id).
        Raises ProviderError, not retryable, for an amount its currency cannot hold: Flutterwave's
        answer, not an event, so its error."""
        currency = as_str(data.get("currency"))
        try:
            currency = normalize_currency(currency) if currency else None
            amount = _amount(data.get("amount"), currency) if currency else None
        except (WebhookPayloadError, ValueError) as exc:
            detail = exc.detail if isinstance(exc, WebhookPayloadError) else str(exc)
            raise ProviderError(
                f"flutterwave: verify {verified}: {detail}", provider=self.name, retryable=False
            ) from exc
        return PaymentState(
            status=_CHARGE_STATUSES.get(str(data.get("status")).lower(), PaymentStatus.PENDING),
            amount_minor=amount,
            currency=currency,
            payment_id=payment_id,
        )

    def confirm_payment(self, *, envelope: WebhookEnvelope) -> WebhookEnvelope:
        """A PAID event as Flutterwave's verify endpoint reports its transaction (module
        docstring); any other envelope as it is. Call outside any transaction. Raises
        WebhookPayloadError (a transaction of another tx_ref, or an answer whose amount the
        currency cannot hold) and ProviderError (retryable while the transaction is not settled)."""
        if envelope.status is not PaymentStatus.PAID:
            return envelope
        if envelope.payment_id is None:
            raise WebhookPayloadError("Flutterwave paid event without the transaction id to verify it by")
        url = f"{self.api_base}/transactions/{quote(envelope.payment_id, safe='')}/verify"
        data = self._data(self._api.call("GET", url, headers=self._headers()), f"verify {envelope.payment_id}")
        tx_ref = as_str(data.get("tx_ref"))
        if tx_ref != envelope.reference or as_str(data.get("id")) != envelope.payment_id:
            raise WebhookPayloadError(
                f"Flutterwave transaction {envelope.payment_id} is {as_str(data.get('id'))!r} of tx_ref {tx_ref!r}, "
                f"not the event's {envelope.reference!r}"
            )
        api_status = str(data.get("status") or "").lower()
        status = _CHARGE_STATUSES.get(api_status)
        if status is None or api_status == "pending":
            raise ProviderError(
                f"flutterwave: transaction {envelope.payment_id} is {api_status or 'without status'} at Flutterwave, "
                "not settled yet",
                provider=self.name,
                retryable=True,
            )
        currency = as_str(data.get("currency"))
        return replace(
            envelope,
            status=status,
            amount_minor=_amount(data.get("amount"), currency),
            currency=currency,
        )

    def refund(
        self, *, reference: str, amount_minor: int, idempotency_key: str, payment_id: str | None = None
    ) -> RefundResult:
        state = (
            self.fetch_status(reference=reference)
            if payment_id is None
            else self._transaction_of(reference=reference, transaction_id=payment_id)
        )
        if state.payment_id is None or state.currency is None:
            raise ProviderError(
                f"flutterwave: no transaction for {reference} to refund", provider=self.name, retryable=False
            )
        response = self._api.call(
            "POST",
            f"{self.api_base}/transactions/{quote(state.payment_id, safe='')}/refund",
            headers=self._headers(idempotency_key=idempotency_key),
            # A JSON number in major units, as Flutterwave documents it (exact, see _json_number).
            json_body={"amount": _json_number(minor_to_major(check_amount(amount_minor), state.currency))},
        )
        data = self._data(response, "refund")
        refund_id = as_str(data.get("id"))
        if refund_id is None:
            raise ProviderError("flutterwave: refund without id", provider=self.name, retryable=False)
        try:
            refunded = major_to_minor(_first(data, "amount_refunded", "AmountRefunded", "amount"), state.currency)
        except ValueError:
            refunded = amount_minor
        return RefundResult(
            refund_id=refund_id,
            status=_REFUND_STATUSES.get(str(data.get("status")).lower(), PaymentStatus.PENDING),
            amount_minor=refunded,
            currency=state.currency,
        )

    def _transaction_of(self, *, reference: str, transaction_id: str) -> PaymentState:
        """Transaction `transaction_id` read back (`GET /v3/transactions/<id>/verify`). Raises
        ProviderError, not retryable, for one of another tx_ref than `reference` (never refunded
        for this one) or an answer whose amount its currency cannot hold."""
        url = f"{self.api_base}/transactions/{quote(transaction_id, safe='')}/verify"
        data = self._data(self._api.call("GET", url, headers=self._headers()), f"verify {transaction_id}")
        if as_str(data.get("id")) != transaction_id or as_str(data.get("tx_ref")) != reference:
            raise ProviderError(
                f"flutterwave: transaction {transaction_id} is {as_str(data.get('id'))!r} of tx_ref "
                f"{as_str(data.get('tx_ref'))!r}, not a charge of {reference!r}",
                provider=self.name,
                retryable=False,
            )
        return self._verified_state(data, verified=transaction_id, payment_id=transaction_id)

    # --- payouts -----------------------------------------------------------------------------

    def normalize_payout_destination(self, destination: str) -> str:
        """`"<bank code>:<account number>"`, digits only, e.g. "044:0690000031"."""
        text = destination_text(destination)
        bank, _, account = text.partition(":")
        normalized = f"{bank.strip()}:{account.strip()}"
        if not _BANK_ACCOUNT.match(normalized):
            raise PayoutDestinationError(
                "a Flutterwave payout goes to a bank account written <bank code>:<account number>, "
                f"3-6 and 6-20 digits, e.g. 044:0690000031, not {text!r}"
            )
        return normalized

    def payout(
        self,
        *,
        payout_id: str,
        amount_minor: int,
        currency: str,
        destination: str,
        description: str,
    ) -> PayoutResult:
        """Create a bank transfer with reference = payout id; a refused duplicate reference
        returns the existing transfer. Call outside any transaction. Raises ProviderError,
        PayoutDestinationError, ValueError (see `PaymentProvider.payout`).
        """
        code = normalize_currency(currency)
        amount = _json_number(minor_to_major(check_amount(amount_minor), code))
        bank, _, account = self.normalize_payout_destination(destination).partition(":")
        body: dict[str, Any] = {
            "account_bank": bank,
            "account_number": account,
            "amount": amount,
            "currency": code,
            "debit_currency": code,
            "reference": check_payout_id(payout_id),
            "narration": description,
        }
        try:
            response = self._api.call(
                "POST", f"{self.api_base}/transfers", headers=self._headers(idempotency_key=payout_id), json_body=body
            )
            transfer = self._data(response, f"transfer {payout_id}")
        except ProviderError as exc:
            if exc.retryable:
                raise
            existing = self._transfer_by_reference(payout_id)
            if existing is None:
                raise
            transfer = existing
        return self._payout_result(transfer, payout_id=payout_id, amount_minor=amount_minor, currency=code)

    def payout_status(self, *, payout_id: str, provider_payout_id: str) -> PayoutResult:
        """Read the transfer back. Raises ProviderError (Flutterwave's 404 for an unknown
        transfer; non-retryable for a transfer whose reference is not `payout_id` or without an
        amount), ValueError (see `PaymentProvider.payout_status`)."""
        check_payout_id(payout_id)
        url = f"{self.api_base}/transfers/{quote(check_provider_payout_id(provider_payout_id), safe='')}"
        transfer = self._data(self._api.call("GET", url, headers=self._headers()), f"transfer {provider_payout_id}")
        reference = as_str(transfer.get("reference"))
        if reference != payout_id or as_str(transfer.get("id")) != provider_payout_id:
            raise ProviderError(
                f"flutterwave: transfer {provider_payout_id} has reference {reference!r}, not payout {payout_id}",
                provider=self.name,
                retryable=False,
            )
        currency = as_str(transfer.get("currency"))
        try:
            amount = _amount(transfer.get("amount"), currency)
        except WebhookPayloadError:
            amount = None
        if amount is None or currency is None:
            raise ProviderError(
                f"flutterwave: transfer {provider_payout_id} read back without amount or currency",
                provider=self.name,
                retryable=False,
            )
        return PayoutResult(
            provider_payout_id=provider_payout_id,
            status=_READ_TRANSFER_STATUSES.get(str(transfer.get("status")).upper(), PayoutStatus.PENDING),
            amount_minor=amount,
            currency=currency.upper(),
        )

    def _transfer_by_reference(self, reference: str) -> dict[str, Any] | None:
        """The transfer created with `reference`, or None when Flutterwave has none.

        Raises a retryable ProviderError when the lookup fails: a refusal must not be reported
        while an earlier attempt's transfer may exist.
        """
        url = f"{self.api_base}/transfers?{urlencode({'reference': reference})}"
        try:
            response = self._api.call("GET", url, headers=self._headers())
        except ProviderError as exc:
            raise ProviderError(
                f"flutterwave: transfer {reference} was refused and could not be looked up: {exc.detail}",
                provider=self.name,
                retryable=True,
                http_status=exc.http_status,
            ) from exc
        data = response.get("data") if response.get("status") == "success" else None
        transfers = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
        # Only a transfer that carries our reference counts, should the filter be ignored.
        return next((t for t in map(as_dict, transfers) if as_str(t.get("reference")) == reference), None)

    def _payout_result(
        self, transfer: Mapping[str, Any], *, payout_id: str, amount_minor: int, currency: str
    ) -> PayoutResult:
        transfer_id = as_str(transfer.get("id"))
        if transfer_id is None:
            # Flutterwave accepted the transfer, so it may exist: never report a refusal.
            raise ProviderError(
                f"flutterwave: transfer {payout_id} answered without an id", provider=self.name, retryable=True
            )
        reported_currency = as_str(transfer.get("currency"))
        try:
            reported = _amount(transfer.get("amount"), reported_currency)
        except WebhookPayloadError:
            reported = None
        return PayoutResult(
            provider_payout_id=transfer_id,
            status=_TRANSFER_STATUSES.get(str(transfer.get("status")).upper(), PayoutStatus.PENDING),
            amount_minor=amount_minor if reported is None else reported,
            currency=currency if reported is None or reported_currency is None else reported_currency.upper(),
        )

    # --- webhooks ----------------------------------------------------------------------------

    def webhook_setup(self, *, url: str) -> WebhookSetup:
        """Flutterwave's API has no call that reads the webhook settings: nothing is sent, and the
        answer says what to set in its dashboard (never the secret itself)."""
        return WebhookSetup(
            checked=False,
            notes=(
                f"Flutterwave has no API for its webhook settings: in its dashboard (Settings, Webhooks) the URL "
                f"must be {url} and the secret hash the value of FLUTTERWAVE_SECRET_HASH",
            ),
        )

    def verify_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> None:
        raw = require_bytes(body)
        if not self.secret_hash:
            raise WebhookSignatureError("no Flutterwave secret hash is configured")
        signature = header_value(headers, SIGNATURE_HEADER)
        if signature is not None:
            expected = sign_body(raw, self.secret_hash)
            if not hmac.compare_digest(signature.strip().encode(), expected.encode()):
                raise WebhookSignatureError(f"{SIGNATURE_HEADER} does not match the body and the secret hash")
            return
        legacy = header_value(headers, LEGACY_HASH_HEADER)
        if legacy is None:
            raise WebhookSignatureError(f"missing {SIGNATURE_HEADER} or {LEGACY_HASH_HEADER} header")
        if not hmac.compare_digest(legacy.strip().encode(), self.secret_hash.encode()):
            raise WebhookSignatureError(f"{LEGACY_HASH_HEADER} does not match the configured secret hash")

    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> WebhookEnvelope:
        raw_body = require_bytes(body)
        payload, raw = parse_json_object(raw_body)
        event_type = as_str(payload.get("event")) or as_str(payload.get("type"))
        if event_type is None:
            raise WebhookPayloadError("Flutterwave delivery without event or type")
        data = as_dict(payload.get("data"))
        data_status = str(data.get("status") or "").lower()
        data_id = as_str(data.get("id"))
        event_id = as_str(payload.get("id")) or as_str(payload.get("webhook_id"))
        if event_id is None:
            # Deterministic for a redelivery of the same body, distinct for a new status.
            event_id = (
                f"{event_type}:{data_id}:{data_status or '-'}"
                if data_id
                else f"{event_type}:sha256:{hashlib.sha256(raw_body).hexdigest()}"
            )
        common: dict[str, Any] = {
            "provider": self.name,
            "event_id": event_id,
            "event_type": event_type,
            "occurred_at": iso_to_datetime(_first(data, "created_at", "created_datetime", "createdAt"))
            or iso_to_datetime(payload.get("timestamp")),
            "raw": raw,
        }
        currency = as_str(data.get("currency"))
        if event_type in ("charge.completed", "charge.failed"):
            status = (
                PaymentStatus.PENDING  # an attempt failed; the shopper may retry (module docstring)
                if event_type == "charge.failed"
                else _CHARGE_STATUSES.get(data_status, PaymentStatus.UNKNOWN)
            )
            tx_ref = as_str(_first(data, "tx_ref", "reference"))
            envelope = WebhookEnvelope(
                **common,
                status=status,
                reference=tx_ref,
                checkout_id=tx_ref,
                payment_id=data_id,
                amount_minor=_amount(data.get("amount"), currency),
                currency=currency,
            )
        elif event_type == "refund.completed":
            tx_ref = as_str(_first(data, "tx_ref", "TxRef", "reference"))
            written = _first(data, "AmountRefunded", "amount_refunded", "amount")
            refunded = _amount(written, currency)
            envelope = WebhookEnvelope(
                **common,
                # A refund that failed leaves the money with the merchant: the refund is failed.
                status=PaymentStatus.REFUND_FAILED if data_status == "failed" else PaymentStatus.REFUNDED,
                reference=tx_ref,
                checkout_id=tx_ref,
                payment_id=as_str(_first(data, "TransactionId", "transaction_id", "charge_id")),
                amount_minor=refunded,
                currency=currency,
                refund_id=data_id,
                refund_amount_minor=refunded,
                amount_major=_major_written(written) if currency is None else None,
                refund_failure=(as_str(_first(data, "comments", "comment", "status")) or "")
                if data_status == "failed"
                else "",
            )
        elif event_type == TRANSFER_EVENT:
            payout = _transfer_event(data)
            reference = payout.result.provider_payout_id if payout else None
            return WebhookEnvelope(**common, status=PaymentStatus.UNKNOWN, reference=reference, payout=payout)
        else:
            return WebhookEnvelope(**common, status=PaymentStatus.UNKNOWN)
        return identified_or_unknown(envelope)
