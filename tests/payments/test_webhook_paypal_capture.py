"""PayPal: approval is not payment. An approved order is captured by the consumer (outside any
transaction, with an idempotency key), and only the capture's outcome grants anything."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from apps.commerce.models import Checkout, Entitlement
from apps.outbox.models import OutboxMessage
from apps.payments.models import WebhookEvent
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.commerce.fixtures import checkout_body, post_checkout, purge_queues
from tests.commerce.helpers import drain_outbox
from tests.payments import signing_helpers as sign
from tests.payments.provider_transport import JsonHandler

pytestmark = pytest.mark.django_db(transaction=True)


class FakePayPal:
    """OAuth token, order creation and capture, answered like PayPal's Orders v2 API."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.orders: dict[str, dict[str, Any]] = {}
        # A capture refusal to answer with (422 and PayPal's issue code), and what GET of the
        # order then says ("COMPLETED": captured elsewhere; "APPROVED": the buyer must pay again).
        self.capture_refusal: str | None = None
        self.status_after_refusal = "APPROVED"
        # Called while a capture request is being answered (e.g. a newer approval arrives).
        self.during_capture: Callable[[], None] | None = None
        # False: the capture answer leaves out what was charged.
        self.capture_states_amount = True
        fake = self

        def order_body(order_id: str, status: str) -> dict[str, Any]:
            unit = fake.orders[order_id]
            if status != "COMPLETED":
                return {"id": order_id, "status": status, "purchase_units": [unit]}
            capture = {"id": f"CAP-{order_id}", "status": "COMPLETED", "amount": unit["amount"]}
            completed_unit = {**unit, "payments": {"captures": [capture]}}
            if not fake.capture_states_amount:  # the adapter reads the order's amount
                completed_unit.pop("amount")
                capture.pop("amount")
            return {"id": order_id, "status": "COMPLETED", "purchase_units": [completed_unit]}

        class Handler(JsonHandler):
            def do_GET(self) -> None:  # /v2/checkout/orders/<id>
                fake.requests.append({"path": self.path, "method": "GET", "headers": {}})
                self.send_json(200, order_body(self.path.split("/")[4], fake.status_after_refusal))

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
                if self.path.endswith("/capture") and fake.during_capture is not None:
                    hook, fake.during_capture = fake.during_capture, None
                    hook()
                if self.path == "/v1/oauth2/token":
                    payload: dict[str, Any] = {"access_token": "token-1", "expires_in": 3600}
                elif self.path == "/v2/checkout/orders":
                    unit = json.loads(raw)["purchase_units"][0]
                    order_id = f"ORDER-{uuid.uuid4().hex[:10]}"
                    fake.orders[order_id] = unit
                    payload = {
                        "id": order_id,
                        "status": "PAYER_ACTION_REQUIRED",
                        "links": [{"rel": "payer-action", "href": f"https://paypal.test/checkoutnow?token={order_id}"}],
                    }
                elif fake.capture_refusal is not None:  # /v2/checkout/orders/<id>/capture, refused
                    self.send_json(
                        422,
                        {
                            "name": "UNPROCESSABLE_ENTITY",
                            "message": "The requested action could not be performed.",
                            "details": [{"issue": fake.capture_refusal}],
                        },
                    )
                    return
                else:  # /v2/checkout/orders/<id>/capture
                    payload = order_body(self.path.split("/")[4], "COMPLETED")
                self.send_json(201 if "orders" in self.path else 200, payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def paypal() -> Iterator[FakePayPal]:
    fake = FakePayPal()
    fake.thread.start()
    purge_queues()
    with override_settings(PAYPAL_API_BASE=f"http://127.0.0.1:{fake.server.server_address[1]}"):
        yield fake
    fake.server.shutdown()
    fake.server.server_close()
    purge_queues()


def approved_event(*, order_id: str, checkout_id: str) -> bytes:
    return json.dumps(
        {
            "id": f"WH-{uuid.uuid4().hex[:12]}",
            "event_version": "1.0",
            "event_type": "CHECKOUT.ORDER.APPROVED",
            "resource_type": "checkout-order",
            "resource": {
                "id": order_id,
                "status": "APPROVED",
                "purchase_units": [
                    {
                        "reference_id": checkout_id,
                        "custom_id": checkout_id,
                        "amount": {"currency_code": "EUR", "value": "9.00"},
                    }
                ],
            },
        }
    ).encode()


def paypal_checkout(tenant_a, shop) -> tuple[str, str]:
    """A PayPal checkout whose order exists (session created after commit): (checkout id, order id)."""
    checkout_id = post_checkout(
        tenant_a.client(), checkout_body(shop, {"product": shop.download.pk}, provider="paypal")
    ).json()["id"]
    drain_outbox()
    with tenant_context(tenant_a.org.pk):
        order_id = Checkout.objects.get(pk=checkout_id).paypal_order_id
    return checkout_id, order_id


def deliver(body: bytes) -> None:
    """One signed PayPal delivery of `body`, accepted by the webhook endpoint."""
    key = sign.paypal_key()
    sign.paypal_trust(key)
    headers = sign.paypal_headers(body, key)
    headers.pop("Content-Type")
    response = Client().post("/webhooks/paypal", data=body, content_type="application/json", headers=headers)
    assert response.status_code == 200


def test_approved_order_is_captured_once_and_the_capture_pays_the_checkout(tenant_a, shop, paypal):
    # given: a PayPal checkout whose order exists (session created after commit)
    checkout_id, order_id = paypal_checkout(tenant_a, shop)
    assert order_id and order_id.startswith("ORDER-")
    # when: PayPal's signed CHECKOUT.ORDER.APPROVED arrives twice and is processed
    body = approved_event(order_id=order_id, checkout_id=checkout_id)
    for _ in range(2):
        deliver(body)
    handled = drain_outbox()
    # then: one capture request went out, keyed by the checkout; the capture paid the checkout
    assert handled.count("payment.capture_requested") == 1
    captures = [r for r in paypal.requests if r["path"].endswith("/capture")]
    assert [r["headers"]["paypal-request-id"] for r in captures] == [f"capture:{checkout_id}"]
    with tenant_context(tenant_a.org.pk):
        checkout = Checkout.objects.get(pk=checkout_id)
        assert (checkout.status, checkout.transaction.status) == ("paid", "paid")
        assert checkout.transaction.payment_id == f"CAP-{order_id}"
        assert Entitlement.objects.count() == 1
    with system_context("test"):
        assert WebhookEvent.objects.get().outcome == "approved: capture requested"


def approved_with_refused_capture(tenant, shop, paypal, *, refusal: str, order_status: str) -> tuple[str, str]:
    """A PayPal checkout whose approval webhook was delivered; PayPal will refuse its capture with
    `refusal` (422) and then report the order as `order_status`."""
    paypal.capture_refusal = refusal
    paypal.status_after_refusal = order_status
    checkout_id, order_id = paypal_checkout(tenant, shop)
    deliver(approved_event(order_id=order_id, checkout_id=checkout_id))
    return checkout_id, order_id


def test_a_capture_refused_as_already_captured_applies_the_orders_own_status(tenant_a, shop, paypal):
    # given: an approved order whose capture PayPal refuses (422) because it was captured already
    checkout_id, order_id = approved_with_refused_capture(
        tenant_a, shop, paypal, refusal="ORDER_ALREADY_CAPTURED", order_status="COMPLETED"
    )

    # when: the capture consumer runs
    drain_outbox()

    # then: the order's own status (GET) was asked and applied: the shopper paid and is served
    assert [r["path"] for r in paypal.requests if r.get("method") == "GET"] == [f"/v2/checkout/orders/{order_id}"]
    with tenant_context(tenant_a.org.pk):
        checkout = Checkout.objects.get(pk=checkout_id)
        assert (checkout.status, checkout.transaction.status) == ("paid", "paid")
        assert checkout.transaction.payment_id == f"CAP-{order_id}"
        assert Entitlement.objects.count() == 1


def test_a_declined_capture_of_a_still_approved_order_grants_nothing_and_says_why(tenant_a, shop, paypal):
    # given: an approved order whose capture is declined (the buyer must choose another funding source)
    checkout_id, _ = approved_with_refused_capture(
        tenant_a, shop, paypal, refusal="INSTRUMENT_DECLINED", order_status="APPROVED"
    )

    # when: the capture consumer runs (once: a final refusal is not retried)
    drain_outbox()

    # then: nothing is paid or granted; the checkout still awaits payment (webhook or expiry next)
    assert len([r for r in paypal.requests if r["path"].endswith("/capture")]) == 1
    with tenant_context(tenant_a.org.pk):
        checkout = Checkout.objects.get(pk=checkout_id)
        assert checkout.status == "awaiting_payment"
        assert checkout.transaction.status != "paid"
        assert Entitlement.objects.count() == 0
        assert checkout.capture_requested_at is None  # the attempt concluded: no sweep asks again
    # and the shopper is told why on the checkout, in words and PayPal's code, without internals
    shown = tenant_a.client().get(f"/api/v1/checkouts/{checkout_id}")
    assert shown.status_code == 200
    assert shown.json()["payment_error"] == (
        "PayPal refused the capture: INSTRUMENT_DECLINED. The payment was not taken: approve it again,"
        " with another funding source if needed."
    )


def test_a_capture_whose_message_was_lost_is_asked_for_again_and_captured_once(tenant_a, shop, paypal):
    from tasks.payments import captures_requeue_stale_task

    # given: an approved order whose capture message the broker lost (the relay had published it)
    checkout_id, order_id = paypal_checkout(tenant_a, shop)
    deliver(approved_event(order_id=order_id, checkout_id=checkout_id))
    assert drain_outbox(topics={"webhook.received"}) == ["webhook.received"]
    with system_context("test: the broker forgets the message; 11 minutes pass"):
        OutboxMessage.objects.filter(topic="payment.capture_requested").update(
            status=OutboxMessage.Status.PUBLISHED, published_at=timezone.now()
        )
        asked = Checkout.objects.get(pk=checkout_id).capture_requested_at
        assert asked is not None
        Checkout.objects.filter(pk=checkout_id).update(capture_requested_at=asked - timedelta(minutes=11))

    # when: the beat sweep runs twice (the second pass finds it freshly asked for)
    assert captures_requeue_stale_task() == 1
    assert captures_requeue_stale_task() == 0

    # then: the new message captures the order once, with the checkout's key; the checkout is paid
    assert drain_outbox() == ["payment.capture_requested", "checkout.paid"]  # then the receipt
    captures = [r for r in paypal.requests if r["path"].endswith("/capture")]
    assert [r["headers"]["paypal-request-id"] for r in captures] == [f"capture:{checkout_id}"]
    with tenant_context(tenant_a.org.pk):
        checkout = Checkout.objects.get(pk=checkout_id)
        assert (checkout.status, checkout.capture_requested_at) == ("paid", None)
        assert Entitlement.objects.count() == 1
    with system_context("test"):
        assert AuditLog.objects.filter(action="checkout.capture_requeue", target_id=checkout_id).count() == 1


def test_an_approval_that_arrives_during_a_capture_attempt_keeps_the_capture_asked_for(tenant_a, shop, paypal):
    from django.db import connection

    # given: an approved order whose capture PayPal declines (the buyer must approve again), and
    # a newer approval recorded while that capture request is in flight
    checkout_id, _ = approved_with_refused_capture(
        tenant_a, shop, paypal, refusal="INSTRUMENT_DECLINED", order_status="APPROVED"
    )
    newer = timezone.now() + timedelta(seconds=5)

    def newer_approval() -> None:  # runs in the fake provider's thread, on its own connection
        with tenant_context(tenant_a.org.pk):
            Checkout.objects.filter(pk=checkout_id).update(capture_requested_at=newer)
        connection.close()

    paypal.during_capture = newer_approval
    # when: the declined attempt concludes
    assert drain_outbox(topics={"webhook.received"}) == ["webhook.received"]
    assert drain_outbox() == ["payment.capture_requested"]
    # then: the newer approval's marker stays, so the stale-capture sweep will ask again
    with tenant_context(tenant_a.org.pk):
        checkout = Checkout.objects.get(pk=checkout_id)
    assert (checkout.status, checkout.capture_requested_at) == ("awaiting_payment", newer)


def test_a_capture_that_does_not_say_what_was_charged_grants_nothing(tenant_a, shop, paypal):
    # given: a PayPal checkout whose capture answer will leave out the amount
    paypal.capture_states_amount = False
    checkout_id, order_id = paypal_checkout(tenant_a, shop)
    # when: the approval arrives and the capture is made
    deliver(approved_event(order_id=order_id, checkout_id=checkout_id))
    drain_outbox()
    # then: captured once, but nothing is granted until an event that states the charge
    assert len([r for r in paypal.requests if r["path"].endswith("/capture")]) == 1
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=checkout_id).status == "awaiting_payment"
        assert Entitlement.objects.count() == 0
