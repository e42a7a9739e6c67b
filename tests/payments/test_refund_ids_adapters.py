"""Partial refunds on the real adapters: each refund sends the part it is given, in the provider's
format, and comes back with the provider's id for that refund (real HTTP to local fakes of the
Stripe, PayPal and Flutterwave refund APIs); and each provider's refund event says which refund
it is about (`WebhookEnvelope.refund_id`) and how much is refunded (`amount_minor`).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from apps.payments.providers.base import PaymentStatus, WebhookEnvelope
from apps.payments.providers.flutterwave import FlutterwaveProvider
from apps.payments.providers.paypal import PayPalProvider
from apps.payments.providers.stripe import StripeProvider
from tests.payments.test_payout_adapters import Answer, FakeApi, Seen, ToFake, ToLoopback

TIMEOUT = 10.0

# --- Stripe: POST /v1/refunds ------------------------------------------------------------------

STRIPE_KEY = "sk_test_local_" + "r" * 8
SESSION_ID = "cs_test_a1b2c3"


class FakeStripeRefunds(FakeApi):
    """A Checkout Session paid by PaymentIntent pi_1 (EUR 15.00) and Stripe's Refunds API: the
    idempotency key replays the first answer; refunds may not exceed what is left of the charge."""

    def reset(self) -> None:
        super().reset()
        self.refunds: list[dict[str, Any]] = []
        self._keys: dict[str, Answer] = {}

    def answer(self, seen: Seen) -> Answer:
        assert seen.headers.get("authorization") == f"Bearer {STRIPE_KEY}"
        if seen.method == "GET":
            assert seen.path == f"/v1/checkout/sessions/{SESSION_ID}"
            session = {
                "id": SESSION_ID,
                "object": "checkout.session",
                "status": "complete",
                "payment_status": "paid",
                "payment_intent": "pi_1",
                "amount_total": 1500,
                "currency": "eur",
            }
            return 200, session
        assert (seen.method, seen.path) == ("POST", "/v1/refunds")
        key = seen.headers.get("idempotency-key")
        assert key, "every refund carries an Idempotency-Key"
        if key in self._keys:
            return self._keys[key]
        form = seen.form()
        assert form["payment_intent"] == "pi_1"
        assert re.fullmatch(r"[1-9][0-9]*", form["amount"]), "amount is an integer in minor units"
        amount = int(form["amount"])
        if sum(refund["amount"] for refund in self.refunds) + amount > 1500:
            error = {"type": "invalid_request_error", "message": "Refund amount is greater than unrefunded amount"}
            return 400, {"error": error}
        refund = {
            "id": f"re_{secrets.token_hex(8)}",
            "object": "refund",
            "amount": amount,
            "charge": "ch_1",
            "currency": "eur",
            "payment_intent": "pi_1",
            "status": "succeeded",
            "metadata": {"session": form.get("metadata[session]", "")},
        }
        self.refunds.append(refund)
        self._keys[key] = (200, refund)
        return 200, refund


@pytest.fixture(scope="module")
def stripe_server() -> Iterator[tuple[FakeStripeRefunds, str]]:
    fake = FakeStripeRefunds()
    with fake.running() as base:
        yield fake, base


@pytest.fixture
def stripe_fake(stripe_server) -> Iterator[tuple[FakeStripeRefunds, StripeProvider]]:
    fake, base = stripe_server
    fake.reset()
    adapter = StripeProvider(
        secret_key=STRIPE_KEY,
        webhook_secrets=["whsec_unused"],
        transport=ToFake(base, fake=fake),
        timeout=TIMEOUT,
        max_network_retries=0,
    )
    yield fake, adapter
    assert fake.violations == []


def test_stripe_refunds_a_payment_in_parts_each_with_its_amount_and_id(stripe_fake):
    fake, adapter = stripe_fake
    # when: two lines of a EUR 15.00 order are refunded, then the first refund is retried
    first = adapter.refund(reference=SESSION_ID, amount_minor=500, idempotency_key="refund-1")
    second = adapter.refund(reference=SESSION_ID, amount_minor=700, idempotency_key="refund-2")
    again = adapter.refund(reference=SESSION_ID, amount_minor=500, idempotency_key="refund-1")
    # then: Stripe made two refunds of the amounts sent, and each result is its refund
    assert [(refund["id"], refund["amount"]) for refund in fake.refunds] == [
        (first.refund_id, 500),
        (second.refund_id, 700),
    ]
    assert (first.amount_minor, second.amount_minor, first.currency) == (500, 700, "EUR")
    assert again == first
    posts = fake.requests_to("POST", "/v1/refunds")
    assert [(post.form()["amount"], post.headers["idempotency-key"]) for post in posts] == [
        ("500", "refund-1"),
        ("700", "refund-2"),
        ("500", "refund-1"),
    ]


# --- PayPal: POST /v2/payments/captures/<id>/refund --------------------------------------------

PAYPAL_CLIENT = ("client-local", "secret-local")
ORDER_ID = "5O190127TN364715T"
CAPTURE_ID = "2GG279541U471931P"
CHECKOUT_ID = "7d1c0b9a-8e7f-4a6b-9c5d-4e3f2a1b0c9d"


class FakePayPalRefunds(FakeApi):
    """PayPal's token endpoint, an order captured in JPY (a currency without decimals) and the
    capture refund API: `PayPal-Request-Id` replays the first answer; refunds may not exceed the
    capture (422 REFUND_AMOUNT_EXCEEDED); the capture becomes PARTIALLY_REFUNDED, then REFUNDED."""

    currency = "JPY"
    captured = Decimal(5000)

    def reset(self) -> None:
        super().reset()
        self.token = f"A21AAF-{secrets.token_hex(8)}"
        self.refunds: list[dict[str, Any]] = []
        self._by_request_id: dict[str, Answer] = {}

    def refunded(self) -> Decimal:
        return sum((Decimal(refund["amount"]["value"]) for refund in self.refunds), Decimal(0))

    def capture_status(self) -> str:
        if not self.refunds:
            return "COMPLETED"
        return "REFUNDED" if self.refunded() == self.captured else "PARTIALLY_REFUNDED"

    def answer(self, seen: Seen) -> Answer:
        if seen.path == "/v1/oauth2/token":
            return 200, {"access_token": self.token, "token_type": "Bearer", "expires_in": 32400}
        assert seen.headers.get("authorization") == f"Bearer {self.token}"
        if seen.method == "GET":
            assert seen.path == f"/v2/checkout/orders/{ORDER_ID}"
            money = {"currency_code": self.currency, "value": str(self.captured)}
            capture = {"id": CAPTURE_ID, "status": self.capture_status(), "amount": money}
            unit = {"reference_id": CHECKOUT_ID, "custom_id": CHECKOUT_ID, "amount": money}
            unit["payments"] = {"captures": [capture]}
            return 200, {"id": ORDER_ID, "status": "COMPLETED", "purchase_units": [unit]}
        assert (seen.method, seen.path) == ("POST", f"/v2/payments/captures/{CAPTURE_ID}/refund")
        request_id = seen.headers.get("paypal-request-id")
        assert request_id, "every refund carries a PayPal-Request-Id"
        if request_id in self._by_request_id:
            return self._by_request_id[request_id]
        body = seen.json()
        amount = body["amount"]
        assert amount["currency_code"] == self.currency, "a capture is refunded in its own currency"
        assert re.fullmatch(r"[1-9][0-9]*", amount["value"]), "JPY has no decimals"
        if self.refunded() + Decimal(amount["value"]) > self.captured:
            issue = {"issue": "REFUND_AMOUNT_EXCEEDED", "description": "The refund amount exceeds the capture."}
            return 422, {"name": "UNPROCESSABLE_ENTITY", "details": [issue]}
        refund_id = secrets.token_hex(8).upper()
        refund = {"id": refund_id, "status": "COMPLETED", "amount": amount, "custom_id": body.get("custom_id")}
        self.refunds.append(refund)
        answer: Answer = (201, refund)
        self._by_request_id[request_id] = answer
        return answer


@pytest.fixture(scope="module")
def paypal_server() -> Iterator[tuple[FakePayPalRefunds, str]]:
    fake = FakePayPalRefunds()
    with fake.running() as base:
        yield fake, base


@pytest.fixture
def paypal_fake(paypal_server) -> Iterator[tuple[FakePayPalRefunds, PayPalProvider]]:
    fake, base = paypal_server
    fake.reset()
    client_id, client_secret = PAYPAL_CLIENT
    adapter = PayPalProvider(
        client_id=client_id,
        client_secret=client_secret,
        webhook_id="WH-unused",
        api_base=base,
        transport=ToLoopback(fake),
        timeout=TIMEOUT,
    )
    yield fake, adapter
    assert fake.violations == []


def test_paypal_refunds_a_capture_in_parts_in_its_currency(paypal_fake):
    fake, adapter = paypal_fake
    # when: JPY 1,200 of a JPY 5,000 capture is refunded, then JPY 800 of the partly refunded one
    first = adapter.refund(reference=ORDER_ID, amount_minor=1200, idempotency_key="refund-1")
    second = adapter.refund(reference=ORDER_ID, amount_minor=800, idempotency_key="refund-2")
    # then: two refunds of the capture, each of the amount sent, each result naming its refund
    assert [(refund["id"], refund["amount"]) for refund in fake.refunds] == [
        (first.refund_id, {"currency_code": "JPY", "value": "1200"}),
        (second.refund_id, {"currency_code": "JPY", "value": "800"}),
    ]
    assert (first.amount_minor, second.amount_minor, second.currency) == (1200, 800, "JPY")
    assert first.status == second.status == PaymentStatus.REFUNDED
    posts = fake.requests_to("POST", f"/v2/payments/captures/{CAPTURE_ID}/refund")
    assert [post.headers["paypal-request-id"] for post in posts] == ["refund-1", "refund-2"]
    assert all(post.json()["custom_id"] == CHECKOUT_ID for post in posts)
    # and: the capture is partly refunded, so the order still reads as paid
    assert adapter.fetch_status(reference=ORDER_ID).status == PaymentStatus.PAID


# --- Flutterwave: POST /v3/transactions/<id>/refund --------------------------------------------

FLW_KEY = "FLWSECK_TEST-" + "r" * 32 + "-X"
TX_REF = "0b8e6f3c-2d41-4f7a-b1c9-8a7e6d5c4b3a"


class FakeFlutterwaveRefunds(FakeApi):
    """Flutterwave's v3 verify-by-reference (transaction 42, NGN 150.50) and refund endpoint,
    whose `amount` is a JSON number in major units (as documented); `X-Idempotency-Key` replays
    the first answer; refunds may not exceed the transaction."""

    def reset(self) -> None:
        super().reset()
        self.refunds: list[dict[str, Any]] = []
        self._keys: dict[str, Answer] = {}

    def answer(self, seen: Seen) -> Answer:
        assert seen.headers.get("authorization") == f"Bearer {FLW_KEY}"
        if seen.method == "GET":
            assert seen.path == "/v3/transactions/verify_by_reference"
            assert seen.query == {"tx_ref": [TX_REF]}
            transaction = {"id": 42, "tx_ref": TX_REF, "status": "successful", "amount": 150.5, "currency": "NGN"}
            return 200, {"status": "success", "message": "Transaction fetched successfully", "data": transaction}
        assert (seen.method, seen.path) == ("POST", "/v3/transactions/42/refund")
        key = seen.headers.get("x-idempotency-key")
        assert key, "every refund carries an X-Idempotency-Key"
        if key in self._keys:
            return self._keys[key]
        amount = seen.json()["amount"]
        assert isinstance(amount, int | Decimal) and not isinstance(amount, bool), "amount is a JSON number"
        if sum((Decimal(refund["amount_refunded"]) for refund in self.refunds), Decimal(0)) + amount > Decimal("150.5"):
            return 400, {"status": "error", "message": "Refund amount exceeds the transaction amount", "data": None}
        refund = {
            "id": 75923 + len(self.refunds),
            "tx_id": 42,
            "flw_ref": f"URF_{secrets.token_hex(6)}",
            "amount_refunded": str(amount),
            "status": "completed",
            "destination": "payment_source",
        }
        self.refunds.append(refund)
        data = {**refund, "amount_refunded": float(amount)}
        answer: Answer = (200, {"status": "success", "message": "Transaction refund initiated", "data": data})
        self._keys[key] = answer
        return answer


@pytest.fixture(scope="module")
def flutterwave_server() -> Iterator[tuple[FakeFlutterwaveRefunds, str]]:
    fake = FakeFlutterwaveRefunds()
    with fake.running() as base:
        yield fake, base


@pytest.fixture
def flutterwave_fake(flutterwave_server) -> Iterator[tuple[FakeFlutterwaveRefunds, FlutterwaveProvider]]:
    fake, base = flutterwave_server
    fake.reset()
    adapter = FlutterwaveProvider(
        secret_key=FLW_KEY, secret_hash="", api_base=f"{base}/v3", transport=ToLoopback(fake), timeout=TIMEOUT
    )
    yield fake, adapter
    assert fake.violations == []


def test_flutterwave_refunds_a_transaction_in_parts_with_amounts_as_json_numbers(flutterwave_fake):
    fake, adapter = flutterwave_fake
    # when: NGN 20.25 and NGN 30.00 of an NGN 150.50 payment are refunded
    first = adapter.refund(reference=TX_REF, amount_minor=2025, idempotency_key="refund-1")
    second = adapter.refund(reference=TX_REF, amount_minor=3000, idempotency_key="refund-2")
    # then: two refunds of the amounts sent, each result naming its refund
    assert [(str(refund["id"]), refund["amount_refunded"]) for refund in fake.refunds] == [
        (first.refund_id, "20.25"),
        (second.refund_id, "30"),
    ]
    assert (first.amount_minor, second.amount_minor, first.currency) == (2025, 3000, "NGN")
    posts = fake.requests_to("POST", "/v3/transactions/42/refund")
    assert [json.loads(post.body) for post in posts] == [{"amount": 20.25}, {"amount": 30}]
    assert [post.headers["x-idempotency-key"] for post in posts] == ["refund-1", "refund-2"]


# --- refund events name their refund -----------------------------------------------------------


def paypal_refund_event(event_type: str, refund_id: str, value: str, total: str | None) -> bytes:
    """PayPal's PAYMENT.CAPTURE.REFUNDED/REVERSED: the resource is the refund; its `up` link is
    the capture, and `seller_payable_breakdown.total_refunded_amount` the capture's total."""
    resource: dict[str, Any] = {
        "id": refund_id,
        "status": "COMPLETED",
        "amount": {"currency_code": "EUR", "value": value},
        "custom_id": CHECKOUT_ID,
        "links": [
            {"rel": "self", "href": f"https://api.paypal.com/v2/payments/refunds/{refund_id}", "method": "GET"},
            {"rel": "up", "href": f"https://api.paypal.com/v2/payments/captures/{CAPTURE_ID}", "method": "GET"},
        ],
    }
    if total is not None:
        resource["seller_payable_breakdown"] = {"total_refunded_amount": {"currency_code": "EUR", "value": total}}
    event = {
        "id": f"WH-{refund_id}",
        "event_version": "1.0",
        "create_time": "2025-06-16T09:00:00.000Z",
        "resource_type": "refund",
        "event_type": event_type,
        "resource": resource,
    }
    return json.dumps(event).encode()


def paypal_parse(body: bytes) -> WebhookEnvelope:
    client_id, client_secret = PAYPAL_CLIENT
    adapter = PayPalProvider(client_id=client_id, client_secret=client_secret, webhook_id="WH-unused")
    return adapter.parse_webhook(body=body, headers={})


def test_paypal_refund_events_name_their_refund_and_the_captures_total():
    # given: two partial refunds of one EUR 15.00 capture, each announced by PayPal
    first = paypal_parse(paypal_refund_event("PAYMENT.CAPTURE.REFUNDED", "1JU08902781691411", "5.00", "5.00"))
    second = paypal_parse(paypal_refund_event("PAYMENT.CAPTURE.REFUNDED", "8AC61372WH839483E", "7.00", "12.00"))
    # then: each names its refund; the amount is the capture's refunded total
    assert (first.status, first.refund_id, first.amount_minor) == (PaymentStatus.REFUNDED, "1JU08902781691411", 500)
    assert (second.status, second.refund_id, second.amount_minor) == (PaymentStatus.REFUNDED, "8AC61372WH839483E", 1200)
    assert first.payment_id == second.payment_id == CAPTURE_ID
    # and: each says its own amount apart (a refund made in PayPal is recorded by it)
    assert (first.refund_amount_minor, second.refund_amount_minor) == (500, 700)
    # and: without the breakdown the amount is the refund's own; a reversal names its refund too
    own = paypal_parse(paypal_refund_event("PAYMENT.CAPTURE.REFUNDED", "3RF1", "7.00", None))
    reversed_ = paypal_parse(paypal_refund_event("PAYMENT.CAPTURE.REVERSED", "4RV1", "15.00", "15.00"))
    assert (own.refund_id, own.amount_minor) == ("3RF1", 700)
    assert (reversed_.status, reversed_.refund_id, reversed_.amount_minor) == (PaymentStatus.REFUNDED, "4RV1", 1500)


def test_paypal_capture_events_name_no_refund():
    capture = {
        "id": CAPTURE_ID,
        "status": "COMPLETED",
        "amount": {"currency_code": "EUR", "value": "15.00"},
        "custom_id": CHECKOUT_ID,
    }
    event = {"id": "WH-C1", "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": capture}
    envelope = paypal_parse(json.dumps(event).encode())
    assert (envelope.status, envelope.payment_id, envelope.refund_id) == (PaymentStatus.PAID, CAPTURE_ID, None)


def flutterwave_parse(payload: dict[str, Any]) -> WebhookEnvelope:
    adapter = FlutterwaveProvider(secret_key=FLW_KEY, secret_hash="")
    return adapter.parse_webhook(body=json.dumps(payload).encode(), headers={})


def test_flutterwave_refund_events_name_their_refund_and_its_own_amount():
    # given: two refunds of transaction 285959875, as Flutterwave's v3 refund.completed sends them
    def refund_completed(refund_id: int, amount: int) -> dict[str, Any]:
        data = {
            "id": refund_id,
            "AmountRefunded": amount,
            "status": "completed",
            "FlwRef": f"URF_{refund_id}",
            "destination": "payment_source",
            "TransactionId": 285959875,
            "tx_ref": TX_REF,
            "currency": "NGN",
            "createdAt": "2025-06-16T09:00:00.000Z",
        }
        return {"event": "refund.completed", "data": data, "event.type": "Refund"}

    first, second = flutterwave_parse(refund_completed(609188, 20)), flutterwave_parse(refund_completed(609190, 30))
    # then: each names its refund, with that refund's amount, and has its own event id
    assert (first.status, first.refund_id, first.amount_minor) == (PaymentStatus.REFUNDED, "609188", 2000)
    assert (second.status, second.refund_id, second.amount_minor) == (PaymentStatus.REFUNDED, "609190", 3000)
    assert first.event_id != second.event_id
    assert first.payment_id == second.payment_id == "285959875"
    assert (first.refund_amount_minor, second.refund_amount_minor) == (2000, 3000)


def test_flutterwave_charge_events_name_no_refund():
    data = {"id": 285959875, "tx_ref": TX_REF, "amount": 150.5, "currency": "NGN", "status": "successful"}
    envelope = flutterwave_parse({"event": "charge.completed", "data": data})
    assert (envelope.status, envelope.payment_id, envelope.refund_id) == (PaymentStatus.PAID, "285959875", None)


def test_stripe_refund_events_name_the_refunds_the_api_made_with_their_own_amounts(stripe_fake):
    # given: two refunds made through the fake Refunds API (5.00, then 7.00)
    fake, adapter = stripe_fake
    first = adapter.refund(reference=SESSION_ID, amount_minor=500, idempotency_key="refund:a")
    second = adapter.refund(reference=SESSION_ID, amount_minor=700, idempotency_key="refund:b")

    # when: Stripe announces each with refund.updated, the refund as its object
    def announced(refund: dict[str, Any], n: int) -> WebhookEnvelope:
        payload = {"id": f"evt_r{n}", "object": "event", "type": "refund.updated", "data": {"object": refund}}
        return adapter.parse_webhook(body=json.dumps(payload).encode(), headers={})

    one, two = (announced(refund, n) for n, refund in enumerate(fake.refunds))
    # then: each names the refund the API call returned, with that refund's own amount, and the
    # session the refund was made for
    assert (one.refund_id, one.amount_minor, one.reference) == (first.refund_id, 500, SESSION_ID)
    assert (two.refund_id, two.amount_minor, two.reference) == (second.refund_id, 700, SESSION_ID)
    assert one.status == two.status == PaymentStatus.REFUNDED


def test_an_envelope_whose_refund_id_postgres_cannot_store_says_so():
    envelope = WebhookEnvelope(
        provider="sandbox", event_id="evt_1", event_type="payment.refunded", status=PaymentStatus.REFUNDED
    )
    assert envelope.unstorable_fields() == []
    bad = WebhookEnvelope(
        provider="sandbox",
        event_id="evt_1",
        event_type="payment.refunded",
        status=PaymentStatus.REFUNDED,
        refund_id="re_\x00",
    )
    assert bad.unstorable_fields() == ["refund_id"]
