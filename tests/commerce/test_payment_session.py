"""The provider session is created after commit, with the checkout id as idempotency key; a
provider failure leaves a checkout the client can retry, never a second session."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from django.db import transaction
from django.db.transaction import TransactionManagementError
from django.test import override_settings

from apps.commerce.models import Checkout
from apps.commerce.services import checkout_payment_session_ensure
from apps.payments.providers import registry
from apps.payments.providers.base import ProviderError
from apps.payments.providers.stripe import StripeProvider
from apps.tenancy.context import tenant_context
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import drain_outbox, new_key, pending_topics, sandbox_provider
from tests.payments.provider_transport import JsonHandler, ScriptedTransport, form_body, json_response

pytestmark = pytest.mark.django_db(transaction=True)


class FakeFlutterwave:
    """A local HTTP server answering `POST /v3/payments` like Flutterwave, from a script."""

    def __init__(self) -> None:
        self.script: list[int] = []
        self.requests: list[dict[str, Any]] = []
        fake = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status = fake.script.pop(0) if fake.script else 200
                if status == 200:
                    payload = {
                        "status": "success",
                        "data": {"link": f"https://checkout.flutterwave.test/pay/{body['tx_ref']}"},
                    }
                else:
                    payload = {"status": "error", "message": f"scripted {status}"}
                self.send_json(status, payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v3"


@pytest.fixture
def flutterwave() -> Iterator[FakeFlutterwave]:
    fake = FakeFlutterwave()
    fake.thread.start()
    with override_settings(FLUTTERWAVE_API_BASE=fake.api_base):
        yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_provider_outage_leaves_a_retryable_checkout_and_the_retry_reuses_the_idempotency_key(
    tenant_a, shop_a, flutterwave
):
    # given: Flutterwave answers 503 to the first session request
    flutterwave.script = [503]
    created = post_checkout(
        tenant_a.client(), checkout_body(shop_a, {"product": shop_a.download.pk}, provider="flutterwave")
    ).json()
    # when: the consumer tries to create the session
    with pytest.raises(ProviderError) as failure:
        drain_outbox()
    assert failure.value.retryable
    # then: the checkout is still there, awaiting its session, with the error shown
    detail = tenant_a.client().get(f"/api/v1/checkouts/{created['id']}").json()
    assert (detail["status"], detail["payment_url"]) == ("awaiting_payment_session", None)
    assert "503" in detail["payment_session_error"]
    # when: the client asks again through the retry endpoint, and the provider is back
    retry = tenant_a.client().post(f"/api/v1/checkouts/{created['id']}/payment-session", HTTP_IDEMPOTENCY_KEY=new_key())
    assert retry.status_code == 202
    assert pending_topics() == ["checkout.payment_session_requested"]
    drain_outbox()
    # then: one session, stored once; both attempts carried the checkout id as idempotency key
    detail = tenant_a.client().get(f"/api/v1/checkouts/{created['id']}").json()
    assert detail["status"] == "awaiting_payment"
    assert detail["payment_url"] == f"https://checkout.flutterwave.test/pay/{created['id']}"
    assert detail["payment_session_error"] is None
    assert [r["headers"]["X-Idempotency-Key"] for r in flutterwave.requests] == [created["id"], created["id"]]
    assert [r["body"]["tx_ref"] for r in flutterwave.requests] == [created["id"], created["id"]]
    assert flutterwave.requests[0]["body"]["amount"] == "9.00"
    with tenant_context(tenant_a.org.pk):
        checkout = Checkout.objects.get(pk=created["id"])
    assert (checkout.flutterwave_tx_ref, checkout.payment_session_attempts) == (created["id"], 2)
    # and: another ensure (e.g. a redelivered message) does not call the provider again
    with tenant_context(tenant_a.org.pk):
        checkout_payment_session_ensure(checkout_id=created["id"])
    assert len(flutterwave.requests) == 2


def test_final_provider_refusal_is_recorded_without_retry(tenant_a, shop_a, flutterwave):
    flutterwave.script = [400]
    created = post_checkout(
        tenant_a.client(), checkout_body(shop_a, {"product": shop_a.download.pk}, provider="flutterwave")
    ).json()
    drain_outbox()  # not raised: a 400 cannot be fixed by retrying
    detail = tenant_a.client().get(f"/api/v1/checkouts/{created['id']}").json()
    assert detail["status"] == "awaiting_payment_session" and "400" in detail["payment_session_error"]


def test_provider_is_never_called_inside_a_transaction(tenant_a, shop_a):
    created = post_checkout(tenant_a.client(), checkout_body(shop_a, {"product": shop_a.download.pk})).json()
    with tenant_context(tenant_a.org.pk), transaction.atomic(), pytest.raises(TransactionManagementError):
        checkout_payment_session_ensure(checkout_id=created["id"])


# --- where the provider sends the shopper back -------------------------------------------------

RETURN_URL = "https://shop.example.test/orders/A-1001?lang=en"
# Stripe fills in a literal {CHECKOUT_SESSION_ID} of its success URL: it must reach Stripe as typed.
STRIPE_RETURN_URL = "https://shop.example.test/orders/A-1001?lang=en&session={CHECKOUT_SESSION_ID}#done"


def _post_with_return_url(tenant: Any, shop: Any, provider: str, **extra: Any) -> dict[str, Any]:
    body = {**checkout_body(shop, {"product": shop.download.pk}, provider=provider), **extra}
    response = post_checkout(tenant.client(), body)
    assert response.status_code == 201, response.content
    return dict(response.json())


def test_stripe_session_sends_the_shopper_back_to_the_checkouts_return_url(tenant_a, shop_a, monkeypatch):
    # given: the Stripe adapter, its HTTP answered as Stripe's Checkout Sessions API answers
    transport = ScriptedTransport(
        json_response({"id": "cs_test_r1", "object": "checkout.session", "url": "https://checkout.stripe.com/c/pay/r1"})
    )
    adapter = StripeProvider(
        secret_key="sk_test_local_xxxxxxxx", webhook_secrets=["whsec_local"], transport=transport, max_network_retries=0
    )
    monkeypatch.setitem(registry._instances, "stripe", adapter)
    created = _post_with_return_url(tenant_a, shop_a, "stripe", return_url=STRIPE_RETURN_URL)
    # when: the consumer creates the session
    drain_outbox()
    # then: Stripe was asked to send the shopper back there, told apart by darkroom_return, the
    # URL otherwise as typed (Stripe's placeholder and the fragment kept)
    [request] = transport.requests
    form = form_body(request)
    base = "https://shop.example.test/orders/A-1001?lang=en&session={CHECKOUT_SESSION_ID}"
    assert (form["success_url"], form["cancel_url"]) == (
        [f"{base}&darkroom_return=paid#done"],
        [f"{base}&darkroom_return=cancelled#done"],
    )
    assert form["client_reference_id"] == [created["id"]]


def test_flutterwave_session_redirects_to_the_return_url_or_else_to_the_configured_page(
    tenant_a, shop_a, flutterwave, settings
):
    # given: one checkout with a return URL and one without
    with_url = _post_with_return_url(tenant_a, shop_a, "flutterwave", return_url=RETURN_URL)
    without = _post_with_return_url(tenant_a, shop_a, "flutterwave")
    # when: their sessions are created
    drain_outbox()
    # then: Flutterwave's redirect_url is the checkout's own, else CHECKOUT_RETURN_URL's
    redirects = {r["body"]["tx_ref"]: r["body"]["redirect_url"] for r in flutterwave.requests}
    assert redirects == {
        with_url["id"]: RETURN_URL,
        without["id"]: settings.CHECKOUT_RETURN_URL.format(checkout_id=without["id"]),
    }
    assert redirects[without["id"]].endswith(f"/sandbox/checkouts/{without['id']}")


def test_sandbox_session_keeps_the_return_url_as_its_success_and_cancel_url(tenant_a, shop_a):
    # given / when: a sandbox checkout with a return URL gets its session
    created = _post_with_return_url(tenant_a, shop_a, "sandbox", return_url=RETURN_URL)
    drain_outbox()
    # then: the sandbox's provider-side session sends the shopper back there, paid or not
    details = sandbox_provider().session_details(reference=f"sbx_{created['id']}")
    assert (details["success_url"], details["cancel_url"]) == (
        f"{RETURN_URL}&darkroom_return=paid",
        f"{RETURN_URL}&darkroom_return=cancelled",
    )
