"""Flutterwave adapter: both webhook header schemes, event mapping, API request format."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

import pytest

from apps.payments.providers.base import PaymentStatus, ProviderError, WebhookPayloadError, WebhookSignatureError
from apps.payments.providers.flutterwave import FlutterwaveProvider
from tests.payments.provider_transport import ScriptedTransport, json_body, json_response, path, query

CHECKOUT_ID = "0b8e6f3c-2d41-4f7a-b1c9-8a7e6d5c4b3a"
SECRET_KEY = "FLWSECK_TEST-" + "a" * 32 + "-X"


def provider(secret_hash: str = "", transport: ScriptedTransport | None = None) -> FlutterwaveProvider:
    return FlutterwaveProvider(
        secret_key=SECRET_KEY,
        secret_hash=secret_hash,
        api_base="https://api.flutterwave.com/v3",
        transport=transport or ScriptedTransport(),
    )


def hmac_b64(body: bytes, secret: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def charge(status: str = "successful", **data: Any) -> bytes:
    payload = {
        "event": "charge.completed",
        "data": {
            "id": 285959875,
            "tx_ref": CHECKOUT_ID,
            "flw_ref": "FLW-MOCK-1",
            "amount": 100.5,
            "currency": "NGN",
            "status": status,
            "created_at": "2025-06-15T14:02:11.000Z",
            **data,
        },
        "event.type": "CARD_TRANSACTION",
    }
    return json.dumps(payload).encode()


BODY = charge()


# --- signature -------------------------------------------------------------------------------


def test_hmac_signature_header_is_accepted():
    secret = secrets.token_urlsafe(24)
    provider(secret).verify_webhook(body=BODY, headers={"flutterwave-signature": hmac_b64(BODY, secret)})


def test_legacy_verif_hash_header_is_accepted():
    secret = secrets.token_urlsafe(24)
    provider(secret).verify_webhook(body=BODY, headers={"verif-hash": secret})


def test_hmac_signature_over_a_tampered_body_is_refused():
    secret = secrets.token_urlsafe(24)
    signature = hmac_b64(BODY, secret)
    with pytest.raises(WebhookSignatureError, match="flutterwave-signature does not match"):
        provider(secret).verify_webhook(body=charge(amount=1_000_000), headers={"Flutterwave-Signature": signature})


def test_hmac_signature_with_the_wrong_secret_is_refused():
    body_signature = hmac_b64(BODY, secrets.token_urlsafe(24))
    with pytest.raises(WebhookSignatureError):
        provider(secrets.token_urlsafe(24)).verify_webhook(body=BODY, headers={"flutterwave-signature": body_signature})


def test_wrong_verif_hash_is_refused():
    with pytest.raises(WebhookSignatureError, match="verif-hash does not match"):
        provider(secrets.token_urlsafe(24)).verify_webhook(body=BODY, headers={"verif-hash": "guess"})


def test_a_bad_hmac_is_refused_even_next_to_a_correct_verif_hash():
    # given: the HMAC header binds the body; the static hash does not, so the HMAC decides
    secret = secrets.token_urlsafe(24)
    headers = {"verif-hash": secret, "flutterwave-signature": hmac_b64(b"other body", secret)}
    with pytest.raises(WebhookSignatureError):
        provider(secret).verify_webhook(body=BODY, headers=headers)


def test_missing_headers_are_refused():
    with pytest.raises(WebhookSignatureError, match="missing flutterwave-signature or verif-hash"):
        provider(secrets.token_urlsafe(24)).verify_webhook(body=BODY, headers={})


def test_an_unconfigured_secret_hash_refuses_even_an_empty_header():
    with pytest.raises(WebhookSignatureError, match="no Flutterwave secret hash"):
        provider("").verify_webhook(body=BODY, headers={"verif-hash": ""})


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    # a failed charge is one attempt: the shopper may try again on the hosted page
    [("successful", PaymentStatus.PAID), ("failed", PaymentStatus.PENDING), ("pending", PaymentStatus.PENDING)],
)
def test_v3_charge_completed_maps_on_data_status(status, expected):
    envelope = provider().parse_webhook(body=charge(status), headers={})
    assert envelope.status == expected
    assert envelope.event_type == "charge.completed"
    assert (envelope.reference, envelope.checkout_id, envelope.payment_id) == (CHECKOUT_ID, CHECKOUT_ID, "285959875")
    assert (envelope.amount_minor, envelope.currency) == (10050, "NGN")
    assert envelope.occurred_at is not None and envelope.occurred_at.isoformat() == "2025-06-15T14:02:11+00:00"


def test_v3_event_id_is_stable_for_a_redelivery_and_new_for_a_status_change():
    adapter = provider()
    first = adapter.parse_webhook(body=charge("pending"), headers={}).event_id
    again = adapter.parse_webhook(body=charge("pending"), headers={}).event_id
    settled = adapter.parse_webhook(body=charge("successful"), headers={}).event_id
    assert first == again == "charge.completed:285959875:pending"
    assert settled != first


def test_v4_payload_shape_is_read_too():
    body = json.dumps(
        {
            "webhook_id": "wbk_1",
            "timestamp": 1750000000,
            "type": "charge.completed",
            "data": {"id": "chg_1", "amount": 250, "currency": "KES", "status": "succeeded", "reference": CHECKOUT_ID},
        }
    ).encode()
    envelope = provider().parse_webhook(body=body, headers={})
    assert (envelope.event_id, envelope.status, envelope.checkout_id) == ("wbk_1", PaymentStatus.PAID, CHECKOUT_ID)
    assert (envelope.payment_id, envelope.amount_minor, envelope.currency) == ("chg_1", 25000, "KES")


def test_refund_completed_maps_to_refunded():
    body = json.dumps(
        {
            "event": "refund.completed",
            "data": {
                "id": 75923,
                "AmountRefunded": 40,
                "status": "completed",
                "TransactionId": 285959875,
                "tx_ref": CHECKOUT_ID,
                "currency": "NGN",
                "created_at": "2025-06-16T09:00:00.000Z",
            },
        }
    ).encode()
    envelope = provider().parse_webhook(body=body, headers={})
    assert envelope.status == PaymentStatus.REFUNDED
    assert (envelope.checkout_id, envelope.payment_id, envelope.amount_minor) == (CHECKOUT_ID, "285959875", 4000)


def test_a_failed_refund_is_refund_failed_and_unknown_events_are_unknown():
    adapter = provider()
    failed_refund = json.dumps({"event": "refund.completed", "data": {"id": 1, "status": "failed", "tx_ref": "x"}})
    transfer = json.dumps({"event": "transfer.completed", "data": {"id": 9, "status": "SUCCESSFUL"}})
    failed = adapter.parse_webhook(body=failed_refund.encode(), headers={})
    assert (failed.status, failed.refund_id, failed.refund_failure) == (PaymentStatus.REFUND_FAILED, "1", "failed")
    assert adapter.parse_webhook(body=transfer.encode(), headers={}).status == PaymentStatus.UNKNOWN


@pytest.mark.parametrize("body", [charge(amount=10.555), b"{}", b"\xff"])
def test_malformed_payloads_are_refused(body):
    # an amount finer than the currency's minor unit, no event type, not UTF-8 JSON
    with pytest.raises(WebhookPayloadError):
        provider().parse_webhook(body=body, headers={})


# --- API calls -------------------------------------------------------------------------------


def test_create_session_posts_a_payment_with_tx_ref_and_idempotency_key_set_to_the_checkout_id():
    transport = ScriptedTransport(
        json_response({"status": "success", "message": "Hosted Link", "data": {"link": "https://checkout.flw/pay/x"}})
    )
    session = provider(transport=transport).create_session(
        checkout_id=CHECKOUT_ID,
        amount_minor=1500,
        currency="ngn",
        email="shopper@example.com",
        description="Spring Gala photos",
        success_url="https://darkroom.test/done",
        cancel_url="https://darkroom.test/cancel",
    )
    assert (session.reference, session.payment_url) == (CHECKOUT_ID, "https://checkout.flw/pay/x")
    [request] = transport.requests
    assert (request.method, request.url) == ("POST", "https://api.flutterwave.com/v3/payments")
    assert request.header("Authorization") == f"Bearer {SECRET_KEY}"
    assert request.header("X-Idempotency-Key") == CHECKOUT_ID
    assert request.header("Content-Type") == "application/json"
    body = json_body(request)
    assert body["tx_ref"] == CHECKOUT_ID
    assert (body["amount"], body["currency"]) == ("15.00", "NGN")
    assert body["redirect_url"] == "https://darkroom.test/done"
    assert body["customer"] == {"email": "shopper@example.com"}
    assert body["customizations"]["description"] == "Spring Gala photos"


def test_create_session_sends_zero_decimal_currencies_without_decimals():
    transport = ScriptedTransport(json_response({"status": "success", "data": {"link": "https://checkout.flw/pay/y"}}))
    provider(transport=transport).create_session(
        checkout_id=CHECKOUT_ID,
        amount_minor=5000,
        currency="UGX",
        email="a@example.com",
        description="d",
        success_url="https://darkroom.test/done",
        cancel_url="https://darkroom.test/cancel",
    )
    assert json_body(transport.requests[0])["amount"] == "5000"


def test_create_session_error_response_is_a_provider_error():
    transport = ScriptedTransport(json_response({"status": "error", "message": "Invalid currency"}, status=400))
    with pytest.raises(ProviderError) as caught:
        provider(transport=transport).create_session(
            checkout_id=CHECKOUT_ID,
            amount_minor=100,
            currency="NGN",
            email="a@example.com",
            description="d",
            success_url="https://darkroom.test/done",
            cancel_url="https://darkroom.test/cancel",
        )
    assert (caught.value.retryable, caught.value.http_status) == (False, 400)


def test_fetch_status_verifies_by_reference():
    transport = ScriptedTransport(
        json_response(
            {"status": "success", "data": {"id": 42, "status": "successful", "amount": 15, "currency": "NGN"}}
        )
    )
    state = provider(transport=transport).fetch_status(reference=CHECKOUT_ID)
    assert (state.status, state.amount_minor, state.currency, state.payment_id) == (
        PaymentStatus.PAID,
        1500,
        "NGN",
        "42",
    )
    [request] = transport.requests
    assert (request.method, path(request)) == ("GET", "https://api.flutterwave.com/v3/transactions/verify_by_reference")
    assert query(request) == {"tx_ref": [CHECKOUT_ID]}


def test_fetch_status_of_an_unpaid_reference_is_pending():
    transport = ScriptedTransport(
        json_response({"status": "error", "message": "No transaction was found for this id", "data": None}, status=400)
    )
    assert provider(transport=transport).fetch_status(reference=CHECKOUT_ID).status == PaymentStatus.PENDING


def test_refund_posts_to_the_transaction_with_the_idempotency_key():
    transport = ScriptedTransport(
        json_response(
            {"status": "success", "data": {"id": 42, "status": "successful", "amount": 15, "currency": "NGN"}}
        ),
        json_response({"status": "success", "data": {"id": 7, "amount_refunded": 5, "status": "completed"}}),
    )
    result = provider(transport=transport).refund(reference=CHECKOUT_ID, amount_minor=500, idempotency_key="rf-1")
    assert (result.refund_id, result.status, result.amount_minor, result.currency) == (
        "7",
        PaymentStatus.REFUNDED,
        500,
        "NGN",
    )
    refund = transport.requests[1]
    assert (refund.method, refund.url) == ("POST", "https://api.flutterwave.com/v3/transactions/42/refund")
    assert refund.header("X-Idempotency-Key") == "rf-1"
    assert json_body(refund) == {"amount": 5}  # a JSON number in major units, as documented


def verified(**data: Any):
    answer = {"id": 285959875, "tx_ref": CHECKOUT_ID, "status": "successful", "amount": 100.5, "currency": "NGN"}
    return json_response({"status": "success", "message": "Transaction fetched successfully", "data": answer | data})


def test_a_paid_event_is_confirmed_by_the_transactions_verify_endpoint_and_takes_its_figures():
    # given: a paid charge.completed (100.50 NGN) and Flutterwave's record of 100.00 NGN
    transport = ScriptedTransport(verified(amount=100))
    adapter = provider(secrets.token_urlsafe(24), transport)
    # when: the event is confirmed
    envelope = adapter.confirm_payment(envelope=adapter.parse_webhook(body=BODY, headers={}))
    # then: the transaction was read back by its id, with the secret key, and its figures count
    [request] = transport.requests
    assert (request.method, request.url) == ("GET", "https://api.flutterwave.com/v3/transactions/285959875/verify")
    assert request.header("Authorization") == f"Bearer {SECRET_KEY}"
    assert (envelope.status, envelope.amount_minor, envelope.currency) == (PaymentStatus.PAID, 10000, "NGN")


def test_a_paid_event_flutterwave_does_not_confirm_is_not_paid():
    adapter = provider(transport=ScriptedTransport(verified(status="failed"), verified(status="pending")))
    event = adapter.parse_webhook(body=BODY, headers={})
    # a failed transaction is a failed attempt (nothing to act on)
    assert adapter.confirm_payment(envelope=event).status == PaymentStatus.PENDING
    # one not settled yet is asked about again later
    with pytest.raises(ProviderError) as caught:
        adapter.confirm_payment(envelope=event)
    assert caught.value.retryable
    # a transaction of another tx_ref is not this checkout's payment
    other = provider(transport=ScriptedTransport(verified(tx_ref="someone-else")))
    with pytest.raises(WebhookPayloadError, match="someone-else"):
        other.confirm_payment(envelope=event)


def test_events_other_than_paid_are_not_sent_to_the_api():
    transport = ScriptedTransport()
    adapter = provider(transport=transport)
    envelope = adapter.parse_webhook(body=charge(status="failed"), headers={})
    assert adapter.confirm_payment(envelope=envelope) is envelope
    assert transport.requests == []
