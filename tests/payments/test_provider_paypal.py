"""PayPal adapter: RSA-SHA256 transmission signatures with an allow-listed, cached certificate,
event mapping, API request format. Keys and certificates are generated locally; the
certificate is served by an injected fetcher, so no test reaches a network.

The certificate cache is the real Django cache (Redis); each test uses its own certificate URL.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from django.core.cache import cache

from apps.payments.providers.base import PaymentStatus, ProviderError, WebhookPayloadError, WebhookSignatureError
from apps.payments.providers.http import HttpResponse
from apps.payments.providers.paypal import CertificateFetchError, PayPalProvider, TransportCertFetcher
from tests.payments.provider_transport import ScriptedTransport, form_body, json_body, json_response

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
WEBHOOK_ID = "1JE4291016473214C"
CHECKOUT_ID = "7d1c0b9a-8e7f-4a6b-9c5d-4e3f2a1b0c9d"
API_BASE = "https://api-m.sandbox.paypal.com"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed(key: rsa.RSAPrivateKey, *, not_before: datetime, not_after: datetime) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts.sandbox.paypal.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa_key()


@pytest.fixture(scope="module")
def cert_pem(key: rsa.RSAPrivateKey) -> bytes:
    return self_signed(key, not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=30))


@dataclass
class CountingFetcher:
    pem: bytes
    urls: list[str] = field(default_factory=list)

    def __call__(self, url: str) -> bytes:
        self.urls.append(url)
        return self.pem


def cert_url(host: str = "api.sandbox.paypal.com", scheme: str = "https") -> str:
    return f"{scheme}://{host}/v1/notifications/certs/CERT-{uuid.uuid4().hex}"


def provider(
    fetcher: Callable[[str], bytes] | None = None,
    *,
    transport: ScriptedTransport | None = None,
    webhook_id: str = WEBHOOK_ID,
    cert_hosts: tuple[str, ...] = ("api.paypal.com", "api.sandbox.paypal.com"),
) -> PayPalProvider:
    return PayPalProvider(
        client_id="client-local",
        client_secret="secret-local",
        webhook_id=webhook_id,
        api_base=API_BASE,
        cert_hosts=cert_hosts,
        cert_cache_seconds=600,
        cert_fetcher=fetcher or CountingFetcher(b""),
        cache=cache,
        transport=transport or ScriptedTransport(),
        now=lambda: NOW,
    )


def sign(
    body: bytes,
    key: rsa.RSAPrivateKey,
    url: str,
    *,
    webhook_id: str = WEBHOOK_ID,
    transmission_id: str | None = None,
    transmission_time: str = "2025-06-15T11:59:58Z",
) -> dict[str, str]:
    """The headers PayPal sends, computed here independently of the adapter."""
    tid = transmission_id or str(uuid.uuid4())
    ttime = transmission_time
    message = f"{tid}|{ttime}|{webhook_id}|{zlib.crc32(body)}".encode()
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return {
        "PAYPAL-TRANSMISSION-ID": tid,
        "PAYPAL-TRANSMISSION-TIME": ttime,
        "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
        "PAYPAL-CERT-URL": url,
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
    }


def paypal_event(event_type: str, resource: dict[str, Any], event_id: str = "WH-58D3-1") -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "event_version": "1.0",
            "create_time": "2025-06-15T11:59:57.000Z",
            "resource_type": "capture",
            "event_type": event_type,
            "resource": resource,
        }
    ).encode()


CAPTURE = {
    "id": "2GG279541U471931P",
    "status": "COMPLETED",
    "amount": {"currency_code": "EUR", "value": "15.00"},
    "custom_id": CHECKOUT_ID,
    "supplementary_data": {"related_ids": {"order_id": "5O190127TN364715T"}},
}
BODY = paypal_event("PAYMENT.CAPTURE.COMPLETED", CAPTURE)


# --- signature -------------------------------------------------------------------------------


def test_valid_signature_is_accepted(key, cert_pem):
    url = cert_url()
    provider(CountingFetcher(cert_pem)).verify_webhook(body=BODY, headers=sign(BODY, key, url))


def test_crc32_is_taken_as_an_unsigned_decimal(key, cert_pem):
    # given: a body whose CRC32 has the high bit set (a signed implementation would print "-...")
    body = next(b for n in range(1000) if zlib.crc32(b := paypal_event("X.Y", {"n": n})) >= 2**31)
    url = cert_url()
    provider(CountingFetcher(cert_pem)).verify_webhook(body=body, headers=sign(body, key, url))


def test_tampered_body_is_refused(key, cert_pem):
    url = cert_url()
    headers = sign(BODY, key, url)
    tampered = BODY.replace(b'"15.00"', b'"1500.00"')
    with pytest.raises(WebhookSignatureError, match="does not verify"):
        provider(CountingFetcher(cert_pem)).verify_webhook(body=tampered, headers=headers)


def test_signature_for_another_webhook_id_is_refused(key, cert_pem):
    url = cert_url()
    headers = sign(BODY, key, url, webhook_id="SOMEONE-ELSES-WEBHOOK")
    with pytest.raises(WebhookSignatureError, match="does not verify"):
        provider(CountingFetcher(cert_pem)).verify_webhook(body=BODY, headers=headers)


def test_signature_by_another_key_is_refused(cert_pem):
    url = cert_url()
    with pytest.raises(WebhookSignatureError, match="does not verify"):
        provider(CountingFetcher(cert_pem)).verify_webhook(body=BODY, headers=sign(BODY, rsa_key(), url))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://evil.example.com/cert.pem", "not an allow-listed PayPal host"),
        ("https://api.paypal.com.evil.example.com/cert.pem", "not an allow-listed PayPal host"),
        ("https://evil.example.com\\@api.paypal.com/cert.pem", "credentials or a port"),
        ("http://api.paypal.com/v1/notifications/certs/CERT-1", "must use https"),
        ("file:///etc/ssl/cert.pem", "must use https"),
        ("https://user:pw@api.paypal.com/cert.pem", "credentials or a port"),
        ("https://api.paypal.com:8443/cert.pem", "credentials or a port"),
        ("https://api.paypal.com:99999/cert.pem", "malformed"),
    ],
)
def test_untrusted_certificate_urls_are_refused_before_any_fetch(key, cert_pem, url, reason):
    # given: a correctly signed delivery pointing at a URL we must not fetch
    fetcher = CountingFetcher(cert_pem)
    # when / then
    with pytest.raises(WebhookSignatureError, match=reason):
        provider(fetcher).verify_webhook(body=BODY, headers=sign(BODY, key, url))
    assert fetcher.urls == []


def test_expired_certificate_is_refused(key):
    pem = self_signed(key, not_before=NOW - timedelta(days=400), not_after=NOW - timedelta(seconds=1))
    with pytest.raises(WebhookSignatureError, match="not valid now"):
        provider(CountingFetcher(pem)).verify_webhook(body=BODY, headers=sign(BODY, key, cert_url()))


def test_not_yet_valid_certificate_is_refused(key):
    pem = self_signed(key, not_before=NOW + timedelta(minutes=5), not_after=NOW + timedelta(days=30))
    with pytest.raises(WebhookSignatureError, match="not valid now"):
        provider(CountingFetcher(pem)).verify_webhook(body=BODY, headers=sign(BODY, key, cert_url()))


def test_certificate_is_fetched_once_and_cached_across_instances(key, cert_pem):
    # given: one certificate URL and two deliveries
    url = cert_url()
    fetcher = CountingFetcher(cert_pem)
    # when: verified twice by one adapter, then by a second adapter sharing the cache
    provider(fetcher).verify_webhook(body=BODY, headers=sign(BODY, key, url))
    provider(fetcher).verify_webhook(body=BODY, headers=sign(BODY, key, url))
    other = paypal_event("PAYMENT.CAPTURE.DENIED", CAPTURE, event_id="WH-2")
    provider(CountingFetcher(b"must not be fetched")).verify_webhook(body=other, headers=sign(other, key, url))
    # then
    assert fetcher.urls == [url]


def test_a_failed_fetch_is_refused_and_not_cached(key, cert_pem):
    url = cert_url()

    def failing(_: str) -> bytes:
        raise CertificateFetchError("connection reset")

    with pytest.raises(WebhookSignatureError, match="could not fetch"):
        provider(failing).verify_webhook(body=BODY, headers=sign(BODY, key, url))
    fetcher = CountingFetcher(cert_pem)
    provider(fetcher).verify_webhook(body=BODY, headers=sign(BODY, key, url))
    assert fetcher.urls == [url]


def test_bytes_that_are_no_certificate_are_refused_and_not_cached(key):
    url = cert_url()
    with pytest.raises(WebhookSignatureError, match="did not return a certificate"):
        provider(CountingFetcher(b"<html>hi</html>")).verify_webhook(body=BODY, headers=sign(BODY, key, url))
    assert cache.get(f"payments:paypal-cert:{hashlib.sha256(url.encode()).hexdigest()}") is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"PAYPAL-TRANSMISSION-SIG": None}, "missing PAYPAL-TRANSMISSION-SIG"),
        ({"PAYPAL-CERT-URL": None, "PAYPAL-TRANSMISSION-ID": None}, "PAYPAL-TRANSMISSION-ID, PAYPAL-CERT-URL"),
        ({"PAYPAL-AUTH-ALGO": "SHA1withRSA"}, "unsupported PAYPAL-AUTH-ALGO"),
        ({"PAYPAL-TRANSMISSION-SIG": "%%% not base64 %%%"}, "not base64"),
    ],
)
def test_missing_or_malformed_headers_are_refused(key, cert_pem, change, reason):
    headers = {k: v for k, v in {**sign(BODY, key, cert_url()), **change}.items() if v is not None}
    with pytest.raises(WebhookSignatureError, match=reason):
        provider(CountingFetcher(cert_pem)).verify_webhook(body=BODY, headers=headers)


@pytest.mark.parametrize(
    ("transmission_time", "reason"),
    [
        ("2025-06-15T11:54:59Z", "is 301 s old"),
        ("2025-06-15T12:05:01Z", "is 301 s in the future"),
        ("last Tuesday", "not an ISO 8601 time"),
    ],
    ids=["older-than-300-s", "later-than-300-s", "not-a-time"],
)
def test_a_delivery_sent_outside_the_replay_window_is_refused_before_any_fetch(
    key, cert_pem, transmission_time, reason
):
    # given: a delivery genuinely signed by PayPal's key, but transmitted over 300 s from now
    # (a recorded delivery replayed later; the time is part of what PayPal signs)
    fetcher = CountingFetcher(cert_pem)
    headers = sign(BODY, key, cert_url(), transmission_time=transmission_time)
    # when / then: refused like a bad signature (the endpoint's 400), and no certificate fetched
    with pytest.raises(WebhookSignatureError, match=reason):
        provider(fetcher).verify_webhook(body=BODY, headers=headers)
    assert fetcher.urls == []


def test_a_delivery_sent_within_the_replay_window_is_accepted(key, cert_pem):
    for transmission_time in ("2025-06-15T11:55:00Z", "2025-06-15T12:05:00Z", "2025-06-15T11:59:58.123Z"):
        headers = sign(BODY, key, cert_url(), transmission_time=transmission_time)
        provider(CountingFetcher(cert_pem)).verify_webhook(body=BODY, headers=headers)


def test_unconfigured_webhook_id_refuses(key, cert_pem):
    with pytest.raises(WebhookSignatureError, match="no PayPal webhook id"):
        provider(CountingFetcher(cert_pem), webhook_id="").verify_webhook(
            body=BODY, headers=sign(BODY, key, cert_url())
        )


def test_default_fetcher_gets_the_certificate_over_the_transport(key, cert_pem):
    # given: the allow-list extended to a test host, served by the scripted transport
    url = cert_url(host="certs.paypal.test")
    transport = ScriptedTransport(HttpResponse(200, {"Content-Type": "application/x-pem-file"}, cert_pem))
    adapter = provider(TransportCertFetcher(transport), cert_hosts=("certs.paypal.test",))
    # when
    adapter.verify_webhook(body=BODY, headers=sign(BODY, key, url))
    # then
    [request] = transport.requests
    assert (request.method, request.url) == ("GET", url)


def test_default_fetcher_refuses_a_non_200_answer(key):
    url = cert_url(host="certs.paypal.test")
    adapter = provider(TransportCertFetcher(ScriptedTransport(HttpResponse(404))), cert_hosts=("certs.paypal.test",))
    with pytest.raises(WebhookSignatureError, match="answered 404"):
        adapter.verify_webhook(body=BODY, headers=sign(BODY, key, url))


# --- parsing ---------------------------------------------------------------------------------


def test_order_approved_is_approved_not_paid():
    order = {
        "id": "5O190127TN364715T",
        "status": "APPROVED",
        "purchase_units": [
            {
                "reference_id": CHECKOUT_ID,
                "custom_id": CHECKOUT_ID,
                "amount": {"currency_code": "EUR", "value": "15.00"},
            }
        ],
    }
    envelope = provider().parse_webhook(body=paypal_event("CHECKOUT.ORDER.APPROVED", order), headers={})
    assert envelope.status == PaymentStatus.APPROVED
    assert (envelope.reference, envelope.checkout_id) == ("5O190127TN364715T", CHECKOUT_ID)
    assert (envelope.amount_minor, envelope.currency, envelope.payment_id) == (1500, "EUR", None)


@pytest.mark.parametrize(
    ("event_type", "status"),
    [
        ("PAYMENT.CAPTURE.COMPLETED", PaymentStatus.PAID),
        ("PAYMENT.CAPTURE.DENIED", PaymentStatus.FAILED),
        ("PAYMENT.CAPTURE.DECLINED", PaymentStatus.FAILED),
        ("PAYMENT.CAPTURE.PENDING", PaymentStatus.PENDING),
    ],
)
def test_capture_events_map_to_statuses(event_type, status):
    envelope = provider().parse_webhook(body=paypal_event(event_type, CAPTURE), headers={})
    assert (envelope.provider, envelope.event_id, envelope.event_type) == ("paypal", "WH-58D3-1", event_type)
    assert envelope.status == status
    assert (envelope.reference, envelope.checkout_id, envelope.payment_id) == (
        "5O190127TN364715T",
        CHECKOUT_ID,
        "2GG279541U471931P",
    )
    assert (envelope.amount_minor, envelope.currency) == (1500, "EUR")
    assert envelope.occurred_at == datetime(2025, 6, 15, 11, 59, 57, tzinfo=UTC)


def test_capture_refunded_maps_to_refunded_with_the_capture_and_total_refunded():
    refund = {
        "id": "1JU08902781691411",
        "status": "COMPLETED",
        "amount": {"currency_code": "EUR", "value": "5.00"},
        "custom_id": CHECKOUT_ID,
        "seller_payable_breakdown": {"total_refunded_amount": {"currency_code": "EUR", "value": "15.00"}},
        "links": [
            {"rel": "self", "href": f"{API_BASE}/v2/payments/refunds/1JU08902781691411", "method": "GET"},
            {"rel": "up", "href": f"{API_BASE}/v2/payments/captures/2GG279541U471931P", "method": "GET"},
        ],
    }
    envelope = provider().parse_webhook(body=paypal_event("PAYMENT.CAPTURE.REFUNDED", refund), headers={})
    assert envelope.status == PaymentStatus.REFUNDED
    assert (envelope.reference, envelope.checkout_id, envelope.payment_id) == (None, CHECKOUT_ID, "2GG279541U471931P")
    assert (envelope.amount_minor, envelope.currency) == (1500, "EUR")


def test_other_event_types_are_unknown_and_garbage_is_refused():
    adapter = provider()
    assert adapter.parse_webhook(body=paypal_event("BILLING.PLAN.CREATED", {}), headers={}).status == (
        PaymentStatus.UNKNOWN
    )
    with pytest.raises(WebhookPayloadError):
        adapter.parse_webhook(body=b'{"event_type": "PAYMENT.CAPTURE.COMPLETED"}', headers={})


# --- API calls -------------------------------------------------------------------------------

TOKEN = json_response({"access_token": "A21AAF-local-token", "token_type": "Bearer", "expires_in": 32400})


def order_response(status: str = "PAYER_ACTION_REQUIRED", **fields: Any) -> HttpResponse:
    return json_response(
        {
            "id": "5O190127TN364715T",
            "status": status,
            "links": [
                {"href": f"{API_BASE}/v2/checkout/orders/5O190127TN364715T", "rel": "self", "method": "GET"},
                {
                    "href": "https://www.sandbox.paypal.com/checkoutnow?token=5O19",
                    "rel": "payer-action",
                    "method": "GET",
                },
            ],
            **fields,
        }
    )


def create(adapter: PayPalProvider, checkout_id: str = CHECKOUT_ID):
    return adapter.create_session(
        checkout_id=checkout_id,
        amount_minor=1500,
        currency="EUR",
        email="shopper@example.com",
        description="Spring Gala photos",
        success_url="https://darkroom.test/done",
        cancel_url="https://darkroom.test/cancel",
    )


def test_create_session_gets_a_token_then_creates_an_order_with_the_checkout_id_as_request_id():
    transport = ScriptedTransport(TOKEN, order_response())
    session = create(provider(transport=transport))
    assert (session.reference, session.payment_url) == (
        "5O190127TN364715T",
        "https://www.sandbox.paypal.com/checkoutnow?token=5O19",
    )
    token, order = transport.requests
    assert (token.method, token.url) == ("POST", f"{API_BASE}/v1/oauth2/token")
    assert token.header("Authorization") == "Basic " + base64.b64encode(b"client-local:secret-local").decode()
    assert form_body(token) == {"grant_type": ["client_credentials"]}
    assert (order.method, order.url) == ("POST", f"{API_BASE}/v2/checkout/orders")
    assert order.header("Authorization") == "Bearer A21AAF-local-token"
    assert order.header("PayPal-Request-Id") == CHECKOUT_ID
    body = json_body(order)
    assert body["intent"] == "CAPTURE"
    [unit] = body["purchase_units"]
    assert (unit["custom_id"], unit["reference_id"]) == (CHECKOUT_ID, CHECKOUT_ID)
    assert unit["amount"] == {"currency_code": "EUR", "value": "15.00"}
    context = body["payment_source"]["paypal"]["experience_context"]
    assert (context["return_url"], context["cancel_url"]) == (
        "https://darkroom.test/done",
        "https://darkroom.test/cancel",
    )


def test_the_access_token_is_reused():
    transport = ScriptedTransport(TOKEN, order_response(), order_response())
    adapter = provider(transport=transport)
    create(adapter)
    create(adapter, checkout_id="another-checkout")
    assert [r.url for r in transport.requests].count(f"{API_BASE}/v1/oauth2/token") == 1


class Clock:
    """`time.monotonic` for the adapter's token cache, moved on by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def token_requests(transport: ScriptedTransport) -> int:
    return [r.url for r in transport.requests].count(f"{API_BASE}/v1/oauth2/token")


@pytest.mark.parametrize("expires_in", [10**400, 10**30, 2**1100, True], ids=["beyond-float", "1e30", "2^1100", "true"])
def test_a_token_answer_with_an_absurd_expires_in_is_cached_for_a_sane_while(expires_in, monkeypatch):
    """A token answer whose `expires_in` is beyond what a float holds raised OverflowError out of
    every PayPal call; a huge one cached the token for ever, and `true` for one second."""
    # given: PayPal answers a token whose expires_in is absurd
    clock = Clock()
    monkeypatch.setattr("apps.payments.providers.paypal.time", clock)
    absurd = HttpResponse(
        200,
        {"Content-Type": "application/json"},
        b'{"access_token": "A21AAF-local-token", "expires_in": %d}' % int(expires_in),
    )
    if expires_in is True:
        absurd = json_response({"access_token": "A21AAF-local-token", "expires_in": True})
    transport = ScriptedTransport(absurd, order_response(), order_response(), TOKEN, order_response())
    adapter = provider(transport=transport)
    # when: two orders are made a minute apart
    create(adapter)
    clock.now += 60
    create(adapter, checkout_id="another-checkout")
    # then: both are made, with one token
    assert token_requests(transport) == 1
    # and: once PayPal's longest token lifetime (9 hours) has passed, a new token is asked for
    clock.now += 9 * 3600
    create(adapter, checkout_id="a-third-checkout")
    assert token_requests(transport) == 2


@pytest.mark.parametrize("expires_in", [0, -1, -(10**400)], ids=["zero", "negative", "beyond-float"])
def test_a_token_paypal_says_has_expired_is_used_once(expires_in, monkeypatch):
    # given: PayPal answers tokens that expire at once (or before they were made)
    monkeypatch.setattr("apps.payments.providers.paypal.time", Clock())
    expired = HttpResponse(
        200,
        {"Content-Type": "application/json"},
        b'{"access_token": "A21AAF-local-token", "expires_in": %d}' % expires_in,
    )
    transport = ScriptedTransport(expired, order_response(), expired, order_response())
    adapter = provider(transport=transport)
    # when: two orders are made
    create(adapter)
    create(adapter, checkout_id="another-checkout")
    # then: each asked for its own token, none cached
    assert token_requests(transport) == 2


def test_capture_posts_with_the_idempotency_key_and_reports_paid():
    captured = order_response(
        "COMPLETED",
        purchase_units=[
            {
                "reference_id": CHECKOUT_ID,
                "amount": {"currency_code": "EUR", "value": "15.00"},
                "payments": {"captures": [{"id": "2GG279541U471931P", "status": "COMPLETED"}]},
            }
        ],
    )
    transport = ScriptedTransport(TOKEN, captured)
    state = provider(transport=transport).capture(reference="5O190127TN364715T", idempotency_key="capture-1")
    assert (state.status, state.payment_id, state.amount_minor) == (PaymentStatus.PAID, "2GG279541U471931P", 1500)
    request = transport.requests[1]
    assert (request.method, request.url) == ("POST", f"{API_BASE}/v2/checkout/orders/5O190127TN364715T/capture")
    assert request.header("PayPal-Request-Id") == "capture-1"


@pytest.mark.parametrize(
    ("order_status", "capture_status", "expected"),
    [
        ("PAYER_ACTION_REQUIRED", None, PaymentStatus.PENDING),
        ("APPROVED", None, PaymentStatus.APPROVED),
        ("VOIDED", None, PaymentStatus.EXPIRED),
        ("COMPLETED", "COMPLETED", PaymentStatus.PAID),
        ("COMPLETED", "REFUNDED", PaymentStatus.REFUNDED),
        ("COMPLETED", "DECLINED", PaymentStatus.FAILED),
    ],
)
def test_fetch_status_reads_the_order(order_status, capture_status, expected):
    unit: dict[str, Any] = {"amount": {"currency_code": "EUR", "value": "15.00"}}
    if capture_status:
        unit["payments"] = {"captures": [{"id": "CAP1", "status": capture_status}]}
    transport = ScriptedTransport(TOKEN, order_response(order_status, purchase_units=[unit]))
    assert provider(transport=transport).fetch_status(reference="5O190127TN364715T").status == expected
    assert (transport.requests[1].method, transport.requests[1].url) == (
        "GET",
        f"{API_BASE}/v2/checkout/orders/5O190127TN364715T",
    )


def test_refund_refunds_the_capture_with_the_idempotency_key():
    unit = {
        "amount": {"currency_code": "EUR", "value": "15.00"},
        "payments": {"captures": [{"id": "CAP1", "status": "COMPLETED"}]},
    }
    transport = ScriptedTransport(
        TOKEN,
        order_response("COMPLETED", purchase_units=[unit]),
        json_response({"id": "REF1", "status": "COMPLETED"}),
    )
    result = provider(transport=transport).refund(
        reference="5O190127TN364715T", amount_minor=500, idempotency_key="r-9"
    )
    assert (result.refund_id, result.status, result.amount_minor, result.currency) == (
        "REF1",
        PaymentStatus.REFUNDED,
        500,
        "EUR",
    )
    refund = transport.requests[2]
    assert (refund.method, refund.url) == ("POST", f"{API_BASE}/v2/payments/captures/CAP1/refund")
    assert refund.header("PayPal-Request-Id") == "r-9"
    assert json_body(refund) == {"amount": {"currency_code": "EUR", "value": "5.00"}}


def test_refund_carries_the_orders_custom_id_so_its_webhook_names_the_checkout():
    unit = {
        "amount": {"currency_code": "EUR", "value": "15.00"},
        "custom_id": CHECKOUT_ID,
        "payments": {"captures": [{"id": "CAP1", "status": "COMPLETED"}]},
    }
    transport = ScriptedTransport(
        TOKEN,
        order_response("COMPLETED", purchase_units=[unit]),
        json_response({"id": "REF1", "status": "COMPLETED"}),
    )
    provider(transport=transport).refund(reference="5O190127TN364715T", amount_minor=1500, idempotency_key="r-10")
    assert json_body(transport.requests[2]) == {
        "amount": {"currency_code": "EUR", "value": "15.00"},
        "custom_id": CHECKOUT_ID,
    }


def test_a_token_paypal_no_longer_accepts_is_refreshed_once_and_the_call_sent_again():
    # given: a cached token that PayPal expired (or revoked) before its expires_in
    fresh = json_response({"access_token": "A21AAF-fresh-token", "expires_in": 32400})
    unauthorized = json_response(
        {"error": "invalid_token", "error_description": "Token signature verification failed"}, 401
    )
    transport = ScriptedTransport(TOKEN, order_response(), unauthorized, fresh, order_response(), order_response())
    adapter = provider(transport=transport)
    create(adapter)
    # when: the next call is refused with 401
    session = create(adapter, checkout_id="another-checkout")
    # then: a new token was fetched and the same request sent again with it; the session exists
    assert session.reference == "5O190127TN364715T"
    refused, token, retried = transport.requests[2:5]
    assert refused.header("Authorization") == "Bearer A21AAF-local-token"
    assert token.url == f"{API_BASE}/v1/oauth2/token"
    assert retried.header("Authorization") == "Bearer A21AAF-fresh-token"
    assert (retried.url, retried.body, retried.header("PayPal-Request-Id")) == (
        refused.url,
        refused.body,
        "another-checkout",
    )
    # and: the fresh token is the one kept
    create(adapter, checkout_id="a-third-checkout")
    assert transport.requests[5].header("Authorization") == "Bearer A21AAF-fresh-token"


def test_a_second_401_after_a_fresh_token_is_the_callers_error_not_retried_again():
    unauthorized = json_response({"error": "invalid_token"}, 401)
    fresh = json_response({"access_token": "A21AAF-fresh-token", "expires_in": 32400})
    transport = ScriptedTransport(TOKEN, unauthorized, fresh, unauthorized)
    with pytest.raises(ProviderError) as caught:
        create(provider(transport=transport))
    assert (caught.value.http_status, caught.value.retryable) == (401, False)
    assert len(transport.requests) == 4


def test_a_refund_answered_2xx_but_unreadable_is_retryable():
    # given: PayPal made the refund (201) but its answer cannot be read (a proxy's HTML page)
    unit = {
        "amount": {"currency_code": "EUR", "value": "15.00"},
        "payments": {"captures": [{"id": "CAP1", "status": "COMPLETED"}]},
    }
    transport = ScriptedTransport(
        TOKEN,
        order_response("COMPLETED", purchase_units=[unit]),
        HttpResponse(201, {"Content-Type": "text/html"}, b"<html>Gateway</html>"),
    )
    # when: the refund is asked for
    with pytest.raises(ProviderError) as caught:
        provider(transport=transport).refund(reference="5O190127TN364715T", amount_minor=500, idempotency_key="r-9")
    # then: retryable (the same PayPal-Request-Id replays PayPal's answer), never a failed refund
    assert caught.value.retryable is True
    assert transport.requests[2].header("PayPal-Request-Id") == "r-9"


def test_api_failure_is_a_provider_error():
    transport = ScriptedTransport(TOKEN, json_response({"name": "INTERNAL_SERVER_ERROR"}, status=500))
    with pytest.raises(ProviderError) as caught:
        create(provider(transport=transport))
    assert (caught.value.retryable, caught.value.http_status) == (True, 500)


# --- currencies PayPal takes in whole units only ----------------------------------------------


@pytest.mark.parametrize(
    ("amount_minor", "currency", "value"),
    [(111000, "HUF", "1110"), (250000, "TWD", "2500"), (1500, "JPY", "1500"), (15250, "KWD", "15.250")],
)
def test_orders_are_sent_without_decimals_in_whole_unit_currencies(amount_minor, currency, value):
    # given: PayPal refuses a decimal amount in HUF, JPY and TWD (its currency codes page)
    transport = ScriptedTransport(TOKEN, order_response())
    # when: a checkout in one of them (or another currency) gets its order
    provider(transport=transport).create_session(
        checkout_id=CHECKOUT_ID,
        amount_minor=amount_minor,
        currency=currency,
        email="shopper@example.com",
        description="Spring Gala photos",
        success_url="https://darkroom.test/done",
        cancel_url="https://darkroom.test/cancel",
    )
    # then: the amount goes as PayPal takes it
    [unit] = json_body(transport.requests[1])["purchase_units"]
    assert unit["amount"] == {"currency_code": currency, "value": value}


def test_an_order_for_a_fraction_of_a_whole_unit_currency_is_refused_before_anything_is_sent():
    transport = ScriptedTransport(TOKEN)
    with pytest.raises(ProviderError, match="whole units") as caught:
        provider(transport=transport).create_session(
            checkout_id=CHECKOUT_ID,
            amount_minor=111060,
            currency="HUF",
            email="shopper@example.com",
            description="Spring Gala photos",
            success_url="https://darkroom.test/done",
            cancel_url="https://darkroom.test/cancel",
        )
    assert not caught.value.retryable  # PayPal would refuse it every time
    assert not [r for r in transport.requests if r.url.endswith("/v2/checkout/orders")]


def huf_order() -> HttpResponse:
    unit = {
        "amount": {"currency_code": "HUF", "value": "1110"},
        "payments": {"captures": [{"id": "CAP1", "status": "COMPLETED"}]},
    }
    return order_response("COMPLETED", purchase_units=[unit])


def test_refunds_are_sent_without_decimals_in_whole_unit_currencies():
    transport = ScriptedTransport(TOKEN, huf_order(), json_response({"id": "REF1", "status": "COMPLETED"}))
    result = provider(transport=transport).refund(
        reference="5O190127TN364715T", amount_minor=50000, idempotency_key="r-11"
    )
    assert (result.amount_minor, result.currency) == (50000, "HUF")
    assert json_body(transport.requests[2]) == {"amount": {"currency_code": "HUF", "value": "500"}}


def test_a_refund_of_a_fraction_of_a_whole_unit_currency_is_refused_before_it_is_sent():
    transport = ScriptedTransport(TOKEN, huf_order())
    with pytest.raises(ProviderError, match="whole units") as caught:
        provider(transport=transport).refund(reference="5O190127TN364715T", amount_minor=50030, idempotency_key="r-12")
    assert not caught.value.retryable
    assert not [r for r in transport.requests if r.url.endswith("/refund")]


# --- CHECKOUT.ORDER.COMPLETED: the capture's own status is the money ---------------------------


def completed_order(*captures: dict[str, Any]) -> bytes:
    unit: dict[str, Any] = {"custom_id": CHECKOUT_ID, "amount": {"currency_code": "EUR", "value": "15.00"}}
    if captures:
        unit["payments"] = {"captures": list(captures)}
    return paypal_event(
        "CHECKOUT.ORDER.COMPLETED", {"id": "5O190127TN364715T", "status": "COMPLETED", "purchase_units": [unit]}
    )


@pytest.mark.parametrize(
    ("capture_status", "expected"),
    [
        ("COMPLETED", PaymentStatus.PAID),
        ("PENDING", PaymentStatus.PENDING),  # e.g. an eCheck, or PayPal reviewing the payment
        ("DECLINED", PaymentStatus.FAILED),
        ("FAILED", PaymentStatus.FAILED),
    ],
)
def test_a_completed_order_is_paid_only_when_its_capture_completed(capture_status, expected):
    capture = {"id": "CAP1", "status": capture_status, "amount": {"currency_code": "EUR", "value": "15.00"}}
    envelope = provider().parse_webhook(body=completed_order(capture), headers={})
    assert (envelope.status, envelope.payment_id) == (expected, "CAP1")


def test_a_completed_order_without_a_capture_pays_nothing():
    assert provider().parse_webhook(body=completed_order(), headers={}).status == PaymentStatus.PENDING


def test_a_completed_orders_amount_is_what_its_capture_charged():
    capture = {"id": "CAP1", "status": "COMPLETED", "amount": {"currency_code": "EUR", "value": "14.00"}}
    envelope = provider().parse_webhook(body=completed_order(capture), headers={})
    assert (envelope.amount_minor, envelope.currency) == (1400, "EUR")
