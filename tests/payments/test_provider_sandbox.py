"""Sandbox provider and its webhook sender: signed deliveries that the sandbox adapter accepts,
duplicate / shuffled / delayed delivery plans, and the provider-side state kept in Redis.
"""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.cache import cache

from apps.payments.providers.base import PaymentStatus, ProviderError, WebhookSignatureError
from apps.payments.providers.http import HttpRequest, HttpResponse, UrllibTransport
from apps.payments.providers.sandbox import (
    PlannedDelivery,
    SandboxEvent,
    SandboxProvider,
    SandboxWebhookSender,
    build_event,
)
from tests.payments.provider_transport import ScriptedTransport

WEBHOOK_URL = "http://127.0.0.1:8000/webhooks/sandbox"


@pytest.fixture
def secret() -> str:
    return secrets.token_hex(16)


@pytest.fixture
def sandbox(secret: str) -> SandboxProvider:
    return SandboxProvider(webhook_secrets=[secret], public_base_url="http://127.0.0.1:8000/", cache=cache)


def new_session(sandbox: SandboxProvider, amount_minor: int = 1500) -> tuple[str, str]:
    checkout_id = str(uuid.uuid4())
    session = sandbox.create_session(
        checkout_id=checkout_id,
        amount_minor=amount_minor,
        currency="eur",
        email="shopper@example.com",
        description="photos",
        success_url="http://127.0.0.1:8000/done",
        cancel_url="http://127.0.0.1:8000/cancel",
    )
    return checkout_id, session.reference


def sender(secret: str, transport: ScriptedTransport | None = None, **options) -> SandboxWebhookSender:
    return SandboxWebhookSender(secret=secret, url=WEBHOOK_URL, transport=transport or ScriptedTransport(), **options)


# --- provider --------------------------------------------------------------------------------


def test_create_session_points_at_our_own_pay_page_and_is_idempotent(sandbox):
    checkout_id, reference = new_session(sandbox)
    assert reference == f"sbx_{checkout_id}"
    again = sandbox.create_session(
        checkout_id=checkout_id,
        amount_minor=9999,
        currency="USD",
        email="x@example.com",
        description="changed",
        success_url="http://127.0.0.1:8000/done",
        cancel_url="http://127.0.0.1:8000/cancel",
    )
    assert again.payment_url == f"http://127.0.0.1:8000/sandbox/pay/{checkout_id}"
    # the first session is kept: a retry does not change what the shopper pays
    assert sandbox.session_details(reference=reference)["amount_minor"] == 1500
    assert sandbox.fetch_status(reference=reference).status == PaymentStatus.PENDING


def test_paid_delivery_is_signed_so_the_sandbox_adapter_accepts_and_parses_it(sandbox, secret):
    # given: a session the shopper pays on the pay page
    checkout_id, reference = new_session(sandbox)
    event = sandbox.settle(reference=reference, outcome=PaymentStatus.PAID)
    transport = ScriptedTransport(HttpResponse(200))
    # when: the sender delivers it
    assert sender(secret, transport).deliver(event) == 200
    # then: the request is a signed POST of the event bytes, accepted by the adapter
    [request] = transport.requests
    assert (request.method, request.url, request.body) == ("POST", WEBHOOK_URL, event.body)
    assert request.header("Content-Type") == "application/json"
    envelope = sandbox.authenticate(body=request.body, headers=dict(request.headers))
    assert (envelope.provider, envelope.event_id, envelope.event_type) == ("sandbox", event.event_id, "payment.paid")
    assert (envelope.status, envelope.reference, envelope.checkout_id) == (PaymentStatus.PAID, reference, checkout_id)
    assert (envelope.amount_minor, envelope.currency, envelope.refund_amount_minor) == (1500, "EUR", None)
    assert sandbox.fetch_status(reference=reference).status == PaymentStatus.PAID


def test_failed_delivery_parses_as_failed(sandbox, secret):
    _, reference = new_session(sandbox)
    event = sandbox.settle(reference=reference, outcome=PaymentStatus.FAILED)
    headers = sender(secret).headers(event.body)
    assert sandbox.authenticate(body=event.body, headers=headers).status == PaymentStatus.FAILED
    assert sandbox.fetch_status(reference=reference).status == PaymentStatus.FAILED


def test_tampered_or_foreign_deliveries_are_refused(sandbox, secret):
    _, reference = new_session(sandbox)
    event = sandbox.settle(reference=reference, outcome=PaymentStatus.PAID)
    headers = sender(secret).headers(event.body)
    with pytest.raises(WebhookSignatureError):
        sandbox.verify_webhook(body=event.body.replace(b"1500", b"15"), headers=headers)
    with pytest.raises(WebhookSignatureError):
        sandbox.verify_webhook(body=event.body, headers=sender(secrets.token_hex(16)).headers(event.body))
    with pytest.raises(WebhookSignatureError, match="missing Sandbox-Signature"):
        sandbox.verify_webhook(body=event.body, headers={"Stripe-Signature": headers["Sandbox-Signature"]})
    stale = sender(secret).headers(event.body, timestamp=int(time.time()) - 301)
    with pytest.raises(WebhookSignatureError, match="s old"):
        sandbox.verify_webhook(body=event.body, headers=stale)


def test_settling_twice_repeats_the_same_event_and_a_conflicting_outcome_is_refused(sandbox):
    _, reference = new_session(sandbox)
    first = sandbox.settle(reference=reference, outcome=PaymentStatus.PAID)
    second = sandbox.settle(reference=reference, outcome=PaymentStatus.PAID)
    assert first.event_id == second.event_id
    with pytest.raises(ProviderError) as caught:
        sandbox.settle(reference=reference, outcome=PaymentStatus.FAILED)
    assert caught.value.http_status == 409


def test_refund_is_idempotent_per_key_and_a_full_refund_makes_the_payment_refunded(sandbox, secret):
    # given: an unpaid session cannot be refunded
    _, reference = new_session(sandbox)
    with pytest.raises(ProviderError, match="not paid"):
        sandbox.refund(reference=reference, amount_minor=1500, idempotency_key="k1")
    sandbox.settle(reference=reference, outcome=PaymentStatus.PAID)
    # when: refunded in full twice with the same key, then once more with another key
    first = sandbox.refund(reference=reference, amount_minor=1500, idempotency_key="k1")
    again = sandbox.refund(reference=reference, amount_minor=1500, idempotency_key="k1")
    with pytest.raises(ProviderError, match="exceeds the payment") as caught:
        sandbox.refund(reference=reference, amount_minor=1, idempotency_key="k2")
    # then: one refund; nothing is left to refund
    assert first == again
    assert caught.value.http_status == 400 and not caught.value.retryable
    assert (first.status, first.amount_minor, first.currency) == (PaymentStatus.REFUNDED, 1500, "EUR")
    assert first.refund_id.startswith("re_sbx_")
    assert sandbox.fetch_status(reference=reference).status == PaymentStatus.REFUNDED
    refunded = sandbox.refunded_event(reference=reference)
    envelope = sandbox.authenticate(body=refunded.body, headers=sender(secret).headers(refunded.body))
    assert (envelope.status, envelope.reference, envelope.refund_id) == (
        PaymentStatus.REFUNDED,
        reference,
        first.refund_id,
    )
    assert (envelope.amount_minor, envelope.currency, envelope.refund_amount_minor) == (1500, "EUR", 1500)


def test_unknown_reference_is_a_provider_error(sandbox):
    with pytest.raises(ProviderError) as caught:
        sandbox.fetch_status(reference="sbx_nope-" + uuid.uuid4().hex)
    assert caught.value.http_status == 404


# --- delivery plans ----------------------------------------------------------------------------


def two_events() -> list[SandboxEvent]:
    common: dict[str, Any] = {"reference": "sbx_1", "checkout_id": "1", "amount_minor": 1500, "currency": "EUR"}
    return [build_event(status=PaymentStatus.PAID, **common), build_event(status=PaymentStatus.REFUNDED, **common)]


def test_plan_without_options_is_each_event_once_in_order(secret):
    events = two_events()
    plan = sender(secret).plan(events)
    assert [(d.event, d.copy, d.delay_seconds) for d in plan] == [(events[0], 1, 0.0), (events[1], 1, 0.0)]


def test_plan_with_duplicates_delivers_every_event_n_times_with_one_event_id(secret):
    events = two_events()
    plan = sender(secret, duplicates=3).plan(events)
    assert Counter(d.event.event_id for d in plan) == {events[0].event_id: 3, events[1].event_id: 3}
    assert sorted(d.copy for d in plan if d.event == events[0]) == [1, 2, 3]


def test_shuffled_plan_reorders_deliveries_so_a_refund_can_precede_the_payment(secret):
    # given: a seeded generator, so the order is reproducible
    events = two_events()
    ordered = sender(secret, duplicates=3).plan(events)
    shuffled = sender(secret, duplicates=3, shuffle=True, rng=random.Random(7)).plan(events)
    # then: same deliveries, different order, and the refund arrives before any payment copy
    assert Counter(d.event.event_id for d in shuffled) == Counter(d.event.event_id for d in ordered)
    assert [d.event.event_id for d in shuffled] != [d.event.event_id for d in ordered]
    assert shuffled[0].event == events[1]


def test_delayed_plan_waits_before_sending_and_signs_at_send_time(sandbox, secret):
    # given: a 5 s delay, a fake sleep and a clock that moves while "sleeping"
    _, reference = new_session(sandbox)
    event = sandbox.settle(reference=reference, outcome=PaymentStatus.PAID)
    clock = [time.time()]
    sleeps: list[float] = []

    def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds + 400  # far past the signature tolerance, counted from planning

    transport = ScriptedTransport(HttpResponse(200), HttpResponse(200))
    the_sender = sender(secret, transport, duplicates=2, delay_seconds=5.0, now=lambda: clock[0])
    plan = the_sender.plan([event])
    # when
    statuses = the_sender.send(plan, sleep=fake_sleep, clock=lambda: clock[0])
    # then: it waited once for the delay, then sent both copies, each signed with the send time
    assert statuses == [200, 200]
    assert sleeps == [5.0]
    late_provider = SandboxProvider(
        webhook_secrets=[secret], public_base_url="http://x", cache=cache, now=lambda: clock[0]
    )
    for request in transport.requests:
        assert request.body == event.body
        late_provider.verify_webhook(body=event.body, headers=dict(request.headers))


def test_planned_delivery_survives_a_json_round_trip(secret):
    [delivery] = sender(secret, delay_seconds=2.5).plan(two_events()[:1])
    assert PlannedDelivery.from_dict(json.loads(json.dumps(delivery.to_dict()))) == delivery


@pytest.mark.parametrize("options", [{"duplicates": 0}, {"delay_seconds": -1}])
def test_sender_refuses_nonsense_options(secret, options):
    with pytest.raises(ValueError):
        sender(secret, **options)


# --- the default transport, against a real local HTTP server ---------------------------------


@pytest.fixture
def local_server() -> Iterator[tuple[str, list[tuple[str, dict[str, str], bytes]]]]:
    received: list[tuple[str, dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, dict(self.headers.items()), body))
            self.send_response(200)
            self.end_headers()

        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_default_sender_posts_signed_deliveries_over_http(sandbox, secret, local_server):
    # given: the sender with its default urllib transport, pointed at a local server
    base, received = local_server
    _, reference = new_session(sandbox)
    event = sandbox.settle(reference=reference, outcome=PaymentStatus.PAID)
    # (a generous timeout: the local server answers at once, but the machine may be loaded)
    real_sender = SandboxWebhookSender(secret=secret, url=f"{base}/webhooks/sandbox", duplicates=2, timeout=60)
    # when
    statuses = real_sender.send(real_sender.plan([event]))
    # then: two POSTs of the exact bytes, each verifying with the sandbox adapter
    assert statuses == [200, 200]
    assert [path for path, _, _ in received] == ["/webhooks/sandbox", "/webhooks/sandbox"]
    for _, headers, body in received:
        assert body == event.body
        assert sandbox.authenticate(body=body, headers=headers).event_id == event.event_id


def test_default_transport_does_not_follow_redirects(local_server):
    base, _ = local_server
    response = UrllibTransport().send(HttpRequest("GET", f"{base}/cert"), timeout=60)
    assert response.status == 302
