"""PayPal adapter: Orders v2 over JSON/HTTPS, webhooks verified offline with PayPal's certificate.

Create: `POST /v2/checkout/orders` (intent CAPTURE) with `PayPal-Request-Id` = checkout id (a
retry returns the same order) and the checkout id in the purchase unit's `custom_id` and
`reference_id`. Reference = the order id; the shopper goes to the `payer-action` link and comes
back to the experience context's `return_url` once they approved (`darkroom_return=paid`,
`returns.py`; PayPal appends `token`, the order id, and `PayerID`) or to its `cancel_url`.
Amounts in HUF, JPY and TWD, which PayPal takes in whole units only (`WHOLE_UNIT_CURRENCIES`),
go without decimals in orders and refunds as in payouts; an order or refund for a fraction of a
unit in one is refused before anything is sent (a non-retryable ProviderError).

Shipping: the order is created with `shipping_preference: NO_SHIPPING` on purpose, also for
checkouts with prints. Darkroom collects the shipping address itself, at checkout, for every
provider alike (`CheckoutShipping`, required exactly when a checkout has prints; see
apps/commerce/services/checkout.py), and the studio ships to that address. Letting PayPal ask for
(or let the buyer change) an address would give a second address that Darkroom never reads, and
which could differ from the one the studio sees, so PayPal is told there is nothing to ship.

Approval is not payment: after the buyer approves, the order must be captured
(`PayPalProvider.capture`, idempotent through `PayPal-Request-Id`), and only the capture's
outcome is money. So CHECKOUT.ORDER.APPROVED maps to APPROVED (the consumer captures), not PAID.

Closing an expired checkout's order: there is nothing to call. Orders v2 has no request that
cancels or voids a CAPTURE-intent order (void exists only for authorizations, which Darkroom never
creates), and an order takes no expiry. None is needed: approving an order moves no money, only
the merchant's capture does, and Darkroom captures only while the checkout is still open and not
overdue (`apps.commerce.services.payment.checkout_capture`). An expired checkout's order is
never captured, so the buyer is never charged; the uncaptured order lapses at PayPal.
`close_payment_session` sends nothing and answers NOT_SUPPORTED. (A capture already in flight when
the checkout expires can still succeed; that payment is refunded as a late payment.)

Webhook mapping:
    CHECKOUT.ORDER.APPROVED                       -> APPROVED (capture it)
    CHECKOUT.ORDER.COMPLETED                      -> by its (last) capture's status, as
                                                     `fetch_status` reads an order: COMPLETED
                                                     PAID with the capture's amount, PENDING
                                                     (or no capture) PENDING, DECLINED/FAILED
                                                     FAILED (refunds come as their own events)
    PAYMENT.CAPTURE.COMPLETED                     -> PAID
    PAYMENT.CAPTURE.PENDING                       -> PENDING
    PAYMENT.CAPTURE.DENIED, PAYMENT.CAPTURE.DECLINED    -> FAILED
    PAYMENT.CAPTURE.REFUNDED, PAYMENT.CAPTURE.REVERSED  -> REFUNDED (a reversal returns the
                                                     money to the buyer too). The resource is
                                                     the refund: refund_id = its id, amount =
                                                     total_refunded_amount (cumulative), else
                                                     its own amount (both in one currency, or
                                                     the event is malformed)
    anything else                                 -> UNKNOWN

Webhook signature (PayPal's documented offline verification): headers PAYPAL-TRANSMISSION-ID,
-TIME, -SIG, -CERT-URL and PAYPAL-AUTH-ALGO (must be SHA256withRSA); the signed message is
``f"{transmission_id}|{transmission_time}|{webhook_id}|{crc32(raw body) as unsigned decimal}"``
and PAYPAL-TRANSMISSION-SIG is its base64 RSA PKCS#1 v1.5 SHA-256 signature, verified with the
public key of the certificate at CERT-URL. The URL is trusted only if it is https, on the
default port, without credentials, and its host is in `cert_hosts` (checked BEFORE anything is
fetched, so a forged delivery cannot make Darkroom fetch an attacker's URL). The fetch refuses
redirects. Fetched certificates are cached in the Django cache (key = hash of the URL) for
`cert_cache_seconds`; their validity dates are checked on every verification. A delivery whose
PAYPAL-TRANSMISSION-TIME is more than `tolerance_seconds` (300) from now, either way, is refused
like a bad signature, before any certificate is fetched: the time is signed, so a captured
delivery cannot be replayed later (Stripe's replay window, the same setting).

API authentication: an OAuth2 client-credentials token, cached until a minute before its
`expires_in`, at most 9 hours (`token_cache_seconds`). PayPal may expire or revoke it earlier;
a call it answers 401 gets a new token and is sent once more (`_TokenRefreshingApi`), same
body, same `PayPal-Request-Id`.

Payouts: Payouts API `POST /v1/payments/payouts`, one EMAIL item per batch, `PayPal-Request-Id`
= `sender_batch_id` = `sender_item_id` = payout id. A retry with the same request id gets the
first answer back; once that is forgotten, PayPal still refuses a `sender_batch_id` used in the
last 30 days with a 4xx that links the original batch (in `details[].link`, a list or an
object, or in the top-level `links`). That batch is read (`GET /v1/payments/payouts/<batch id>`
on our own API base, whatever host the link names) and returned if its sender_batch_id is ours,
so a payout id pays at most once. An answer that says "duplicate" but whose batch cannot be read
(no link, a link to someone else's batch, a failed read) is a retryable ProviderError: the
money's fate is unknown, so it must never look like a refusal. PayPal takes HUF, JPY and TWD in
whole units only (`WHOLE_UNIT_CURRENCIES`): their amounts go without decimals, a fraction of a
unit in one is a ValueError before anything is sent, and `payout_sendable_minor` tells the
payout service how much of a balance it can send (the rest stays in the wallet).

PAID and FAILED are final for the caller (FAILED credits the money back), so they are returned
only when PayPal's answer settles where the money is. The outcome is the item's
`transaction_status` (a batch read back carries items; a batch can be SUCCESS while its item is
UNCLAIMED and the money comes back 30 days later):
    SUCCESS                                  -> PAID (credited to the receiver)
    FAILED, RETURNED, REFUNDED, DENIED       -> FAILED (never deducted, or back in our account)
    UNCLAIMED, PENDING, ONHOLD, NEW, BLOCKED,
    REVERSED, anything else                  -> PENDING (an operator or a webhook settles it)
BLOCKED and REVERSED stay PENDING because PayPal does not document where their money is.
Without items (the create answer has only `batch_header`) the batch status decides, and is
never PAID: DENIED (PayPal: "denied, so they were not processed") -> FAILED, anything else,
CANCELED included -> PENDING. `payout_status` reads the batch back (`GET /v1/payments/payouts/
<batch id>`), checks it is ours (sender_batch_id and our item's sender_item_id = payout id) and
maps our item the same way.

Payout webhooks (verified like every PayPal delivery): `PAYMENT.PAYOUTS-ITEM.*` (SUCCEEDED,
FAILED, RETURNED, REFUNDED, DENIED, BLOCKED, UNCLAIMED, HELD, CANCELED) carry the item
(`payout_batch_id` = our provider payout id, `payout_item.sender_item_id` = the payout id,
`payout_item.amount`, `transaction_status`), mapped through the item table above; the event type
stands in for a missing `transaction_status`. `PAYMENT.PAYOUTSBATCH.*` carry the batch header
only, mapped as a batch without items (DENIED -> FAILED, else PENDING). BLOCKED and REVERSED
items come with a review note: PayPal does not say where their money is, so an operator settles
them (a webhook is the moment we learn of it; the payout would otherwise wait submitted).

Webhook setup: `webhook_setup` reads the webhook PAYPAL_WEBHOOK_ID names (`GET
/v1/notifications/webhooks/<id>`) and says whether it delivers to Darkroom's URL every event in
`WEBHOOK_EVENTS` (`manage.py payments_webhooks_check`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.core.cache import cache as default_cache
from django.core.cache.backends.base import BaseCache
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator

from apps.core.redis_guard import REDIS_ERRORS, redis_failed, redis_skipped
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
    currency_exponent,
    destination_text,
    events_not_subscribed,
    header_value,
    identified_or_unknown,
    iso_to_datetime,
    major_to_minor,
    minor_to_major,
    normalize_currency,
    parse_json_object,
    require_bytes,
)
from apps.payments.providers.http import HttpRequest, HttpTransport, JsonApi, TransportError, UrllibTransport

DEFAULT_API_BASE = "https://api-m.sandbox.paypal.com"
DEFAULT_CERT_HOSTS = ("api.paypal.com", "api.sandbox.paypal.com")
AUTH_ALGO = "SHA256withRSA"
TRANSMISSION_ID = "PAYPAL-TRANSMISSION-ID"
TRANSMISSION_TIME = "PAYPAL-TRANSMISSION-TIME"
TRANSMISSION_SIG = "PAYPAL-TRANSMISSION-SIG"
CERT_URL = "PAYPAL-CERT-URL"
AUTH_ALGO_HEADER = "PAYPAL-AUTH-ALGO"
MAX_CERT_BYTES = 64 * 1024
# The certificate cache's label in the web's Redis metrics (`apps.core.redis_guard`).
REDIS_COMPONENT = "paypal_certs"

CertFetcher = Callable[[str], bytes]

_EVENTS: dict[str, PaymentStatus] = {
    "CHECKOUT.ORDER.APPROVED": PaymentStatus.APPROVED,
    "CHECKOUT.ORDER.COMPLETED": PaymentStatus.PAID,
    "PAYMENT.CAPTURE.COMPLETED": PaymentStatus.PAID,
    "PAYMENT.CAPTURE.PENDING": PaymentStatus.PENDING,
    "PAYMENT.CAPTURE.DENIED": PaymentStatus.FAILED,
    "PAYMENT.CAPTURE.DECLINED": PaymentStatus.FAILED,
    "PAYMENT.CAPTURE.REFUNDED": PaymentStatus.REFUNDED,
    "PAYMENT.CAPTURE.REVERSED": PaymentStatus.REFUNDED,
}
_CAPTURE_STATUSES: dict[str, PaymentStatus] = {
    "COMPLETED": PaymentStatus.PAID,
    "PARTIALLY_REFUNDED": PaymentStatus.PAID,
    "REFUNDED": PaymentStatus.REFUNDED,
    "PENDING": PaymentStatus.PENDING,
    "DECLINED": PaymentStatus.FAILED,
    "FAILED": PaymentStatus.FAILED,
}
_REFUND_STATUSES: dict[str, PaymentStatus] = {
    "COMPLETED": PaymentStatus.REFUNDED,
    "PENDING": PaymentStatus.PENDING,
    "FAILED": PaymentStatus.FAILED,
    "CANCELLED": PaymentStatus.FAILED,
}
# Payout item `transaction_status` values that settle the money; any other is PENDING.
_ITEM_STATUSES: dict[str, PayoutStatus] = {
    "SUCCESS": PayoutStatus.PAID,
    "FAILED": PayoutStatus.FAILED,
    "RETURNED": PayoutStatus.FAILED,
    "REFUNDED": PayoutStatus.FAILED,
    "DENIED": PayoutStatus.FAILED,
}
# The item status a PAYMENT.PAYOUTS-ITEM.* event implies when its resource names none.
_ITEM_EVENT_STATUSES: dict[str, str] = {
    "PAYMENT.PAYOUTS-ITEM.SUCCEEDED": "SUCCESS",
    "PAYMENT.PAYOUTS-ITEM.FAILED": "FAILED",
    "PAYMENT.PAYOUTS-ITEM.RETURNED": "RETURNED",
    "PAYMENT.PAYOUTS-ITEM.REFUNDED": "REFUNDED",
    "PAYMENT.PAYOUTS-ITEM.DENIED": "DENIED",
    "PAYMENT.PAYOUTS-ITEM.BLOCKED": "BLOCKED",
    "PAYMENT.PAYOUTS-ITEM.UNCLAIMED": "UNCLAIMED",
    "PAYMENT.PAYOUTS-ITEM.HELD": "ONHOLD",
    "PAYMENT.PAYOUTS-ITEM.CANCELED": "RETURNED",  # PayPal: a canceled item's status is RETURNED
}
_BATCH_EVENTS = frozenset(
    {"PAYMENT.PAYOUTSBATCH.DENIED", "PAYMENT.PAYOUTSBATCH.PROCESSING", "PAYMENT.PAYOUTSBATCH.SUCCESS"}
)
# Every event type the adapter acts on: what the webhook must be subscribed to ("*" is all).
WEBHOOK_EVENTS = frozenset(_EVENTS) | frozenset(_ITEM_EVENT_STATUSES) | _BATCH_EVENTS
# Currencies PayPal takes in whole units only, though ISO 4217 gives HUF and TWD two decimals:
# "This currency does not support decimals. If you pass a decimal amount, an error occurs."
# (https://developer.paypal.com/docs/api/reference/currency-codes/). Payouts in them are sent
# without decimals ("1110", as PayPal's own SDKs format them), and only whole units are sent.
WHOLE_UNIT_CURRENCIES = frozenset({"HUF", "JPY", "TWD"})
# Item statuses that leave the money's whereabouts undocumented: an operator settles them.
_REVIEW_ITEM_STATUSES = frozenset({"BLOCKED", "REVERSED"})
_PAYOUT_EMAIL_SUBJECT = "You have a payout from Darkroom"
_BATCH_LINK = re.compile(r"/v1/payments/payouts/([A-Za-z0-9]+)/?$")
_DUPLICATE = re.compile(r"sender_batch_id|duplicate|already exists", re.IGNORECASE)
_validate_email = EmailValidator()


class CertificateFetchError(Exception):
    pass


class _TokenRefreshingApi(JsonApi):
    """`JsonApi` whose Bearer-authenticated calls survive one stale token: PayPal answers 401 to
    a token it expired or revoked before the `expires_in` we cached it for. Such a call gets a
    fresh token (`refresh`, given the stale one) and is sent once more with it, with the same
    body and request id. Safe: PayPal did nothing with a request it refused to authenticate.
    A second 401 is the caller's (bad credentials, no permission)."""

    def __init__(self, *, refresh: Callable[[str], str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._refresh = refresh

    def call(self, method: str, url: str, *, headers: Mapping[str, str], **kwargs: Any) -> dict[str, Any]:
        try:
            return super().call(method, url, headers=headers, **kwargs)
        except ProviderError as exc:
            authorization = headers.get("Authorization", "")
            if exc.http_status != 401 or not authorization.startswith("Bearer "):
                raise
            token = self._refresh(authorization.removeprefix("Bearer "))
            return super().call(method, url, headers={**headers, "Authorization": f"Bearer {token}"}, **kwargs)


class TransportCertFetcher:
    """Fetch a certificate with GET over an `HttpTransport` (default: urllib, no redirects)."""

    def __init__(self, transport: HttpTransport | None = None, *, timeout: float = 10.0) -> None:
        self.transport = transport or UrllibTransport(max_response_bytes=MAX_CERT_BYTES)
        self.timeout = timeout

    def __call__(self, url: str) -> bytes:
        try:
            response = self.transport.send(HttpRequest("GET", url), timeout=self.timeout)
        except TransportError as exc:
            raise CertificateFetchError(str(exc)) from exc
        if response.status != 200:
            raise CertificateFetchError(f"GET {url} answered {response.status}")
        return response.body


def signed_message(*, transmission_id: str, transmission_time: str, webhook_id: str, body: bytes) -> bytes:
    """What PayPal signs: `id|time|webhook_id|crc32(body)` (crc32 as an unsigned decimal)."""
    return f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body)}".encode()


def _load_certificate(data: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        return x509.load_der_x509_certificate(data)


def _money(amount: object) -> tuple[int | None, str | None]:
    """A PayPal Money object {"currency_code", "value"} -> (minor units, currency)."""
    money = as_dict(amount)
    currency = as_str(money.get("currency_code"))
    if currency is None or money.get("value") is None:
        return None, currency
    try:
        return major_to_minor(money.get("value"), currency), currency
    except ValueError as exc:
        raise WebhookPayloadError(f"PayPal amount {money!r}: {exc}") from exc


def _error_issues(body: bytes) -> list[str]:
    """The `details[].issue` codes of a PayPal error answer (e.g. INSTRUMENT_DECLINED), else []."""
    try:
        error = json.loads(body or b"{}")
    except ValueError:
        return []
    details = as_dict(error).get("details")
    if not isinstance(details, list):
        return []
    return [issue for issue in (as_str(as_dict(detail).get("issue")) for detail in details) if issue]


def _captures(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The captures of an order's purchase units (an order answer or a CHECKOUT.ORDER.* resource);
    members that are not lists count as none."""
    units = order.get("purchase_units")
    captures: list[dict[str, Any]] = []
    for unit in units if isinstance(units, list) else []:
        found = as_dict(as_dict(unit).get("payments")).get("captures")
        captures += [as_dict(capture) for capture in (found if isinstance(found, list) else [])]
    return captures


def _first_unit(order: Mapping[str, Any]) -> dict[str, Any]:
    units = order.get("purchase_units")
    return as_dict(units[0]) if isinstance(units, list) and units else {}


def _error_object(body: bytes) -> dict[str, Any]:
    try:
        return as_dict(json.loads(body or b"{}"))
    except ValueError:
        return {}


def _error_details(error: Mapping[str, Any]) -> list[dict[str, Any]]:
    details = error.get("details")
    return [as_dict(detail) for detail in (details if isinstance(details, list) else [])]


def _batch_link(error: Mapping[str, Any]) -> str | None:
    """The payout batch id an error answer links to, else None. PayPal's answer to a reused
    sender_batch_id links the original batch in `details[].link` (seen as a list of links; an
    object is accepted too) or, in older answers, in the top-level `links`."""
    candidates: list[object] = []
    for detail in _error_details(error):
        for key in ("link", "links"):
            found = detail.get(key)
            candidates.extend(found if isinstance(found, list) else [found])
    top = error.get("links")
    candidates.extend(top if isinstance(top, list) else [])
    for link in candidates:
        href = as_str(as_dict(link).get("href"))
        match = _BATCH_LINK.search(urlsplit(href).path) if href else None
        if match:
            return match.group(1)
    return None


def _says_duplicate(error: Mapping[str, Any]) -> bool:
    """True if the error answer says the batch already exists ("Batch with given sender_batch_id
    already exists", "Duplicate batch request", DUPLICATE_REQUEST_ID...)."""
    texts = [error.get("name"), error.get("message")]
    for detail in _error_details(error):
        texts += [detail.get("issue"), detail.get("description")]
    return any(isinstance(text, str) and _DUPLICATE.search(text) for text in texts)


def _sender_batch_id(batch: Mapping[str, Any]) -> str | None:
    header = as_dict(batch.get("batch_header"))
    return as_str(as_dict(header.get("sender_batch_header")).get("sender_batch_id"))


def _payout_value(amount_minor: int, code: str) -> str:
    """A payout amount as the Payouts API's `amount.value`: major units, without decimals in a
    whole-unit currency. Raises ValueError (nothing is sent) for a fraction of a unit in one:
    PayPal would refuse it."""
    value = minor_to_major(amount_minor, code)
    if code not in WHOLE_UNIT_CURRENCIES:
        return value
    whole, _, fraction = value.partition(".")
    if fraction.strip("0"):
        raise ValueError(f"PayPal pays {code} in whole units only, not {value} {code}")
    return whole


def _payment_value(amount_minor: int, code: str, *, what: str) -> str:
    """An order's or refund's `amount.value`, as `_payout_value` writes it (no decimals in a
    whole-unit currency). A fraction of a unit in one is a non-retryable ProviderError before
    anything is sent: PayPal would refuse it on every attempt."""
    try:
        return _payout_value(check_amount(amount_minor), code)
    except ValueError as exc:
        raise ProviderError(f"paypal: {what}: {exc}", provider="paypal", retryable=False) from exc


def _payout_item(batch: Mapping[str, Any], *, payout_id: str) -> dict[str, Any]:
    """This payout's item in a batch answer (its sender_item_id is the payout id; a batch we
    sent has that one item), else {}."""
    found = batch.get("items")
    items = [as_dict(item) for item in (found if isinstance(found, list) else [])]
    for item in items:
        if as_dict(item.get("payout_item")).get("sender_item_id") == payout_id:
            return item
    return items[0] if len(items) == 1 else {}


def _payout_status(batch: Mapping[str, Any], *, payout_id: str) -> PayoutStatus:
    item_status = as_str(_payout_item(batch, payout_id=payout_id).get("transaction_status"))
    if item_status is not None:
        return _ITEM_STATUSES.get(item_status.upper(), PayoutStatus.PENDING)
    # No item to go by: a batch SUCCESS says nothing about where the item's money is.
    batch_status = str(as_dict(batch.get("batch_header")).get("batch_status")).upper()
    return PayoutStatus.FAILED if batch_status == "DENIED" else PayoutStatus.PENDING


def _link(links: object, *rels: str) -> str | None:
    for rel in rels:
        for link in links if isinstance(links, list) else []:
            if as_dict(link).get("rel") == rel:
                return as_str(as_dict(link).get("href"))
    return None


def _payout_money(money: object) -> tuple[int, str] | None:
    """A Payouts Money object {"currency", "value"} -> (minor units, currency), None if absent.
    Raises WebhookPayloadError for a value the currency cannot hold exactly."""
    found = as_dict(money)
    currency = as_str(found.get("currency"))
    if currency is None or found.get("value") is None:
        return None
    try:
        return major_to_minor(found.get("value"), currency), currency.upper()
    except ValueError as exc:
        raise WebhookPayloadError(f"PayPal payout amount {found!r}: {exc}") from exc


def _item_event(event_type: str, item: Mapping[str, Any]) -> PayoutEvent | None:
    """A PAYMENT.PAYOUTS-ITEM.* resource as a payout event; None without the batch id or amount."""
    batch_id = as_str(item.get("payout_batch_id"))
    sent = as_dict(item.get("payout_item"))
    money = _payout_money(sent.get("amount"))
    if batch_id is None or money is None:
        return None
    item_status = (as_str(item.get("transaction_status")) or _ITEM_EVENT_STATUSES[event_type]).upper()
    review = ""
    if item_status in _REVIEW_ITEM_STATUSES:
        review = (
            f"paypal: payout item {as_str(item.get('payout_item_id'))} of batch {batch_id} is {item_status}; "
            "PayPal does not say where its money is: check the item in PayPal, then mark the payout paid or not paid"
        )
    return PayoutEvent(
        result=PayoutResult(
            provider_payout_id=batch_id,
            status=_ITEM_STATUSES.get(item_status, PayoutStatus.PENDING),
            amount_minor=money[0],
            currency=money[1],
        ),
        payout_id=as_str(sent.get("sender_item_id")) or as_str(item.get("sender_batch_id")),
        review=review,
    )


def _batch_event(batch: Mapping[str, Any]) -> PayoutEvent | None:
    """A PAYMENT.PAYOUTSBATCH.* resource (the batch header, no items) as a payout event; None
    without the batch id or amount."""
    header = as_dict(batch.get("batch_header"))
    batch_id = as_str(header.get("payout_batch_id"))
    money = _payout_money(header.get("amount"))
    if batch_id is None or money is None:
        return None
    payout_id = _sender_batch_id(batch)
    return PayoutEvent(
        result=PayoutResult(
            provider_payout_id=batch_id,
            status=_payout_status({"batch_header": header}, payout_id=payout_id or ""),
            amount_minor=money[0],
            currency=money[1],
        ),
        payout_id=payout_id,
    )


# PayPal's tokens live about 9 hours (`expires_in` 32400); a longer one is not taken at its word.
TOKEN_MAX_SECONDS = 32_400
_TOKEN_DEFAULT_SECONDS = 300  # an answer without a readable expires_in
_TOKEN_MARGIN_SECONDS = 60


def token_cache_seconds(expires_in: object) -> int:
    """How long to reuse a token PayPal says expires in `expires_in` seconds: until a minute
    before, at most TOKEN_MAX_SECONDS; 0 (use it for the call at hand only) for one expiring at
    once or before; _TOKEN_DEFAULT_SECONDS without an integer (missing, a boolean, a string).
    Bounded before any float arithmetic: an integer beyond what a float holds is just long."""
    if isinstance(expires_in, bool) or not isinstance(expires_in, int):
        expires_in = _TOKEN_DEFAULT_SECONDS
    return max(min(expires_in, TOKEN_MAX_SECONDS) - _TOKEN_MARGIN_SECONDS, 0)


class PayPalProvider(PaymentProvider):
    name = "paypal"

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        webhook_id: str,
        api_base: str = DEFAULT_API_BASE,
        cert_hosts: Iterable[str] = DEFAULT_CERT_HOSTS,
        cert_cache_seconds: int = 3600,
        cert_fetcher: CertFetcher | None = None,
        cache: BaseCache | None = None,
        transport: HttpTransport | None = None,
        timeout: float = 10.0,
        tolerance_seconds: int = 300,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.webhook_id = webhook_id
        self.tolerance_seconds = tolerance_seconds
        self.api_base = api_base.rstrip("/")
        self.cert_hosts = frozenset(host.lower() for host in cert_hosts)
        self.cert_cache_seconds = cert_cache_seconds
        # url -> (time.monotonic() it expires, bytes): certificates fetched while the cache was
        # unreachable (`_cache_cert`); a handful of PayPal URLs at most.
        self._local_certs: dict[str, tuple[float, bytes]] = {}
        self._client_id = client_id
        self._client_secret = client_secret
        self._fetch_cert = cert_fetcher or TransportCertFetcher(timeout=timeout)
        self._cache = cache if cache is not None else default_cache
        self._api = _TokenRefreshingApi(
            refresh=self._fresh_token, provider=self.name, transport=transport or UrllibTransport(), timeout=timeout
        )
        self._now = now
        self._token_lock = threading.Lock()
        self._token: tuple[str, float] | None = None

    # --- API calls ---------------------------------------------------------------------------

    def _access_token(self) -> str:
        """OAuth2 client-credentials token, reused for `token_cache_seconds` of its `expires_in`."""
        with self._token_lock:
            if self._token is not None and time.monotonic() < self._token[1]:
                return self._token[0]
            basic = base64.b64encode(f"{self._client_id}:{self._client_secret}".encode()).decode()
            response = self._api.call(
                "POST",
                f"{self.api_base}/v1/oauth2/token",
                headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
                form_body=b"grant_type=client_credentials",
                replay_safe=True,  # asking for a token again only gets another token
            )
            token = as_str(response.get("access_token"))
            if token is None:
                raise ProviderError("paypal: token response without access_token", provider=self.name, retryable=False)
            self._token = (token, time.monotonic() + token_cache_seconds(response.get("expires_in")))
            return token

    def _fresh_token(self, stale: str) -> str:
        """A token other than `stale`, which PayPal refused (401): the cached one is dropped if it
        is still `stale` (another thread may have replaced it already) and a new one fetched."""
        with self._token_lock:
            if self._token is not None and self._token[0] == stale:
                self._token = None
        return self._access_token()

    def _headers(self, request_id: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._access_token()}", "Prefer": "return=representation"}
        if request_id:
            headers["PayPal-Request-Id"] = request_id
        return headers

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
        """Create the order (PayPal orders take no expiry: `expires_at` is not sent; see the
        module docstring for why an expired checkout's order is never charged)."""
        code = normalize_currency(currency)
        value = _payment_value(amount_minor, code, what=f"order for checkout {checkout_id}")
        order = self._api.call(
            "POST",
            f"{self.api_base}/v2/checkout/orders",
            headers=self._headers(request_id=checkout_id),
            json_body={
                "intent": "CAPTURE",
                "purchase_units": [
                    {
                        "reference_id": checkout_id,
                        "custom_id": checkout_id,
                        "description": description[:127],
                        "amount": {"currency_code": code, "value": value},
                    }
                ],
                "payment_source": {
                    "paypal": {
                        "email_address": email,
                        "experience_context": {
                            "return_url": success_url,
                            "cancel_url": cancel_url,
                            "user_action": "PAY_NOW",
                            "shipping_preference": "NO_SHIPPING",
                        },
                    }
                },
            },
        )
        order_id, url = as_str(order.get("id")), _link(order.get("links"), "payer-action", "approve")
        if order_id is None or url is None:
            raise ProviderError("paypal: order without id or approval link", provider=self.name, retryable=False)
        return ProviderSession(reference=order_id, payment_url=url)

    def close_payment_session(self, *, reference: str) -> SessionCloseOutcome:
        """Nothing to call: Orders v2 cannot cancel a CAPTURE-intent order, and an approved order
        costs the buyer nothing until Darkroom captures it, which it never does for an expired
        checkout (see the module docstring). Sends nothing."""
        return SessionCloseOutcome.NOT_SUPPORTED

    def _order_url(self, reference: str) -> str:
        return f"{self.api_base}/v2/checkout/orders/{quote(reference, safe='')}"

    def _state(self, order: Mapping[str, Any]) -> PaymentState:
        captures = _captures(order)
        capture = captures[-1] if captures else {}
        order_status = str(order.get("status"))
        if order_status == "COMPLETED" and capture:
            status = _CAPTURE_STATUSES.get(str(capture.get("status")), PaymentStatus.PENDING)
        elif order_status == "APPROVED":
            status = PaymentStatus.APPROVED
        elif order_status == "VOIDED":
            status = PaymentStatus.EXPIRED
        else:
            status = PaymentStatus.PENDING
        try:
            amount, currency = _money(_first_unit(order).get("amount"))
            currency = normalize_currency(currency) if currency is not None else None
        except WebhookPayloadError as exc:
            raise ProviderError(f"paypal: {exc.detail}", provider=self.name, retryable=False) from exc
        except ValueError as exc:
            raise ProviderError(f"paypal: {exc}", provider=self.name, retryable=False) from exc
        capture_id = answer_id(as_str(capture.get("id")), provider=self.name, what="capture")
        return PaymentState(status=status, amount_minor=amount, currency=currency, payment_id=capture_id)

    def fetch_status(self, *, reference: str) -> PaymentState:
        return self._state(self._api.call("GET", self._order_url(reference), headers=self._headers()))

    def capture(self, *, reference: str, idempotency_key: str) -> PaymentState:
        """Capture an APPROVED order. `idempotency_key` goes out as `PayPal-Request-Id`, so a
        retried capture returns the first one's result. Call outside any transaction.
        Raises ProviderError; a 422 refusal says PayPal's issue codes in its detail, e.g. "PayPal
        refused the capture: INSTRUMENT_DECLINED" (the buyer must pay another way).
        """
        try:
            order = self._api.call(
                "POST",
                f"{self._order_url(reference)}/capture",
                headers=self._headers(request_id=idempotency_key),
                json_body={},
            )
        except ProviderError as exc:
            issues = _error_issues(exc.response_body) if exc.http_status == 422 else []
            if not issues:
                raise
            raise ProviderError(
                f"PayPal refused the capture: {', '.join(issues)}",
                provider=self.name,
                retryable=False,
                http_status=exc.http_status,
                response_body=exc.response_body,
            ) from exc
        return self._state(order)

    def refund(
        self, *, reference: str, amount_minor: int, idempotency_key: str, payment_id: str | None = None
    ) -> RefundResult:
        """Refund the order's capture. The refund carries the order's `custom_id` (the checkout
        id), which PayPal echoes in the refund's webhook; a refund made elsewhere (the PayPal
        dashboard) is found by its capture id instead (`_resolve_checkout`). A CAPTURE-intent
        order is captured once (another capture is refused ORDER_ALREADY_CAPTURED), so a
        `payment_id` that is not a capture of the order is refused (not retryable) before
        anything is refunded."""
        order = self._api.call("GET", self._order_url(reference), headers=self._headers())
        state = self._state(order)
        if state.payment_id is None or state.currency is None:
            raise ProviderError(
                f"paypal: order {reference} has no capture to refund", provider=self.name, retryable=False
            )
        if payment_id is not None and payment_id not in {as_str(capture.get("id")) for capture in _captures(order)}:
            raise ProviderError(
                f"paypal: {payment_id[:80]!r} is not a capture of order {reference}",
                provider=self.name,
                retryable=False,
            )
        capture_id = payment_id or state.payment_id
        value = _payment_value(amount_minor, normalize_currency(state.currency), what=f"refund of order {reference}")
        body: dict[str, Any] = {"amount": {"currency_code": state.currency, "value": value}}
        custom_id = as_str(_first_unit(order).get("custom_id"))
        if custom_id:
            body["custom_id"] = custom_id
        refund = self._api.call(
            "POST",
            f"{self.api_base}/v2/payments/captures/{quote(capture_id, safe='')}/refund",
            headers=self._headers(request_id=idempotency_key),
            json_body=body,
        )
        refund_id = as_str(refund.get("id"))
        if refund_id is None:
            raise ProviderError("paypal: refund without id", provider=self.name, retryable=False)
        return RefundResult(
            refund_id=refund_id,
            status=_REFUND_STATUSES.get(str(refund.get("status")), PaymentStatus.PENDING),
            amount_minor=amount_minor,
            currency=state.currency,
        )

    # --- payouts -----------------------------------------------------------------------------

    def normalize_payout_destination(self, destination: str) -> str:
        """The receiver's PayPal e-mail address, its domain lower-cased (the local part is kept:
        it may be case-sensitive)."""
        email = destination_text(destination)
        try:
            _validate_email(email)
        except ValidationError as exc:
            raise PayoutDestinationError(
                f"a PayPal payout goes to the receiver's e-mail address, not {email!r}"
            ) from exc
        local, _, domain = email.rpartition("@")
        return f"{local}@{domain.lower()}"

    def payout(
        self,
        *,
        payout_id: str,
        amount_minor: int,
        currency: str,
        destination: str,
        description: str,
    ) -> PayoutResult:
        """Create a one-item payout batch. Idempotent by `payout_id` (request id and
        sender_batch_id). Call outside any transaction. Raises ProviderError,
        PayoutDestinationError, ValueError (see `PaymentProvider.payout`).
        """
        code = normalize_currency(currency)
        value = _payout_value(check_amount(amount_minor), code)
        receiver = self.normalize_payout_destination(destination)
        item: dict[str, Any] = {
            "recipient_type": "EMAIL",
            "amount": {"value": value, "currency": code},
            "receiver": receiver,
            "sender_item_id": check_payout_id(payout_id),
        }
        header: dict[str, Any] = {"sender_batch_id": payout_id, "email_subject": _PAYOUT_EMAIL_SUBJECT}
        if description:
            # PayPal allows 1000 characters of notes in all (batch and item notes together).
            item["note"] = description[:1000]
            header["email_message"] = description[:1000]
        try:
            batch = self._api.call(
                "POST",
                f"{self.api_base}/v1/payments/payouts",
                headers=self._headers(request_id=payout_id),
                json_body={"sender_batch_header": header, "items": [item]},
            )
        except ProviderError as exc:
            if exc.retryable:
                raise
            batch = self._batch_behind_refusal(exc, payout_id=payout_id)
        return self._payout_result(batch, payout_id=payout_id, amount_minor=amount_minor, currency=code)

    def payout_sendable_minor(self, *, amount_minor: int, currency: str) -> int:
        """The most of `amount_minor` a payout can send in `currency`: all of it, except in a
        currency PayPal takes in whole units only (`WHOLE_UNIT_CURRENCIES`), where the fraction of
        a unit is left out. Raises ValueError for a currency outside Darkroom's table."""
        code = normalize_currency(currency)
        if code not in WHOLE_UNIT_CURRENCIES:
            return amount_minor
        unit = 10 ** currency_exponent(code)
        return amount_minor - amount_minor % unit

    def _batch_behind_refusal(self, refusal: ProviderError, *, payout_id: str) -> dict[str, Any]:
        """This payout's batch, if the non-retryable `refusal` says it exists already.

        Raises the refusal again if it is a real refusal (it neither says "duplicate" nor links
        our batch), and a retryable ProviderError if it says "duplicate" but our batch cannot be
        read back: the batch exists and may have paid, so the caller must not see a refusal.
        """
        error = _error_object(refusal.response_body)
        batch_id = _batch_link(error)
        batch = self._linked_batch(batch_id, payout_id=payout_id, refusal=refusal) if batch_id else None
        if batch is not None:
            return batch
        if not _says_duplicate(error):
            raise refusal
        why = f"links batch {batch_id} of another sender_batch_id" if batch_id else "links no batch"
        raise ProviderError(
            f"paypal: payout {payout_id} was refused as a duplicate, but the answer {why}: "
            "the original batch cannot be read, so its outcome is unknown",
            provider=self.name,
            retryable=True,
            http_status=refusal.http_status,
            response_body=refusal.response_body,
        ) from refusal

    def _linked_batch(self, batch_id: str, *, payout_id: str, refusal: ProviderError) -> dict[str, Any] | None:
        """The batch a refusal links to, read from our own API base (only the id is taken from
        the link), if its sender_batch_id is this payout's; None if it is another one's.

        Raises a retryable ProviderError if the batch cannot be read or names no sender_batch_id:
        PayPal says it exists, so money may have moved.
        """
        try:
            batch = self._read_batch(batch_id)
        except ProviderError as exc:
            raise ProviderError(
                f"paypal: payout {payout_id} was refused with a link to batch {batch_id}, "
                f"which could not be read: {exc.detail}",
                provider=self.name,
                retryable=True,
                http_status=exc.http_status,
            ) from exc
        sent_as = _sender_batch_id(batch)
        if sent_as is None:
            raise ProviderError(
                f"paypal: batch {batch_id} linked to payout {payout_id} names no sender_batch_id",
                provider=self.name,
                retryable=True,
            ) from refusal
        return batch if sent_as == payout_id else None

    def _read_batch(self, batch_id: str) -> dict[str, Any]:
        """`GET /v1/payments/payouts/<batch id>` on our API base. Raises ProviderError."""
        return self._api.call(
            "GET", f"{self.api_base}/v1/payments/payouts/{quote(batch_id, safe='')}", headers=self._headers()
        )

    def payout_status(self, *, payout_id: str, provider_payout_id: str) -> PayoutResult:
        """Read the batch back; our item decides (see the module docstring). Raises ProviderError
        (404 from PayPal for an unknown batch; non-retryable for a batch or item that is not this
        payout's, or without an amount), ValueError (see `PaymentProvider.payout_status`)."""
        check_payout_id(payout_id)
        batch = self._read_batch(check_provider_payout_id(provider_payout_id))
        header = as_dict(batch.get("batch_header"))
        sent_as, batch_id = _sender_batch_id(batch), as_str(header.get("payout_batch_id"))
        found = batch.get("items")
        items = [as_dict(item) for item in (found if isinstance(found, list) else [])]
        ours = [item for item in items if as_dict(item.get("payout_item")).get("sender_item_id") == payout_id]
        if sent_as != payout_id or batch_id != provider_payout_id or (items and not ours):
            raise ProviderError(
                f"paypal: batch {provider_payout_id} (sender_batch_id {sent_as!r}) is not payout {payout_id}'s",
                provider=self.name,
                retryable=False,
            )
        # Our item's amount; a batch read back without items reports the batch total (one item).
        money = as_dict(as_dict(ours[0].get("payout_item")).get("amount")) if ours else as_dict(header.get("amount"))
        currency = as_str(money.get("currency"))
        try:
            amount = major_to_minor(money.get("value"), currency) if currency else None
        except ValueError:
            amount = None
        if amount is None or currency is None:
            raise ProviderError(
                f"paypal: batch {provider_payout_id} read back without the payout's amount",
                provider=self.name,
                retryable=False,
            )
        return PayoutResult(
            provider_payout_id=provider_payout_id,
            status=_payout_status(batch, payout_id=payout_id),
            amount_minor=amount,
            currency=currency.upper(),
        )

    def _payout_result(
        self, batch: Mapping[str, Any], *, payout_id: str, amount_minor: int, currency: str
    ) -> PayoutResult:
        """The payout's outcome from a batch answer (the create answer or a batch read back).

        PAID only on the item's SUCCESS; see the module docstring for the whole mapping.
        """
        header = as_dict(batch.get("batch_header"))
        batch_id = as_str(header.get("payout_batch_id"))
        if batch_id is None:
            # PayPal accepted the request, so the batch may exist: never report a refusal.
            raise ProviderError(
                f"paypal: payout {payout_id} answered without payout_batch_id", provider=self.name, retryable=True
            )
        # The create answer may omit the batch amount; a batch read back reports it.
        amount = as_dict(header.get("amount"))
        reported_currency = as_str(amount.get("currency"))
        try:
            reported = major_to_minor(amount.get("value"), reported_currency) if reported_currency else None
        except ValueError:
            reported = None
        return PayoutResult(
            provider_payout_id=batch_id,
            status=_payout_status(batch, payout_id=payout_id),
            amount_minor=amount_minor if reported is None else reported,
            currency=currency if reported is None or reported_currency is None else reported_currency.upper(),
        )

    # --- webhooks ----------------------------------------------------------------------------

    def webhook_setup(self, *, url: str) -> WebhookSetup:
        """Read the webhook `webhook_id` names and check it delivers to `url` every event in
        WEBHOOK_EVENTS. A webhook PayPal does not know (404) is a problem, as is an empty
        `webhook_id` (nothing is sent then: no delivery could be verified). Read-only.
        Raises ProviderError (unreachable, credentials refused)."""
        if not self.webhook_id:
            return WebhookSetup(
                checked=True, problems=("PAYPAL_WEBHOOK_ID is empty: no PayPal delivery can be verified",)
            )
        try:
            webhook = self._api.call(
                "GET",
                f"{self.api_base}/v1/notifications/webhooks/{quote(self.webhook_id, safe='')}",
                headers=self._headers(),
            )
        except ProviderError as exc:
            if exc.http_status != 404:
                raise
            return WebhookSetup(
                checked=True,
                problems=(
                    f"PayPal knows no webhook {self.webhook_id} for this app at {self.api_base}: PAYPAL_WEBHOOK_ID "
                    "must be the id of the app's webhook (PayPal developer dashboard, the app's Webhooks)",
                ),
            )
        problems: list[str] = []
        found_url = as_str(webhook.get("url"))
        if found_url != url:
            problems.append(f"webhook {self.webhook_id} points at {found_url}, not {url}")
        found = webhook.get("event_types")
        names = [as_dict(item).get("name") for item in (found if isinstance(found, list) else [])]
        missing = events_not_subscribed(WEBHOOK_EVENTS, names)
        if missing:
            problems.append(f"webhook {self.webhook_id} is not subscribed to {', '.join(missing)}")
        return WebhookSetup(checked=True, problems=tuple(problems))

    def check_cert_url(self, url: str) -> None:
        """Refuse any certificate URL that is not https on an allow-listed PayPal host."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise WebhookSignatureError(f"certificate URL {url!r} is malformed") from exc
        if parts.scheme != "https":
            raise WebhookSignatureError(f"certificate URL must use https, not {parts.scheme or 'nothing'!r}")
        if parts.username is not None or parts.password is not None or port not in (None, 443):
            raise WebhookSignatureError("certificate URL must not carry credentials or a port")
        host = (parts.hostname or "").lower()
        if host not in self.cert_hosts:
            raise WebhookSignatureError(f"certificate host {host!r} is not an allow-listed PayPal host")

    @staticmethod
    def _cert_cache_key(url: str) -> str:
        return f"payments:paypal-cert:{hashlib.sha256(url.encode()).hexdigest()}"

    def verification_fetches(self, *, headers: Mapping[str, str]) -> bool:
        """True if verifying a delivery with these headers would fetch a certificate: its
        PAYPAL-CERT-URL is allow-listed and not cached. The webhook endpoint checks the address's
        refusal budget first then, so forged deliveries cannot make us fetch without bound; an
        untrusted URL is refused without a fetch, and a cached certificate costs one RSA check."""
        url = (header_value(headers, CERT_URL) or "").strip()
        try:
            self.check_cert_url(url)
        except WebhookSignatureError:
            return False
        return self._cached_cert(url) is None

    def certificate(self, url: str) -> x509.Certificate:
        """The certificate at an allow-listed URL, from the cache or fetched once and cached.

        Raises WebhookSignatureError if the URL is not trusted, the fetch fails or the bytes are
        not a certificate (nothing is cached then).
        """
        self.check_cert_url(url)
        cached = self._cached_cert(url)
        if cached is not None:
            return _load_certificate(cached)
        try:
            data = self._fetch_cert(url)
        except CertificateFetchError as exc:
            raise WebhookSignatureError(f"could not fetch the PayPal certificate: {exc}") from exc
        if len(data) > MAX_CERT_BYTES:
            raise WebhookSignatureError("PayPal certificate is implausibly large")
        try:
            cert = _load_certificate(data)
        except ValueError as exc:
            raise WebhookSignatureError("PayPal certificate URL did not return a certificate") from exc
        self._cache_cert(url, data)
        return cert

    def _cached_cert(self, url: str) -> bytes | None:
        """The certificate bytes cached for `url`, or None. While the cache (Redis) cannot be
        reached (`apps.core.redis_guard`), this process's own copy, so an outage costs one fetch
        per URL and process rather than one per delivery, and never a 500."""
        if not redis_skipped(REDIS_COMPONENT):
            try:
                cached = self._cache.get(self._cert_cache_key(url))
            except REDIS_ERRORS as error:
                redis_failed(REDIS_COMPONENT, error)
            else:
                return cached if isinstance(cached, bytes) else None
        held = self._local_certs.get(url)
        return held[1] if held is not None and held[0] > time.monotonic() else None

    def _cache_cert(self, url: str, data: bytes) -> None:
        """Cache a fetched certificate for `cert_cache_seconds`: in the shared cache, or in this
        process while the cache cannot be reached."""
        if not redis_skipped(REDIS_COMPONENT):
            try:
                self._cache.set(self._cert_cache_key(url), data, timeout=self.cert_cache_seconds)
                return
            except REDIS_ERRORS as error:
                redis_failed(REDIS_COMPONENT, error)
        self._local_certs[url] = (time.monotonic() + self.cert_cache_seconds, data)  # one store: atomic

    def verify_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> None:
        raw = require_bytes(body)
        if not self.webhook_id:
            raise WebhookSignatureError("no PayPal webhook id is configured")
        names = (TRANSMISSION_ID, TRANSMISSION_TIME, TRANSMISSION_SIG, CERT_URL, AUTH_ALGO_HEADER)
        values = {name: (header_value(headers, name) or "").strip() for name in names}
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise WebhookSignatureError(f"missing {', '.join(missing)} header(s)")
        if values[AUTH_ALGO_HEADER] != AUTH_ALGO:
            raise WebhookSignatureError(f"unsupported {AUTH_ALGO_HEADER} {values[AUTH_ALGO_HEADER]!r}")
        self._check_transmission_time(values[TRANSMISSION_TIME])
        try:
            signature = base64.b64decode(values[TRANSMISSION_SIG], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise WebhookSignatureError(f"{TRANSMISSION_SIG} is not base64") from exc
        cert = self.certificate(values[CERT_URL])
        now = self._now()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise WebhookSignatureError(
                f"PayPal certificate is not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} "
                f"to {cert.not_valid_after_utc:%Y-%m-%d})"
            )
        public_key = cert.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise WebhookSignatureError("PayPal certificate does not hold an RSA key")
        message = signed_message(
            transmission_id=values[TRANSMISSION_ID],
            transmission_time=values[TRANSMISSION_TIME],
            webhook_id=self.webhook_id,
            body=raw,
        )
        try:
            public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as exc:
            raise WebhookSignatureError(
                "PAYPAL-TRANSMISSION-SIG does not verify for this body, transmission and webhook id"
            ) from exc

    def _check_transmission_time(self, value: str) -> None:
        """Refuse a delivery sent more than `tolerance_seconds` from now, either way (a replay
        window like Stripe's: the time is signed, so a recorded delivery cannot be re-dated).
        Checked before any certificate is fetched. Raises WebhookSignatureError."""
        sent = iso_to_datetime(value)
        if sent is None:
            raise WebhookSignatureError(f"{TRANSMISSION_TIME} {value[:64]!r} is not an ISO 8601 time")
        skew = (self._now() - sent).total_seconds()
        if abs(skew) > self.tolerance_seconds:
            direction = "old" if skew > 0 else "in the future"
            raise WebhookSignatureError(
                f"{TRANSMISSION_TIME} is {int(abs(skew))} s {direction} (tolerance {self.tolerance_seconds} s)"
            )

    def parse_webhook(self, *, body: bytes, headers: Mapping[str, str]) -> WebhookEnvelope:
        event, raw = parse_json_object(require_bytes(body))
        event_id, event_type = as_str(event.get("id")), as_str(event.get("event_type"))
        if event_id is None or event_type is None:
            raise WebhookPayloadError("PayPal event without id or event_type")
        resource = as_dict(event.get("resource"))
        common: dict[str, Any] = {
            "provider": self.name,
            "event_id": event_id,
            "event_type": event_type,
            "occurred_at": iso_to_datetime(event.get("create_time")),
            "raw": raw,
        }
        if event_type in _ITEM_EVENT_STATUSES or event_type in _BATCH_EVENTS:
            payout = _item_event(event_type, resource) if event_type in _ITEM_EVENT_STATUSES else _batch_event(resource)
            reference = payout.result.provider_payout_id if payout else None
            return WebhookEnvelope(**common, status=PaymentStatus.UNKNOWN, reference=reference, payout=payout)
        status = _EVENTS.get(event_type)
        if status is None:
            return WebhookEnvelope(**common, status=PaymentStatus.UNKNOWN)
        if event_type.startswith("CHECKOUT.ORDER."):
            unit = _first_unit(resource)
            captures = _captures(resource)
            capture = captures[-1] if captures else {}
            if status is PaymentStatus.PAID:
                # A completed order is money only once its capture completed (a PENDING capture
                # may still be declined); the capture says what was charged.
                capture_status = _CAPTURE_STATUSES.get(str(capture.get("status")), PaymentStatus.PENDING)
                status = capture_status if capture_status is not PaymentStatus.REFUNDED else PaymentStatus.UNKNOWN
            amount, currency = _money(capture.get("amount") or unit.get("amount"))
            envelope = WebhookEnvelope(
                **common,
                status=status,
                reference=as_str(resource.get("id")),
                checkout_id=as_str(unit.get("custom_id")) or as_str(unit.get("reference_id")),
                payment_id=as_str(capture.get("id")),
                amount_minor=amount,
                currency=currency,
            )
        else:
            refund_id = None
            refund_amount = None
            if status is PaymentStatus.REFUNDED:
                # The resource is the refund: its id names this refund, its `up` link the capture.
                refund_id = as_str(resource.get("id"))
                breakdown = as_dict(resource.get("seller_payable_breakdown"))
                amount, currency = _money(breakdown.get("total_refunded_amount") or resource.get("amount"))
                refund_amount, refund_currency = _money(resource.get("amount"))
                if currency and refund_currency and currency.upper() != refund_currency.upper():
                    # Both are the capture's currency; the envelope carries one for both.
                    raise WebhookPayloadError(
                        f"PayPal refund {refund_id!r} of {refund_currency[:20]!r} while its capture's refunded "
                        f"total is in {currency[:20]!r}"
                    )
                up = _link(resource.get("links"), "up")
                payment_id = up.rstrip("/").rsplit("/", 1)[-1] if up and "/captures/" in up else None
            else:
                amount, currency = _money(resource.get("amount"))
                payment_id = as_str(resource.get("id"))
            related = as_dict(as_dict(resource.get("supplementary_data")).get("related_ids"))
            envelope = WebhookEnvelope(
                **common,
                status=status,
                reference=as_str(related.get("order_id")),
                checkout_id=as_str(resource.get("custom_id")),
                payment_id=payment_id,
                amount_minor=amount,
                currency=currency,
                refund_id=refund_id,
                refund_amount_minor=refund_amount,
            )
        return identified_or_unknown(envelope)


def cert_hosts_from(value: Sequence[str] | str) -> tuple[str, ...]:
    """Settings may give the allow-list as a list or a comma-separated string."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(item.strip().lower() for item in items if item.strip())
