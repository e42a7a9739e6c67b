"""Stripe adapter: Stripe-Signature verification, event mapping, API request format."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import pytest
import stripe

from apps.payments.providers.base import PaymentStatus, ProviderError, WebhookPayloadError, WebhookSignatureError
from apps.payments.providers.http import TransportError
from apps.payments.providers.stripe import StripeProvider
from tests.payments.provider_transport import ScriptedTransport, form_body, json_response, path, query

NOW = 1_750_000_000
CHECKOUT_ID = "4f9c1e0a-6b7d-4c1e-9a55-2a3b4c5d6e7f"


def make_secret() -> str:
    return "whsec_" + secrets.token_hex(24)


def provider(*webhook_secrets: str, transport: ScriptedTransport | None = None, retries: int = 0) -> StripeProvider:
    return StripeProvider(
        secret_key="sk_test_local_" + "x" * 8,
        webhook_secrets=webhook_secrets,
        tolerance_seconds=300,
        transport=transport or ScriptedTransport(),
        max_network_retries=retries,
        now=lambda: NOW,
    )


def v1(body: bytes, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def event(event_type: str, obj: dict[str, Any], event_id: str = "evt_1") -> bytes:
    payload = {"id": event_id, "object": "event", "type": event_type, "created": NOW, "data": {"object": obj}}
    return json.dumps(payload).encode()


BODY = event("checkout.session.completed", {"id": "cs_test_1", "payment_status": "paid"})


# --- signature -------------------------------------------------------------------------------


def test_signature_made_by_the_official_stripe_library_is_accepted():
    # given: a locally generated endpoint secret and a header built by stripe-python itself
    secret = make_secret()
    header = stripe.WebhookSignature.generate_signature_header(BODY.decode(), secret, timestamp=NOW)
    # when / then: the adapter accepts it (no exception), with the header name in any case
    provider(secret).verify_webhook(body=BODY, headers={"Stripe-Signature": header})
    provider(secret).verify_webhook(body=BODY, headers={"stripe-signature": header})


def test_tampered_body_is_refused():
    secret = make_secret()
    header = f"t={NOW},v1={v1(BODY, secret, NOW)}"
    tampered = BODY.replace(b"cs_test_1", b"cs_test_2")
    with pytest.raises(WebhookSignatureError, match="no Stripe-Signature v1 signature matches"):
        provider(secret).verify_webhook(body=tampered, headers={"Stripe-Signature": header})


def test_reserialised_json_is_refused_because_the_raw_bytes_are_signed():
    # given: the same JSON document, re-serialised with different whitespace
    secret = make_secret()
    header = f"t={NOW},v1={v1(BODY, secret, NOW)}"
    reserialised = json.dumps(json.loads(BODY), separators=(",", ":")).encode()
    assert reserialised != BODY
    # then
    with pytest.raises(WebhookSignatureError):
        provider(secret).verify_webhook(body=reserialised, headers={"Stripe-Signature": header})


def test_wrong_secret_is_refused():
    header = f"t={NOW},v1={v1(BODY, make_secret(), NOW)}"
    with pytest.raises(WebhookSignatureError, match="matches"):
        provider(make_secret()).verify_webhook(body=BODY, headers={"Stripe-Signature": header})


@pytest.mark.parametrize(
    ("timestamp", "accepted", "reason"),
    [
        (NOW - 301, False, "s old"),
        (NOW + 301, False, "in the future"),
        (NOW - 299, True, ""),
        (NOW + 299, True, ""),
    ],
)
def test_timestamp_tolerance_is_300_seconds_both_ways(timestamp, accepted, reason):
    # given: a correctly signed delivery whose signed timestamp is `timestamp`
    secret = make_secret()
    header = f"t={timestamp},v1={v1(BODY, secret, timestamp)}"
    adapter = provider(secret)
    # when / then
    if accepted:
        adapter.verify_webhook(body=BODY, headers={"Stripe-Signature": header})
    else:
        with pytest.raises(WebhookSignatureError, match=reason):
            adapter.verify_webhook(body=BODY, headers={"Stripe-Signature": header})


def test_missing_header_is_refused():
    with pytest.raises(WebhookSignatureError, match="missing Stripe-Signature header"):
        provider(make_secret()).verify_webhook(body=BODY, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("garbage", "malformed"),
        ("t=,v1=abc", "malformed"),
        ("t=12x4,v1=abc", "exactly one numeric t="),
        ("v1=abc", "exactly one numeric t="),
        (f"t={NOW},t={NOW},v1=abc", "exactly one numeric t="),
        (f"t={NOW}", "no v1 signature"),
        (f"t={NOW},v0=abc", "no v1 signature"),
        (f"t={NOW}," + ",".join(["v1=ab"] * 17), "more than 16"),
    ],
)
def test_malformed_header_is_refused_with_a_reason(header, reason):
    with pytest.raises(WebhookSignatureError, match=reason):
        provider(make_secret()).verify_webhook(body=BODY, headers={"Stripe-Signature": header})


def test_rotation_header_with_two_v1_values_one_valid_is_accepted():
    # given: Stripe signs with the old and the new secret during a rotation; we know only the new
    old, new = make_secret(), make_secret()
    header = f"t={NOW},v1={v1(BODY, old, NOW)},v1={v1(BODY, new, NOW)}"
    # when / then
    provider(new).verify_webhook(body=BODY, headers={"Stripe-Signature": header})


def test_rotation_with_two_configured_secrets_accepts_either():
    old, new = make_secret(), make_secret()
    adapter = provider(new, old)
    for secret in (old, new):
        adapter.verify_webhook(body=BODY, headers={"Stripe-Signature": f"t={NOW},v1={v1(BODY, secret, NOW)}"})
    with pytest.raises(WebhookSignatureError):
        adapter.verify_webhook(body=BODY, headers={"Stripe-Signature": f"t={NOW},v1={v1(BODY, make_secret(), NOW)}"})


def test_no_configured_secret_refuses_everything():
    with pytest.raises(WebhookSignatureError, match="no webhook secret"):
        provider("").verify_webhook(body=BODY, headers={"Stripe-Signature": f"t={NOW},v1={v1(BODY, '', NOW)}"})


# --- parsing ---------------------------------------------------------------------------------

SESSION = {
    "id": "cs_test_a1",
    "object": "checkout.session",
    "client_reference_id": CHECKOUT_ID,
    "metadata": {"checkout_id": CHECKOUT_ID},
    "payment_intent": "pi_1",
    "payment_status": "paid",
    "amount_total": 1500,
    "currency": "eur",
}


@pytest.mark.parametrize(
    ("event_type", "overrides", "status"),
    [
        ("checkout.session.completed", {}, PaymentStatus.PAID),
        ("checkout.session.completed", {"payment_status": "unpaid"}, PaymentStatus.PENDING),
        ("checkout.session.async_payment_succeeded", {}, PaymentStatus.PAID),
        ("checkout.session.async_payment_failed", {"payment_status": "unpaid"}, PaymentStatus.FAILED),
        ("checkout.session.expired", {"payment_status": "unpaid", "payment_intent": None}, PaymentStatus.EXPIRED),
    ],
)
def test_session_events_map_to_statuses(event_type, overrides, status):
    # when
    envelope = provider(make_secret()).parse_webhook(body=event(event_type, {**SESSION, **overrides}), headers={})
    # then
    assert envelope.provider == "stripe"
    assert envelope.event_id == "evt_1"
    assert envelope.event_type == event_type
    assert envelope.status == status
    assert envelope.reference == "cs_test_a1"
    assert envelope.checkout_id == CHECKOUT_ID
    assert envelope.payment_id == overrides.get("payment_intent", "pi_1")
    assert (envelope.amount_minor, envelope.currency) == (1500, "EUR")
    assert envelope.occurred_at == datetime.fromtimestamp(NOW, tz=UTC)
    assert envelope.raw["data"]["object"]["id"] == "cs_test_a1"


def test_checkout_id_falls_back_to_metadata():
    body = event("checkout.session.completed", {**SESSION, "client_reference_id": None})
    assert provider(make_secret()).parse_webhook(body=body, headers={}).checkout_id == CHECKOUT_ID


def refund_object(status: str, **extra: object) -> dict[str, object]:
    """A Stripe refund of 5.00 of pi_1, made by Darkroom (its session in the metadata)."""
    return {
        "id": "re_1",
        "object": "refund",
        "amount": 500,
        "charge": "ch_1",
        "currency": "eur",
        "payment_intent": "pi_1",
        "status": status,
        "metadata": {"session": "cs_test_a1"},
        **extra,
    }


@pytest.mark.parametrize("event_type", ["refund.created", "refund.updated"])
def test_a_succeeded_refund_event_names_its_refund_and_its_own_amount(event_type):
    envelope = provider(make_secret()).parse_webhook(body=event(event_type, refund_object("succeeded")), headers={})
    assert (envelope.status, envelope.refund_id) == (PaymentStatus.REFUNDED, "re_1")
    assert (envelope.amount_minor, envelope.refund_amount_minor, envelope.currency) == (500, 500, "EUR")
    # matched by the session Darkroom's refund names, else by its PaymentIntent
    assert (envelope.reference, envelope.payment_id, envelope.refund_failure) == ("cs_test_a1", "pi_1", "")


def test_a_dashboard_refund_event_is_matched_by_its_payment_intent():
    body = event("refund.updated", refund_object("succeeded", metadata={}))
    envelope = provider(make_secret()).parse_webhook(body=body, headers={})
    assert (envelope.status, envelope.reference, envelope.payment_id) == (PaymentStatus.REFUNDED, None, "pi_1")


@pytest.mark.parametrize(
    ("event_type", "status", "reason"),
    [
        ("refund.failed", "failed", "expired_or_canceled_card"),
        ("refund.updated", "failed", "lost_or_stolen_card"),
        ("refund.updated", "canceled", None),
    ],
)
def test_a_refund_that_did_not_complete_is_refund_failed_with_its_reason(event_type, status, reason):
    body = event(event_type, refund_object(status, failure_reason=reason))
    envelope = provider(make_secret()).parse_webhook(body=body, headers={})
    assert (envelope.status, envelope.refund_id) == (PaymentStatus.REFUND_FAILED, "re_1")
    assert envelope.refund_failure == (reason or status)


@pytest.mark.parametrize("status", ["pending", "requires_action", None])
def test_a_refund_not_finished_yet_is_unknown(status):
    body = event("refund.created", refund_object(status))
    assert provider(make_secret()).parse_webhook(body=body, headers={}).status == PaymentStatus.UNKNOWN


def test_charge_refunded_is_not_acted_on_it_cannot_say_which_refund_completed():
    # a charge of 15.00 refunded twice (5.00, then 7.00): 12.00 refunded in all, refunds unnamed
    charge = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": "pi_1",
        "amount": 1500,
        "amount_refunded": 1200,
        "refunded": False,
        "currency": "eur",
        "metadata": {"checkout_id": CHECKOUT_ID},
    }
    envelope = provider(make_secret()).parse_webhook(body=event("charge.refunded", charge, "evt_2"), headers={})
    assert (envelope.status, envelope.refund_id) == (PaymentStatus.UNKNOWN, None)


def test_a_refund_event_without_the_refunds_id_is_unknown():
    body = event("refund.updated", refund_object("succeeded", id=None))
    assert provider(make_secret()).parse_webhook(body=body, headers={}).status == PaymentStatus.UNKNOWN


def test_known_event_naming_no_payment_is_unknown_and_other_types_are_unknown():
    adapter = provider(make_secret())
    orphan = event("refund.updated", {"id": "re_9", "object": "refund", "amount": 5, "status": "succeeded"})
    assert adapter.parse_webhook(body=orphan, headers={}).status == PaymentStatus.UNKNOWN
    other = adapter.parse_webhook(body=event("customer.created", {"id": "cus_1"}, "evt_9"), headers={})
    assert (other.status, other.event_id, other.event_type) == (PaymentStatus.UNKNOWN, "evt_9", "customer.created")


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"type": "checkout.session.completed"}'])
def test_malformed_payload_is_refused(body):
    with pytest.raises(WebhookPayloadError):
        provider(make_secret()).parse_webhook(body=body, headers={})


# --- API calls -------------------------------------------------------------------------------


def session_response(**fields: Any) -> dict[str, Any]:
    return {
        "id": "cs_test_a1",
        "object": "checkout.session",
        "url": "https://checkout.stripe.com/c/pay/cs_test_a1",
    } | fields


def test_create_session_posts_a_checkout_session_with_the_checkout_id_as_idempotency_key():
    # given
    transport = ScriptedTransport(json_response(session_response()))
    # when
    session = provider(transport=transport).create_session(
        checkout_id=CHECKOUT_ID,
        amount_minor=1500,
        currency="EUR",
        email="shopper@example.com",
        description="3 photos, Spring Gala",
        success_url="https://darkroom.test/checkouts/x/done",
        cancel_url="https://darkroom.test/checkouts/x/cancelled",
    )
    # then: the provider's session is returned
    assert (session.reference, session.payment_url) == ("cs_test_a1", "https://checkout.stripe.com/c/pay/cs_test_a1")
    # and: exactly one form-encoded POST to the Checkout Sessions endpoint
    [request] = transport.requests
    assert (request.method, path(request)) == ("POST", "https://api.stripe.com/v1/checkout/sessions")
    assert request.header("Idempotency-Key") == CHECKOUT_ID
    assert request.header("Authorization") == "Bearer sk_test_local_xxxxxxxx"
    assert request.header("Content-Type") == "application/x-www-form-urlencoded"
    form = form_body(request)
    assert form["mode"] == ["payment"]
    assert form["client_reference_id"] == [CHECKOUT_ID]
    assert form["metadata[checkout_id]"] == [CHECKOUT_ID]
    assert form["payment_intent_data[metadata][checkout_id]"] == [CHECKOUT_ID]
    assert form["line_items[0][price_data][unit_amount]"] == ["1500"]
    assert form["line_items[0][price_data][currency]"] == ["eur"]
    assert form["line_items[0][price_data][product_data][name]"] == ["3 photos, Spring Gala"]
    assert form["line_items[0][quantity]"] == ["1"]
    assert form["customer_email"] == ["shopper@example.com"]
    assert form["success_url"] == ["https://darkroom.test/checkouts/x/done"]
    assert form["cancel_url"] == ["https://darkroom.test/checkouts/x/cancelled"]


def test_a_retried_create_keeps_the_same_idempotency_key():
    # given: Stripe answers 500 once, then the session
    transport = ScriptedTransport(
        json_response({"error": {"type": "api_error", "message": "boom"}}, status=500),
        json_response(session_response()),
    )
    # when: the client is allowed one network retry
    session = provider(transport=transport, retries=1).create_session(
        checkout_id=CHECKOUT_ID,
        amount_minor=1500,
        currency="eur",
        email="shopper@example.com",
        description="order",
        success_url="https://darkroom.test/ok",
        cancel_url="https://darkroom.test/no",
    )
    # then: both attempts carried the checkout id, so Stripe creates one session
    assert session.reference == "cs_test_a1"
    assert [r.header("Idempotency-Key") for r in transport.requests] == [CHECKOUT_ID, CHECKOUT_ID]


@pytest.mark.parametrize(
    ("response", "retryable"),
    [
        (json_response({"error": {"type": "api_error", "message": "down"}}, status=503), True),
        (json_response({"error": {"type": "invalid_request_error", "message": "bad"}}, status=400), False),
        (TransportError("connection refused"), True),
    ],
)
def test_create_session_failures_become_provider_errors(response, retryable):
    adapter = provider(transport=ScriptedTransport(response))
    with pytest.raises(ProviderError) as caught:
        adapter.create_session(
            checkout_id=CHECKOUT_ID,
            amount_minor=100,
            currency="USD",
            email="a@example.com",
            description="d",
            success_url="https://darkroom.test/ok",
            cancel_url="https://darkroom.test/no",
        )
    assert caught.value.retryable is retryable
    assert caught.value.provider == "stripe"


@pytest.mark.parametrize(
    ("session", "status"),
    [
        ({"status": "open", "payment_status": "unpaid", "payment_intent": None}, PaymentStatus.PENDING),
        (
            {
                "status": "complete",
                "payment_status": "paid",
                "payment_intent": {"id": "pi_1", "object": "payment_intent", "status": "succeeded",
                                   "latest_charge": {"id": "ch_1", "object": "charge", "refunded": False}},
            },
            PaymentStatus.PAID,
        ),
        (
            {
                "status": "complete",
                "payment_status": "paid",
                "payment_intent": {"id": "pi_1", "object": "payment_intent", "status": "succeeded",
                                   "latest_charge": {"id": "ch_1", "object": "charge", "refunded": True}},
            },
            PaymentStatus.REFUNDED,
        ),
        ({"status": "expired", "payment_status": "unpaid", "payment_intent": None}, PaymentStatus.EXPIRED),
    ],
)  # fmt: skip
def test_fetch_status_retrieves_the_session_with_its_charge(session, status):
    transport = ScriptedTransport(json_response(session_response(amount_total=1500, currency="eur", **session)))
    state = provider(transport=transport).fetch_status(reference="cs_test_a1")
    assert state.status == status
    assert (state.amount_minor, state.currency) == (1500, "EUR")
    [request] = transport.requests
    assert (request.method, path(request)) == ("GET", "https://api.stripe.com/v1/checkout/sessions/cs_test_a1")
    assert query(request)["expand[0]"] == ["payment_intent.latest_charge"]


def test_refund_refunds_the_sessions_payment_intent_with_the_idempotency_key():
    transport = ScriptedTransport(
        json_response(session_response(payment_intent="pi_1")),
        json_response({"id": "re_1", "object": "refund", "status": "succeeded", "amount": 500, "currency": "eur"}),
    )
    result = provider(transport=transport).refund(reference="cs_test_a1", amount_minor=500, idempotency_key="refund-7")
    assert (result.refund_id, result.status, result.amount_minor, result.currency) == (
        "re_1",
        PaymentStatus.REFUNDED,
        500,
        "EUR",
    )
    retrieve, create = transport.requests
    assert retrieve.method == "GET"
    assert (create.method, path(create)) == ("POST", "https://api.stripe.com/v1/refunds")
    assert create.header("Idempotency-Key") == "refund-7"
    form = form_body(create)
    assert (form["payment_intent"], form["amount"]) == (["pi_1"], ["500"])


# --- ISK: zero decimals in ISO 4217 (Darkroom's minor units), two in Stripe's API --------------


def test_an_isk_session_charges_the_whole_price_in_stripes_two_decimal_isk():
    # given: a 5,000 ISK checkout (ISO 4217: no decimals, so 5000 minor units); Stripe keeps ISK
    # as a two-decimal currency in its API ("an ISK amount of 100 represents 1 króna")
    transport = ScriptedTransport(json_response(session_response()))
    # when: its session is created
    provider(transport=transport).create_session(
        checkout_id=CHECKOUT_ID,
        amount_minor=5000,
        currency="ISK",
        email="shopper@example.com",
        description="Spring Gala",
        success_url="https://darkroom.test/done",
        cancel_url="https://darkroom.test/cancel",
    )
    # then: Stripe is asked for 5,000 króna, not 50
    assert form_body(transport.requests[0])["line_items[0][price_data][unit_amount]"] == ["500000"]


def test_isk_amounts_stripe_reports_are_read_back_in_darkroom_minor_units():
    adapter = provider(make_secret())
    paid = adapter.parse_webhook(
        body=event("checkout.session.completed", {**SESSION, "amount_total": 500000, "currency": "isk"}), headers={}
    )
    assert (paid.amount_minor, paid.currency) == (5000, "ISK")
    refunded = adapter.parse_webhook(
        body=event("refund.updated", refund_object("succeeded", amount=120000, currency="isk")), headers={}
    )
    assert (refunded.amount_minor, refunded.refund_amount_minor) == (1200, 1200)
    # a fraction of a króna cannot have been charged for a Darkroom checkout: not an amount
    odd = adapter.parse_webhook(
        body=event("checkout.session.completed", {**SESSION, "amount_total": 500050, "currency": "isk"}), headers={}
    )
    assert odd.amount_minor is None


def test_an_isk_refund_asks_stripe_for_the_amount_in_its_two_decimal_isk():
    transport = ScriptedTransport(
        json_response(session_response(payment_intent="pi_1", currency="isk", amount_total=500000)),
        json_response({"id": "re_1", "object": "refund", "status": "pending", "amount": 120000, "currency": "isk"}),
    )
    result = provider(transport=transport).refund(reference="cs_test_a1", amount_minor=1200, idempotency_key="r-1")
    assert form_body(transport.requests[1])["amount"] == ["120000"]
    assert (result.amount_minor, result.currency) == (1200, "ISK")


# --- three-decimal currencies: Stripe takes amounts ending in 0 only --------------------------


def create_session(adapter: StripeProvider, *, amount_minor: int, currency: str) -> Any:
    return adapter.create_session(
        checkout_id=CHECKOUT_ID,
        amount_minor=amount_minor,
        currency=currency,
        email="shopper@example.com",
        description="Spring Gala",
        success_url="https://darkroom.test/done",
        cancel_url="https://darkroom.test/cancel",
    )


@pytest.mark.parametrize("currency", ["KWD", "BHD", "JOD", "OMR", "TND"])
def test_a_three_decimal_amount_not_ending_in_zero_is_refused_before_anything_is_sent(currency):
    # given: a checkout of 5.124 in a three-decimal currency; Stripe requires such amounts to end
    # in 0 ("5.124 KWD must be rounded to 5120 or 5130")
    transport = ScriptedTransport()
    # when: its session is asked for
    with pytest.raises(ProviderError, match="ending in 0") as caught:
        create_session(provider(transport=transport), amount_minor=5124, currency=currency)
    # then: refused for good, and Stripe was not asked
    assert caught.value.retryable is False
    assert transport.requests == []


def test_a_three_decimal_amount_ending_in_zero_is_charged_as_it_is():
    transport = ScriptedTransport(json_response(session_response()))
    create_session(provider(transport=transport), amount_minor=5120, currency="KWD")
    assert form_body(transport.requests[0])["line_items[0][price_data][unit_amount]"] == ["5120"]


def test_a_three_decimal_refund_not_ending_in_zero_is_refused_before_it_is_sent():
    # given: a paid KWD session (only read back for its payment and currency)
    transport = ScriptedTransport(
        json_response(session_response(payment_intent="pi_1", currency="kwd", amount_total=5120))
    )
    # when: 1.005 KWD of it is to be refunded
    with pytest.raises(ProviderError, match="ending in 0") as caught:
        provider(transport=transport).refund(reference="cs_test_a1", amount_minor=1005, idempotency_key="r-1")
    # then: refused for good; no refund was asked for
    assert caught.value.retryable is False
    assert [request.method for request in transport.requests] == ["GET"]
