"""POST /webhooks/<provider>: signatures checked on the raw bytes through the real endpoint;
refused deliveries record nothing; accepted ones record one event and one outbox message."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from django.test import Client

from apps.outbox.models import OutboxMessage
from apps.payments.models import WebhookEvent
from apps.payments.providers.base import PaymentStatus
from apps.payments.providers.sandbox import build_event
from tests.commerce.helpers import system_count
from tests.payments import signing_helpers as sign

pytestmark = pytest.mark.django_db(transaction=True)


def post(provider: str, body: bytes, headers: dict[str, str]) -> object:
    content_type = headers.pop("Content-Type", "application/json")
    return Client().post(f"/webhooks/{provider}", data=body, content_type=content_type, headers=headers)


def recorded() -> tuple[int, int]:
    return (
        system_count(lambda: WebhookEvent.objects.all()),
        system_count(lambda: OutboxMessage.objects.filter(topic="webhook.received")),
    )


def sandbox_body(*, event_id: str | None = None, event_type: str = "payment.paid") -> bytes:
    checkout_id = str(uuid.uuid4())
    event = build_event(
        status=PaymentStatus.PAID,
        reference=f"sbx_{checkout_id}",
        checkout_id=checkout_id,
        amount_minor=900,
        currency="EUR",
        event_id=event_id,
    )
    if event_type == "payment.paid":
        return event.body
    data = json.loads(event.body)
    data["type"] = event_type
    return json.dumps(data).encode()


def test_valid_deliveries_of_every_provider_are_recorded_once_with_an_outbox_message():
    # given: one correctly signed delivery per provider
    key = sign.paypal_key()
    sign.paypal_trust(key)
    stripe_body = sign.stripe_session_completed(checkout_id=str(uuid.uuid4()), amount_minor=900)
    flutterwave_body = sign.flutterwave_charge_completed(checkout_id=str(uuid.uuid4()))
    paypal_body = sign.paypal_capture_completed(checkout_id=str(uuid.uuid4()))
    sandbox = sandbox_body()
    deliveries = [
        ("stripe", stripe_body, sign.stripe_headers(stripe_body)),
        ("flutterwave", flutterwave_body, sign.flutterwave_headers(flutterwave_body)),
        ("paypal", paypal_body, sign.paypal_headers(paypal_body, key)),
        ("sandbox", sandbox, sign.sandbox_headers(sandbox)),
    ]
    for provider, body, headers in deliveries:
        # when: it is posted to the endpoint
        response = post(provider, body, headers)
        # then: 200, recorded
        assert response.status_code == 200, (provider, response.content)
        assert response.json()["duplicate"] is False
    # and: one event and one outbox message each, with the raw bytes, untenanted until processed
    assert recorded() == (4, 4)
    from apps.tenancy.context import system_context

    with system_context("test"):
        event = WebhookEvent.objects.get(provider="stripe")
    assert bytes(event.raw_body) == stripe_body
    assert event.tenant_id is None and event.status == "received"
    assert "Stripe-Signature" in event.headers


@pytest.mark.parametrize(
    "name",
    [
        "sandbox tampered body",
        "sandbox wrong secret",
        "sandbox missing signature",
        "stripe tampered body",
        "stripe wrong secret",
        "stripe expired timestamp",
        "stripe future timestamp",
        "flutterwave wrong hash",
        "paypal certificate from a host not on the allow-list",
        "paypal tampered body",
    ],
)
def test_refused_signatures_answer_400_and_record_nothing(name):
    # given: a delivery that fails authentication in one way
    key = sign.paypal_key()
    sign.paypal_trust(key)
    sandbox = sandbox_body()
    stripe_body = sign.stripe_session_completed(checkout_id=str(uuid.uuid4()), amount_minor=900)
    flutterwave_body = sign.flutterwave_charge_completed(checkout_id=str(uuid.uuid4()))
    paypal_body = sign.paypal_capture_completed(checkout_id=str(uuid.uuid4()))
    cases = {
        "sandbox tampered body": ("sandbox", sandbox.replace(b"900", b"1"), sign.sandbox_headers(sandbox)),
        "sandbox wrong secret": ("sandbox", sandbox, sign.sandbox_headers(sandbox, secret="not-the-secret")),
        "sandbox missing signature": ("sandbox", sandbox, {"Content-Type": "application/json"}),
        "stripe tampered body": (
            "stripe",
            stripe_body.replace(b'"paid"', b'"unpaid"'),
            sign.stripe_headers(stripe_body),
        ),
        "stripe wrong secret": ("stripe", stripe_body, sign.stripe_headers(stripe_body, secret="whsec_wrong")),
        "stripe expired timestamp": (
            "stripe",
            stripe_body,
            sign.stripe_headers(stripe_body, timestamp=int(time.time()) - 301),
        ),
        "stripe future timestamp": (
            "stripe",
            stripe_body,
            sign.stripe_headers(stripe_body, timestamp=int(time.time()) + 3600),
        ),
        "flutterwave wrong hash": (
            "flutterwave",
            flutterwave_body,
            sign.flutterwave_headers(flutterwave_body, secret_hash="wrong"),
        ),
        "paypal certificate from a host not on the allow-list": (
            "paypal",
            paypal_body,
            sign.paypal_headers(paypal_body, key, cert_url="https://evil.example.com/certs/CERT-1"),
        ),
        "paypal tampered body": (
            "paypal",
            paypal_body.replace(b"9.00", b"0.01"),
            sign.paypal_headers(paypal_body, key),
        ),
    }
    provider, body, headers = cases[name]
    # when: it is posted
    response = post(provider, body, headers)
    # then: a 400 problem saying why, and no event, no outbox message
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/invalid-webhook-signature"
    assert recorded() == (0, 0)


def test_duplicate_delivery_answers_200_and_records_nothing_more():
    body = sandbox_body(event_id="evt_sbx_duplicate_1")
    first = post("sandbox", body, sign.sandbox_headers(body))
    second = post("sandbox", body, sign.sandbox_headers(body))
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.json()["duplicate"], second.json()["duplicate"]) == (False, True)
    assert recorded() == (1, 1)


def test_unknown_event_type_is_recorded_then_ignored_by_processing():
    from tests.commerce.helpers import drain_outbox

    # given: an authentic delivery of an event type Darkroom does not act on
    body = sandbox_body(event_type="payment.disputed")
    # when: it is posted and processed
    assert post("sandbox", body, sign.sandbox_headers(body)).status_code == 200
    assert drain_outbox() == ["webhook.received"]
    # then: recorded and marked ignored, nothing else happened
    from apps.tenancy.context import system_context

    with system_context("test"):
        event = WebhookEvent.objects.get()
    assert (event.status, event.event_type, event.payment_status) == ("ignored", "payment.disputed", "unknown")


def test_oversize_body_is_413_and_records_nothing():
    body = b'{"id": "evt_big", "pad": "' + b"x" * (1_048_576 + 10) + b'"}'
    response = post("sandbox", body, sign.sandbox_headers(body))
    assert response.status_code == 413
    assert recorded() == (0, 0)


def test_unknown_provider_is_404_and_get_is_not_allowed():
    body = sandbox_body()
    assert post("bitpay", body, sign.sandbox_headers(body)).status_code == 404
    refused = Client().get("/webhooks/sandbox")
    assert (refused.status_code, refused["Content-Type"], refused["Allow"]) == (405, "application/problem+json", "POST")
    assert refused.json()["type"] == "/problems/method-not-allowed"
    assert recorded() == (0, 0)


def test_malformed_but_signed_body_is_400_and_records_nothing():
    body = b"[1, 2, 3]"
    response = post("sandbox", body, sign.sandbox_headers(body))
    assert (response.status_code, response.json()["type"]) == (400, "/problems/malformed-webhook")
    assert recorded() == (0, 0)


def test_webhooks_need_no_csrf_token_and_ignore_session_cookies(tenant_a):
    # given: a client that enforces CSRF and carries a signed-in session
    client = Client(enforce_csrf_checks=True)
    client.force_login(tenant_a.owner)
    body = sandbox_body()
    headers = sign.sandbox_headers(body)
    headers.pop("Content-Type")
    # when: a signed delivery is posted
    response = client.post("/webhooks/sandbox", data=body, content_type="application/json", headers=headers)
    # then: accepted; the stored headers keep no cookie
    assert response.status_code == 200
    from apps.tenancy.context import system_context

    with system_context("test"):
        stored = WebhookEvent.objects.get().headers
    assert not any(name.lower() == "cookie" for name in stored)
