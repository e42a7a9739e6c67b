"""The sandbox provider: a payment provider that runs on this machine, so the whole path
(checkout -> pay page -> signed webhook -> processing) works without any external account.

`SandboxProvider` is the adapter. Its "provider side" state (session, outcome, refunds) lives in
the Django cache (Redis), written with atomic `add`s so a double-clicked pay button or a retried
refund settles once. `create_session` points the shopper at Darkroom's own page
`/sandbox/pay/<checkout_id>`; that page calls `settle` (paid or failed) and hands the returned
event to a `SandboxWebhookSender`.

Like a real provider's session, a sandbox session stops taking payments once it is closed:
`close_payment_session` (called when the checkout expires unpaid) records the outcome `expired`
with the same atomic `add` the pay button uses, so exactly one of "paid", "failed" and "expired"
wins; and a session created with `expires_at` (the checkout's expiry) closes itself then, even
if the close call never comes. The pay page then refuses Pay and Fail (409, nothing charged).

Webhooks use Stripe's t/v1 HMAC-SHA256 scheme (`signing.py`) under the header
`Sandbox-Signature`, keyed with SANDBOX_WEBHOOK_SECRET. Body::

    {"id": "evt_sbx_...", "type": "payment.paid", "created": 1700000000,
     "data": {"reference": "sbx_<checkout id>", "checkout_id": "...", "amount_minor": 1500, "currency": "EUR"}}

Event ids are derived from (reference, outcome), like a real provider's event id: every
delivery of "this payment was paid" carries the same id, however often it is sent.

Refunds, partial ones too, like a real provider's: a paid payment takes several refunds, each
with its own idempotency key and id (`re_sbx_...`), as long as together they do not exceed the
payment. Each refund has its own `payment.refunded` event (id derived from the refund id, so a
second refund is not deduplicated as the first one's event), which names the refund and, like
Stripe's `amount_refunded`, carries the CUMULATIVE amount refunded up to and including it::

    {"id": "evt_sbx_...", "type": "payment.refunded", "created": 1700000000,
     "data": {"reference": "sbx_...", "checkout_id": "...", "amount_minor": 1500, "currency": "EUR",
              "refund_id": "re_sbx_...", "refund_amount_minor": 500}}

A refund it accepted can still fail, as Stripe's do (`fail_refund`): its amount counts no more,
and `payment.refund_failed` names the refund and carries its `failure_reason`.

`fetch_status` says REFUNDED once the refunds add up to the whole payment, PAID before.

`SandboxWebhookSender` makes misbehaving deliveries on purpose (settings
SANDBOX_WEBHOOK_DUPLICATES, SANDBOX_WEBHOOK_SHUFFLE, SANDBOX_WEBHOOK_DELAY_SECONDS): `plan`
repeats each event N times, optionally shuffles the whole list (a refund may then arrive before
the payment) and gives each delivery a delay; `send` (or a Celery task per planned delivery,
using `delay_seconds` as its countdown) signs each delivery at send time and POSTs it.

Payouts are paid at once: `payout` records the payout under its id (an atomic `add`, like a
refund) and returns PAID with the id `sbx_po_<payout id hex>`. The same payout id returns the
recorded result again; the same id with another amount, currency or destination is refused.
`payout_status` returns the recorded payout (PAID, or FAILED once returned), or a 404
ProviderError for an unknown one.

Payout webhooks, like a provider's: `payout_return` plays the receiving bank sending a paid
payout back (the recorded payout becomes returned), and `payout_event` builds the event a
provider sends about a recorded payout's current state, `payout.paid` or `payout.returned`::

    {"id": "evt_sbx_po_...", "type": "payout.returned", "created": 1700000000,
     "data": {"payout_id": "...", "provider_payout_id": "sbx_po_...", "amount_minor": 5000,
              "currency": "EUR"}}

They travel through the same `SandboxWebhookSender` (duplicates, shuffle, delay) to
`POST /webhooks/sandbox` (`apps.payments.sandbox.sandbox_announce_payout`).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from django.core.cache import cache as default_cache
from django.core.cache.backends.base import BaseCache

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
    as_dict,
    as_str,
    check_amount,
    check_payout_id,
    check_provider_payout_id,
    destination_text,
    epoch_to_datetime,
    header_value,
    identified_or_unknown,
    normalize_currency,
    parse_json_object,
    require_bytes,
)
from apps.payments.providers.http import HttpRequest, HttpTransport, UrllibTransport
from apps.payments.providers.signing import sign_header, verify_header

SIGNATURE_HEADER = "Sandbox-Signature"
EVENT_TYPES: dict[PaymentStatus, str] = {
    PaymentStatus.PAID: "payment.paid",
    PaymentStatus.FAILED: "payment.failed",
    PaymentStatus.REFUNDED: "payment.refunded",
    PaymentStatus.REFUND_FAILED: "payment.refund_failed",
}
_REFUND_STATUSES = frozenset({PaymentStatus.REFUNDED, PaymentStatus.REFUND_FAILED})
_STATUS_BY_TYPE = {event_type: status for status, event_type in EVENT_TYPES.items()}
_SETTLE_OUTCOMES = frozenset({PaymentStatus.PAID, PaymentStatus.FAILED})
_CLOSED = str(PaymentStatus.EXPIRED)  # the outcome of a session closed unpaid
PAYOUT_EVENT_TYPES: dict[PayoutStatus, str] = {
    PayoutStatus.PAID: "payout.paid",
    PayoutStatus.FAILED: "payout.returned",
}
_PAYOUT_STATUS_BY_TYPE = {event_type: status for status, event_type in PAYOUT_EVENT_TYPES.items()}
STATE_TTL_SECONDS = 30 * 24 * 3600
# How often `refund` re-reads and retries after losing a refund slot to a concurrent refund.
_REFUND_ATTEMPTS = 50


@dataclass(frozen=True)
class SandboxEvent:
    """One webhook event: its id and type, and the exact bytes every delivery of it carries."""

    event_id: str
    event_type: str
    body: bytes


def event_id_for(*, reference: str, status: PaymentStatus, refund_id: str | None = None) -> str:
    """The event id of (reference, outcome), or of one refund of the payment."""
    subject = f"{reference}:{status}" if refund_id is None else f"{reference}:{status}:{refund_id}"
    return "evt_sbx_" + hashlib.sha256(subject.encode()).hexdigest()[:24]


def build_event(
    *,
    status: PaymentStatus,
    reference: str,
    checkout_id: str,
    amount_minor: int,
    currency: str,
    created: int | None = None,
    event_id: str | None = None,
    refund_id: str | None = None,
    refund_amount_minor: int | None = None,
    failure_reason: str | None = None,
) -> SandboxEvent:
    """A paid/failed/refunded/refund-failed event for a sandbox payment (event id deterministic
    by default).

    For a refunded event, `amount_minor` is the cumulative amount refunded; `refund_id` (and
    `refund_amount_minor`, that refund's own amount) name the refund the event is about, and
    the default event id is then derived from the refund id. A refund-failed event names the
    refund and says why (`failure_reason`, as Stripe's refund does)."""
    if status not in EVENT_TYPES:
        raise ValueError(f"the sandbox sends paid, failed, refunded or refund-failed events, not {status}")
    if refund_id is not None and status not in _REFUND_STATUSES:
        raise ValueError("only a refund's event names a refund")
    event_type = EVENT_TYPES[status]
    identifier = event_id or event_id_for(reference=reference, status=status, refund_id=refund_id)
    data: dict[str, Any] = {
        "reference": reference,
        "checkout_id": checkout_id,
        "amount_minor": amount_minor,
        "currency": normalize_currency(currency),
    }
    if refund_id is not None:
        data["refund_id"] = refund_id
    if refund_amount_minor is not None:
        data["refund_amount_minor"] = refund_amount_minor
    if failure_reason is not None:
        data["failure_reason"] = failure_reason
    payload = {
        "id": identifier,
        "type": event_type,
        "created": int(time.time()) if created is None else created,
        "data": data,
    }
    return SandboxEvent(identifier, event_type, json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())


def build_payout_event(
    *,
    status: PayoutStatus,
    payout_id: str,
    provider_payout_id: str,
    amount_minor: int,
    currency: str,
    created: int | None = None,
    event_id: str | None = None,
) -> SandboxEvent:
    """A `payout.paid` or `payout.returned` event (event id deterministic by default: every
    delivery of "this payout was returned" carries the same id)."""
    if status not in PAYOUT_EVENT_TYPES:
        raise ValueError(f"the sandbox sends paid or returned payout events, not {status}")
    event_type = PAYOUT_EVENT_TYPES[status]
    identifier = event_id or "evt_sbx_po_" + hashlib.sha256(f"{provider_payout_id}:{status}".encode()).hexdigest()[:24]
    payload = {
        "id": identifier,
        "type": event_type,
        "created": int(time.time()) if created is None else created,
        "data": {
            "payout_id": payout_id,
            "provider_payout_id": provider_payout_id,
            "amount_minor": amount_minor,
            "currency": normalize_currency(currency),
        },
    }
    return SandboxEvent(identifier, event_type, json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())


class SandboxProvider(PaymentProvider):
    name = "sandbox"

    def __init__(
        self,
        *,
        webhook_secrets: Sequence[str],
        public_base_url: str,
        tolerance_seconds: int = 300,
        cache: BaseCache | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.webhook_secrets = tuple(webhook_secrets)
        self.public_base_url = public_base_url.rstrip("/")
        self.tolerance_seconds = tolerance_seconds
        self._cache = cache if cache is not None else default_cache
        self._now = now

    # --- provider-side state ---------------------------------------------------------------

    @staticmethod
    def reference_for(checkout_id: str) -> str:
        return f"sbx_{checkout_id}"

    def _key(self, reference: str, part: str) -> str:
        return f"payments:sandbox:{hashlib.sha256(reference.encode()).hexdigest()}:{part}"

    def _session(self, reference: str) -> dict[str, Any]:
        session = self._cache.get(self._key(reference, "session"))
        if not isinstance(session, dict):
            raise ProviderError(
                f"sandbox: no session {reference}", provider=self.name, retryable=False, http_status=404
            )
        return session

    def _event(self, reference: str, status: PaymentStatus) -> SandboxEvent:
        session = self._session(reference)
        return build_event(
            status=status,
            reference=reference,
            checkout_id=session["checkout_id"],
            amount_minor=session["amount_minor"],
            currency=session["currency"],
            created=int(self._now()),
        )

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
        """The session (kept in the cache, first one wins) closes itself at `expires_at`."""
        reference = self.reference_for(checkout_id)
        session = {
            "checkout_id": checkout_id,
            "amount_minor": check_amount(amount_minor),
            "currency": normalize_currency(currency),
            "email": email,
            "description": description,
            "success_url": success_url,
            "cancel_url": cancel_url,
            "expires_at": expires_at.timestamp() if expires_at is not None else None,
        }
        # `add` keeps the first session for a checkout id: a retry is idempotent.
        self._cache.add(self._key(reference, "session"), session, timeout=STATE_TTL_SECONDS)
        return ProviderSession(
            reference=reference, payment_url=f"{self.public_base_url}/sandbox/pay/{quote(checkout_id)}"
        )

    def session_details(self, *, reference: str) -> dict[str, Any]:
        """What the pay page shows: checkout id, amount, currency, email, return URLs."""
        return dict(self._session(reference))

    def settle(self, *, reference: str, outcome: PaymentStatus) -> SandboxEvent:
        """The shopper paid (PAID) or the payment failed (FAILED), once per session.

        Repeating the same outcome returns the same event (a double click sends the same event
        id again); a different outcome after settlement raises ProviderError (409), and so does
        any outcome of a session that was closed or whose `expires_at` passed (nothing is
        charged: a real provider's expired session takes no payment either).
        """
        if outcome not in _SETTLE_OUTCOMES:
            raise ValueError("a sandbox payment settles as paid or failed")
        session = self._session(reference)
        key = self._key(reference, "outcome")
        if self._past_deadline(session):
            self._cache.add(key, _CLOSED, timeout=STATE_TTL_SECONDS)  # unless it was settled in time
        if not self._cache.add(key, str(outcome), timeout=STATE_TTL_SECONDS) and self._cache.get(key) != str(outcome):
            settled = self._cache.get(key)
            detail = (
                f"sandbox: the payment session {reference} has expired; nothing was charged"
                if settled == _CLOSED
                else f"sandbox: {reference} is already {settled}"
            )
            raise ProviderError(detail, provider=self.name, retryable=False, http_status=409)
        return self._event(reference, outcome)

    def _past_deadline(self, session: Mapping[str, Any]) -> bool:
        deadline = session.get("expires_at")
        return isinstance(deadline, int | float) and self._now() >= deadline

    def session_outcome(self, *, reference: str) -> str | None:
        """What Pay or Fail would meet now (reads only): "paid" or "failed" once settled,
        "expired" once closed unpaid or past its `expires_at` unsettled (`settle` refuses then),
        None while the session takes payment. Raises ProviderError (404) for an unknown session."""
        session = self._session(reference)
        outcome = self._cache.get(self._key(reference, "outcome"))
        if outcome is None and self._past_deadline(session):
            return _CLOSED
        return None if outcome is None else str(outcome)

    def close_payment_session(self, *, reference: str) -> SessionCloseOutcome:
        """Close the session unpaid (its checkout expired): records the outcome `expired` unless
        the shopper paid or failed first (COMPLETED); closing again is ALREADY_CLOSED. Raises
        ProviderError (404) for a session the sandbox does not have. No network call."""
        self._session(reference)
        key = self._key(reference, "outcome")
        if self._cache.add(key, _CLOSED, timeout=STATE_TTL_SECONDS):
            return SessionCloseOutcome.CLOSED
        if self._cache.get(key) == _CLOSED:
            return SessionCloseOutcome.ALREADY_CLOSED
        return SessionCloseOutcome.COMPLETED

    def refunded_event(self, *, reference: str, refund_id: str | None = None) -> SandboxEvent:
        """The `payment.refunded` event a provider sends for one refund of a sandbox payment: the
        refund `refund_id` (None: the latest refund), with the cumulative amount refunded up to
        and including it. The same refund always gives the same event id. Raises ProviderError:
        409 if the payment has no refund, 404 if it has no refund `refund_id`."""
        refunds = self._refunds(reference)
        if not refunds:
            raise ProviderError(
                f"sandbox: {reference} is not refunded", provider=self.name, retryable=False, http_status=409
            )
        refund = self._made_refund(reference, refunds, refund_id)
        return self._refund_event(
            PaymentStatus.REFUNDED, reference=reference, refund=refund, amount_minor=refund["refunded_total_minor"]
        )

    def _refund_event(
        self,
        status: PaymentStatus,
        *,
        reference: str,
        refund: dict[str, Any],
        amount_minor: int,
        failure_reason: str | None = None,
        created: int | None = None,
    ) -> SandboxEvent:
        """The event about `refund` (a recorded refund) of the payment `reference`, made
        `created` (epoch seconds; None: now)."""
        session = self._session(reference)
        return build_event(
            status=status,
            reference=reference,
            checkout_id=session["checkout_id"],
            amount_minor=amount_minor,
            currency=session["currency"],
            created=int(self._now()) if created is None else created,
            refund_id=refund["refund_id"],
            refund_amount_minor=refund["amount_minor"],
            failure_reason=failure_reason,
        )

    def _made_refund(self, reference: str, refunds: list[dict[str, Any]], refund_id: str | None) -> dict[str, Any]:
        """The refund `refund_id` of `refunds` (None: the latest), never a failed refund's
        reversal slot. Raises ProviderError (404) if the payment has no such refund."""
        made = [recorded for recorded in refunds if "failed_refund_id" not in recorded]
        found = [recorded for recorded in made if refund_id is None or recorded["refund_id"] == refund_id]
        if not found:
            raise ProviderError(
                f"sandbox: {reference} has no refund {refund_id}", provider=self.name, retryable=False, http_status=404
            )
        return found[-1]

    def fail_refund(self, *, reference: str, refund_id: str, reason: str = "expired_or_canceled_card") -> SandboxEvent:
        """The provider could not complete the refund `refund_id` it accepted (as a Stripe refund
        fails when the shopper's card was closed meanwhile): its amount counts no more (a slot
        records the reversal, claimed like a refund's, so the totals stay a consistent chain), and
        the `payment.refund_failed` event says so. Idempotent: a refund fails once, and its
        event is the same every time. Raises ProviderError (404) if the payment has no refund
        `refund_id`, or retryable (409) if its slot was lost to other refunds too often."""
        for _ in range(_REFUND_ATTEMPTS):
            refunds = self._refunds(reference)
            refund = self._made_refund(reference, refunds, refund_id)
            reversal = next((r for r in refunds if r.get("failed_refund_id") == refund_id), None)
            if reversal is None:
                reversal = {
                    "refund_id": f"{refund_id}:failed",
                    "failed_refund_id": refund_id,
                    "idempotency_key": f"failed:{refund_id}",
                    "amount_minor": -refund["amount_minor"],
                    "refunded_total_minor": refunds[-1]["refunded_total_minor"] - refund["amount_minor"],
                    "failed_at": int(self._now()),
                }
                if not self._cache.add(
                    self._refund_key(reference, len(refunds) + 1), reversal, timeout=STATE_TTL_SECONDS
                ):
                    continue  # a concurrent refund took the slot: read the chain again
            return self._refund_event(
                PaymentStatus.REFUND_FAILED,
                reference=reference,
                refund=refund,
                amount_minor=refund["amount_minor"],
                failure_reason=reason,
                created=reversal.get("failed_at"),  # when it failed, whenever it is told again
            )
        raise ProviderError(
            f"sandbox: {reference}: the refund slots kept changing", provider=self.name, retryable=True, http_status=409
        )

    def fetch_status(self, *, reference: str) -> PaymentState:
        """PAID (also after partial refunds), REFUNDED once the refunds add up to the whole
        payment, FAILED, EXPIRED or PENDING. Raises ProviderError (404) for an unknown session."""
        session = self._session(reference)
        outcome = self._cache.get(self._key(reference, "outcome"))
        refunds = self._refunds(reference)
        if refunds and refunds[-1]["refunded_total_minor"] >= session["amount_minor"]:
            status = PaymentStatus.REFUNDED
        elif outcome in (PaymentStatus.PAID, PaymentStatus.FAILED, PaymentStatus.EXPIRED):
            status = PaymentStatus(outcome)
        else:
            status = PaymentStatus.PENDING
        return PaymentState(
            status=status, amount_minor=session["amount_minor"], currency=session["currency"], payment_id=reference
        )

    def _refund_key(self, reference: str, number: int) -> str:
        return self._key(reference, f"refund:{number}")

    def _refunds(self, reference: str) -> list[dict[str, Any]]:
        """The payment's refunds in the order they were made: slots 1, 2, ... up to the first
        empty one. A slot is written once (`add`) and never changed, so this is always a
        consistent prefix of the refunds, whatever refunds run at the same time."""
        refunds: list[dict[str, Any]] = []
        while isinstance(recorded := self._cache.get(self._refund_key(reference, len(refunds) + 1)), dict):
            refunds.append(recorded)
        return refunds

    def refund(
        self, *, reference: str, amount_minor: int, idempotency_key: str, payment_id: str | None = None
    ) -> RefundResult:
        """Refund `amount_minor` of a paid sandbox payment; several refunds (partial ones) may
        follow each other while together they do not exceed the payment. Sends no webhook; use
        `refunded_event(refund_id=...)` and a sender for that.

        Idempotent per key: the same key returns the recorded refund again. Race-safe across
        processes without a lock: refund number n is the cache slot `refund:<n>`, claimed with an
        atomic `add` (Redis SET NX) after checking the sum of refunds 1..n-1; a refund that loses
        the slot to a concurrent one reads the refunds again and checks again, so two refunds
        can never both pass the check against the same total.

        Raises ProviderError: 409 if the payment is not paid, or if the key was used for another
        amount (as Stripe refuses a reused idempotency key with other parameters); 400 if this
        refund would take the refunds past the payment; 409 retryable if the slot was lost to
        other refunds `_REFUND_ATTEMPTS` times in a row; 400 for a `payment_id` that is not the
        session's one payment (its reference). ValueError for a non-positive amount.
        """
        check_amount(amount_minor)
        if payment_id is not None and payment_id != reference:
            raise ProviderError(
                f"sandbox: {payment_id[:80]!r} is not the payment of {reference}",
                provider=self.name,
                retryable=False,
                http_status=400,
            )
        session = self._session(reference)
        if self._cache.get(self._key(reference, "outcome")) != PaymentStatus.PAID:
            raise ProviderError(
                f"sandbox: {reference} is not paid", provider=self.name, retryable=False, http_status=409
            )
        for _ in range(_REFUND_ATTEMPTS):
            refunds = self._refunds(reference)
            earlier = next((recorded for recorded in refunds if recorded["idempotency_key"] == idempotency_key), None)
            if earlier is None:
                refunded = refunds[-1]["refunded_total_minor"] if refunds else 0
                if refunded + amount_minor > session["amount_minor"]:
                    raise ProviderError(
                        f"sandbox: refund exceeds the payment ({refunded} of {session['amount_minor']} "
                        f"{session['currency']} refunded already, {amount_minor} more asked)",
                        provider=self.name,
                        retryable=False,
                        http_status=400,
                    )
                number = len(refunds) + 1
                record: dict[str, Any] = {
                    "refund_id": "re_sbx_" + hashlib.sha256(f"{reference}:{idempotency_key}".encode()).hexdigest()[:24],
                    "idempotency_key": idempotency_key,
                    "amount_minor": amount_minor,
                    "refunded_total_minor": refunded + amount_minor,
                }
                if not self._cache.add(self._refund_key(reference, number), record, timeout=STATE_TTL_SECONDS):
                    continue  # a concurrent refund took refund number n: check against it
                earlier = record
            if earlier["amount_minor"] != amount_minor:
                raise ProviderError(
                    f"sandbox: idempotency key {idempotency_key!r} was used for a refund of "
                    f"{earlier['amount_minor']} {session['currency']}, not {amount_minor}",
                    provider=self.name,
                    retryable=False,
                    http_status=409,
                )
            return RefundResult(
                refund_id=earlier["refund_id"],
                status=PaymentStatus.REFUNDED,
                amount_minor=earlier["amount_minor"],
                currency=session["currency"],
            )
        raise ProviderError(
            f"sandbox: too many concurrent refunds of {reference}; try again",
            provider=self.name,
            retryable=True,
            http_status=409,
        )

    # --- payouts -----------------------------------------------------------------------------

    def normalize_payout_destination(self, destination: str) -> str:
        """Any printable text of at most 200 characters (surrounding whitespace dropped)."""
        text = destination_text(destination)
        if not text.isprintable():
            raise PayoutDestinationError("a sandbox payout destination must be printable text")
        return text

    @staticmethod
    def payout_reference_for(payout_id: str) -> str:
        try:
            suffix = uuid.UUID(payout_id).hex
        except ValueError:
            suffix = hashlib.sha256(payout_id.encode()).hexdigest()[:32]
        return f"sbx_po_{suffix}"

    def payout(
        self,
        *,
        payout_id: str,
        amount_minor: int,
        currency: str,
        destination: str,
        description: str,
    ) -> PayoutResult:
        """Pay at once and remember it under the payout id (30 days). A repeated payout id
        returns the first result; with another amount, currency or destination it raises
        ProviderError (409, not retryable). No network call.
        """
        payout: dict[str, Any] = {
            "provider_payout_id": self.payout_reference_for(check_payout_id(payout_id)),
            "amount_minor": check_amount(amount_minor),
            "currency": normalize_currency(currency),
            "destination": self.normalize_payout_destination(destination),
            "description": description,
        }
        key = self._key(f"payout:{payout_id}", "payout")
        recorded = payout if self._cache.add(key, payout, timeout=STATE_TTL_SECONDS) else self._cache.get(key)
        if not isinstance(recorded, dict):
            # Expired between `add` and `get`: nothing is recorded any more, record this one.
            self._cache.add(key, payout, timeout=STATE_TTL_SECONDS)
            recorded = self._cache.get(key) or payout
        fields = ("amount_minor", "currency", "destination")
        if any(recorded[name] != payout[name] for name in fields):
            raise ProviderError(
                f"sandbox: payout {payout_id} was already made as {recorded['amount_minor']} "
                f"{recorded['currency']} to {recorded['destination']!r}",
                provider=self.name,
                retryable=False,
                http_status=409,
            )
        return PayoutResult(
            provider_payout_id=recorded["provider_payout_id"],
            status=PayoutStatus.FAILED if recorded.get("returned") else PayoutStatus.PAID,
            amount_minor=recorded["amount_minor"],
            currency=recorded["currency"],
        )

    def payout_status(self, *, payout_id: str, provider_payout_id: str) -> PayoutResult:
        """The recorded payout: PAID (a sandbox payout is paid when made). Raises ProviderError:
        404 for a payout id with nothing recorded (never made, or older than 30 days), not
        retryable; 409 if the recorded payout has another provider id. No network call."""
        check_payout_id(payout_id)
        check_provider_payout_id(provider_payout_id)
        recorded = self._cache.get(self._key(f"payout:{payout_id}", "payout"))
        if not isinstance(recorded, dict):
            raise ProviderError(f"sandbox: no payout {payout_id}", provider=self.name, retryable=False, http_status=404)
        if recorded["provider_payout_id"] != provider_payout_id:
            raise ProviderError(
                f"sandbox: payout {payout_id} is {recorded['provider_payout_id']}, not {provider_payout_id}",
                provider=self.name,
                retryable=False,
                http_status=409,
            )
        return PayoutResult(
            provider_payout_id=recorded["provider_payout_id"],
            status=PayoutStatus.FAILED if recorded.get("returned") else PayoutStatus.PAID,
            amount_minor=recorded["amount_minor"],
            currency=recorded["currency"],
        )

    def _recorded_payout(self, payout_id: str) -> dict[str, Any]:
        recorded = self._cache.get(self._key(f"payout:{check_payout_id(payout_id)}", "payout"))
        if not isinstance(recorded, dict):
            raise ProviderError(f"sandbox: no payout {payout_id}", provider=self.name, retryable=False, http_status=404)
        return recorded

    def payout_return(self, *, payout_id: str) -> SandboxEvent:
        """The receiver's bank sends a paid payout back: the recorded payout becomes returned
        (`payout_status` then says FAILED) and its `payout.returned` event is returned. Once:
        returning it again gives the same event. Raises ProviderError (404) for an unknown payout."""
        recorded = self._recorded_payout(payout_id)
        if not recorded.get("returned"):
            recorded = {**recorded, "returned": True}
            self._cache.set(self._key(f"payout:{payout_id}", "payout"), recorded, timeout=STATE_TTL_SECONDS)
        return self.payout_event(payout_id=payout_id)

    def payout_event(self, *, payout_id: str) -> SandboxEvent:
        """The event a provider sends about a recorded payout now: `payout.paid`, or
        `payout.returned` once returned. Raises ProviderError (404) for an unknown payout."""
        recorded = self._recorded_payout(payout_id)
        return build_payout_event(
            status=PayoutStatus.FAILED if recorded.get("returned") else PayoutStatus.PAID,
            payout_id=payout_id,
            provider_payout_id=recorded["provider_payout_id"],
            amount_minor=recorded["amount_minor"],
            currency=recorded["currency"],
            created=int(self._now()),
        )

    # --- webhooks ----------------------------------------------------------------------------

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
            raise WebhookPayloadError("sandbox event without id or type")
        data = as_dict(event.get("data"))
        amount = _minor_or_none(data.get("amount_minor"))
        refund_amount = _minor_or_none(data.get("refund_amount_minor"))
        currency = as_str(data.get("currency"))
        if event_type in _PAYOUT_STATUS_BY_TYPE:
            return self._payout_envelope(event, raw, event_id=event_id, event_type=event_type)
        status = _STATUS_BY_TYPE.get(event_type, PaymentStatus.UNKNOWN)
        envelope = WebhookEnvelope(
            provider=self.name,
            event_id=event_id,
            event_type=event_type,
            status=status,
            reference=as_str(data.get("reference")),
            checkout_id=as_str(data.get("checkout_id")),
            payment_id=as_str(data.get("reference")),
            amount_minor=amount,
            currency=currency.upper() if currency else None,
            occurred_at=epoch_to_datetime(event.get("created")),
            refund_id=as_str(data.get("refund_id")) if status in _REFUND_STATUSES else None,
            refund_amount_minor=refund_amount if status in _REFUND_STATUSES else None,
            refund_failure=(as_str(data.get("failure_reason")) or "") if status is PaymentStatus.REFUND_FAILED else "",
            raw=raw,
        )
        return identified_or_unknown(envelope)

    def _payout_envelope(
        self, event: Mapping[str, Any], raw: Mapping[str, Any], *, event_id: str, event_type: str
    ) -> WebhookEnvelope:
        data = as_dict(event.get("data"))
        amount, currency = data.get("amount_minor"), as_str(data.get("currency"))
        provider_payout_id = as_str(data.get("provider_payout_id"))
        payout = None
        if provider_payout_id and currency and isinstance(amount, int) and not isinstance(amount, bool):
            result = PayoutResult(
                provider_payout_id=provider_payout_id,
                status=_PAYOUT_STATUS_BY_TYPE[event_type],
                amount_minor=amount,
                currency=currency.upper(),
            )
            payout = PayoutEvent(result=result, payout_id=as_str(data.get("payout_id")))
        return WebhookEnvelope(
            provider=self.name,
            event_id=event_id,
            event_type=event_type,
            status=PaymentStatus.UNKNOWN,
            reference=provider_payout_id,
            occurred_at=epoch_to_datetime(event.get("created")),
            payout=payout,
            raw=raw,
        )


def _minor_or_none(value: object) -> int | None:
    """An amount in minor units as the sandbox sends it (a JSON integer), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class PlannedDelivery:
    """One POST of one event: which copy it is and how long after planning to send it."""

    event: SandboxEvent
    copy: int
    delay_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, e.g. for a Celery task argument."""
        return {
            "event_id": self.event.event_id,
            "event_type": self.event.event_type,
            "body": self.event.body.decode(),
            "copy": self.copy,
            "delay_seconds": self.delay_seconds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlannedDelivery:
        event = SandboxEvent(str(data["event_id"]), str(data["event_type"]), str(data["body"]).encode())
        return cls(event=event, copy=int(data["copy"]), delay_seconds=float(data["delay_seconds"]))


class SandboxWebhookSender:
    """Signs and POSTs sandbox webhook deliveries, duplicated, shuffled and delayed on request."""

    def __init__(
        self,
        *,
        secret: str,
        url: str,
        transport: HttpTransport | None = None,
        duplicates: int = 1,
        shuffle: bool = False,
        delay_seconds: float = 0.0,
        rng: random.Random | None = None,
        timeout: float = 10.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        if duplicates < 1:
            raise ValueError("duplicates must be at least 1")
        if delay_seconds < 0:
            raise ValueError("delay_seconds must not be negative")
        self.secret = secret
        self.url = url
        self.duplicates = duplicates
        self.shuffle = shuffle
        self.delay_seconds = delay_seconds
        self.timeout = timeout
        self._transport = transport or UrllibTransport()
        self._rng = rng or random.SystemRandom()
        self._now = now

    def headers(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        ts = int(self._now()) if timestamp is None else timestamp
        return {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign_header(body=body, secrets=[self.secret], timestamp=ts),
        }

    def plan(self, events: Sequence[SandboxEvent]) -> list[PlannedDelivery]:
        """Every event `duplicates` times; the whole list shuffled if configured; each delivery
        delayed by `delay_seconds`. Send in list order.
        """
        deliveries = [
            PlannedDelivery(event=event, copy=copy, delay_seconds=self.delay_seconds)
            for event in events
            for copy in range(1, self.duplicates + 1)
        ]
        if self.shuffle:
            self._rng.shuffle(deliveries)
        return deliveries

    def deliver(self, event: SandboxEvent) -> int:
        """POST one delivery, signed now; return the HTTP status. Raises TransportError."""
        request = HttpRequest("POST", self.url, self.headers(event.body), event.body)
        return self._transport.send(request, timeout=self.timeout).status

    def send(
        self,
        plan: Sequence[PlannedDelivery],
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> list[int]:
        """Send a plan in order, each delivery no earlier than its delay after the call began.

        Blocking: run it in a worker or a test, never in a request or inside a transaction.
        """
        started = clock()
        statuses = []
        for delivery in plan:
            wait = started + delivery.delay_seconds - clock()
            if wait > 0:
                sleep(wait)
            statuses.append(self.deliver(delivery.event))
        return statuses
