"""PayPal: approval is not payment. An approved order is captured by the consumer (outside any
transaction, with an idempotency key), and only the capture's outcome grants anything."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client, override_settings

from apps.commerce.models import Checkout, Entitlement
from apps.payments.models import WebhookEvent
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.fixtures import checkout_body, post_checkout, purge_queues
from tests.commerce.helpers import drain_outbox
from tests.factories.commerce import Shop, make_shop
from tests.payments import signing_helpers as sign

pytestmark = pytest.mark.django_db(transaction=True)


class FakePayPal:
    """OAuth token, order creation and capture, answered like PayPal's Orders v2 API."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.orders: dict[str, dict[str, Any]] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fake.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
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
                else:  # /v2/checkout/orders/<id>/capture
                    order_id = self.path.split("/")[4]
                    unit = fake.orders[order_id]
                    capture = {"id": f"CAP-{order_id}", "status": "COMPLETED", "amount": unit["amount"]}
                    payload = {
                        "id": order_id,
                        "status": "COMPLETED",
                        "purchase_units": [{**unit, "payments": {"captures": [capture]}}],
                    }
                data = json.dumps(payload).encode()
                self.send_response(201 if "orders" in self.path else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

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


@pytest.fixture
def shop(tenant_a) -> Shop:
    return make_shop(org=tenant_a.org)


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


def test_approved_order_is_captured_once_and_the_capture_pays_the_checkout(tenant_a, shop, paypal):
    # given: a PayPal checkout whose order exists (session created after commit)
    checkout_id = post_checkout(
        tenant_a.client(), checkout_body(shop, {"product": shop.download.pk}, provider="paypal")
    ).json()["id"]
    drain_outbox()
    with tenant_context(tenant_a.org.pk):
        order_id = Checkout.objects.get(pk=checkout_id).paypal_order_id
    assert order_id and order_id.startswith("ORDER-")
    # when: PayPal's signed CHECKOUT.ORDER.APPROVED arrives twice and is processed
    key = sign.paypal_key()
    sign.paypal_trust(key)
    body = approved_event(order_id=order_id, checkout_id=checkout_id)
    for _ in range(2):
        headers = sign.paypal_headers(body, key)
        headers.pop("Content-Type")
        assert (
            Client().post("/webhooks/paypal", data=body, content_type="application/json", headers=headers).status_code
            == 200
        )
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
