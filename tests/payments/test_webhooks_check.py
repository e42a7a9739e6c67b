"""`manage.py payments_webhooks_check`: the real adapters ask the providers (answered by a scripted
transport in their documented formats) whether the webhook endpoint is set up as Darkroom needs.

Exit status: 0 all fine (warnings and unverifiable providers included), 1 a problem found, 2 a
provider could not be asked.
"""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.payments.providers import registry
from apps.payments.providers.flutterwave import FlutterwaveProvider
from apps.payments.providers.http import HttpRequest, TransportError
from apps.payments.providers.paypal import PayPalProvider
from tests.payments.provider_transport import ScriptedTransport, form_body, json_response, path, query, use_stripe

BASE = "https://shop.example.com"
STRIPE_URL = f"{BASE}/webhooks/stripe"
PAYPAL_URL = f"{BASE}/webhooks/paypal"
STRIPE_LIST = "https://api.stripe.com/v1/webhook_endpoints"
STRIPE_EVENTS = [
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "refund.created",
    "refund.updated",
    "refund.failed",
    "transfer.created",
    "transfer.updated",
    "transfer.reversed",
]
PAYPAL_API = "https://api-m.sandbox.paypal.com"
PAYPAL_WEBHOOK_ID = "8PT597110X687430LKGECATA"
PAYPAL_EVENTS = [
    "CHECKOUT.ORDER.APPROVED",
    "CHECKOUT.ORDER.COMPLETED",
    "PAYMENT.CAPTURE.COMPLETED",
    "PAYMENT.CAPTURE.PENDING",
    "PAYMENT.CAPTURE.DENIED",
    "PAYMENT.CAPTURE.DECLINED",
    "PAYMENT.CAPTURE.REFUNDED",
    "PAYMENT.CAPTURE.REVERSED",
    "PAYMENT.PAYOUTS-ITEM.SUCCEEDED",
    "PAYMENT.PAYOUTS-ITEM.FAILED",
    "PAYMENT.PAYOUTS-ITEM.RETURNED",
    "PAYMENT.PAYOUTS-ITEM.REFUNDED",
    "PAYMENT.PAYOUTS-ITEM.DENIED",
    "PAYMENT.PAYOUTS-ITEM.BLOCKED",
    "PAYMENT.PAYOUTS-ITEM.UNCLAIMED",
    "PAYMENT.PAYOUTS-ITEM.HELD",
    "PAYMENT.PAYOUTS-ITEM.CANCELED",
    "PAYMENT.PAYOUTSBATCH.DENIED",
    "PAYMENT.PAYOUTSBATCH.PROCESSING",
    "PAYMENT.PAYOUTSBATCH.SUCCESS",
]


@pytest.fixture(autouse=True)
def public_site(settings: Any) -> None:
    # Set before any adapter is installed: changing these settings empties the registry.
    settings.DARKROOM_PUBLIC_BASE_URL = BASE
    settings.SHOP_PAYMENT_PROVIDERS = ["stripe"]


def run(*args: str) -> tuple[int, str]:
    """The command's exit status and everything it printed (stdout, then the CommandError)."""
    out = StringIO()
    try:
        call_command("payments_webhooks_check", *args, stdout=out, stderr=StringIO())
    except CommandError as exc:
        return exc.returncode, out.getvalue() + str(exc)
    return 0, out.getvalue()


def endpoint(
    endpoint_id: str = "we_1",
    *,
    url: str = STRIPE_URL,
    events: list[str] | None = None,
    status: str = "enabled",
    api_version: str | None = "2024-10-28.acacia",
) -> dict[str, Any]:
    """A Stripe WebhookEndpoint object as `GET /v1/webhook_endpoints` lists it."""
    return {
        "id": endpoint_id,
        "object": "webhook_endpoint",
        "api_version": api_version,
        "application": None,
        "created": 1_730_000_000,
        "description": None,
        "enabled_events": STRIPE_EVENTS if events is None else events,
        "livemode": True,
        "metadata": {},
        "status": status,
        "url": url,
    }


def stripe_page(*endpoints: dict[str, Any], has_more: bool = False) -> Any:
    return json_response({"object": "list", "url": "/v1/webhook_endpoints", "has_more": has_more, "data": endpoints})


def assert_stripe_list(request: HttpRequest, **expected_query: list[str]) -> None:
    assert (request.method, path(request)) == ("GET", STRIPE_LIST)
    assert query(request) == {"limit": ["100"], **expected_query}
    assert request.header("Authorization") == "Bearer sk_test_local_xxxxxxxx"
    assert request.body is None


def use_paypal(monkeypatch: Any, transport: ScriptedTransport, *, webhook_id: str = PAYPAL_WEBHOOK_ID) -> None:
    adapter = PayPalProvider(
        client_id="client-id", client_secret="client-secret", webhook_id=webhook_id, transport=transport
    )
    monkeypatch.setitem(registry._instances, "paypal", adapter)


def paypal_token() -> Any:
    return json_response({"access_token": "A21AAtoken", "token_type": "Bearer", "expires_in": 32400})


def paypal_webhook(*, url: str = PAYPAL_URL, events: list[str] | None = None) -> Any:
    """A PayPal webhook object as `GET /v1/notifications/webhooks/{id}` answers it."""
    names = PAYPAL_EVENTS if events is None else events
    return json_response(
        {
            "id": PAYPAL_WEBHOOK_ID,
            "url": url,
            "event_types": [{"name": name, "description": name.lower(), "status": "ENABLED"} for name in names],
            "links": [{"href": f"{PAYPAL_API}/v1/notifications/webhooks/{PAYPAL_WEBHOOK_ID}", "rel": "self"}],
        }
    )


def assert_paypal_requests(transport: ScriptedTransport) -> None:
    token, webhook = transport.requests
    assert (token.method, token.url) == ("POST", f"{PAYPAL_API}/v1/oauth2/token")
    assert form_body(token) == {"grant_type": ["client_credentials"]}
    assert (webhook.method, webhook.url) == ("GET", f"{PAYPAL_API}/v1/notifications/webhooks/{PAYPAL_WEBHOOK_ID}")
    assert webhook.header("Authorization") == "Bearer A21AAtoken"
    assert webhook.body is None


# --- Stripe ----------------------------------------------------------------------------------


def test_stripe_endpoint_set_up_as_needed_is_ok(monkeypatch):
    # given: one enabled endpoint at Darkroom's URL, every event, a recent API version
    transport = use_stripe(monkeypatch, ScriptedTransport(stripe_page(endpoint())))
    # when
    status, output = run()
    # then: one list request, OK, exit 0
    assert status == 0, output
    assert "stripe: OK" in output
    assert STRIPE_URL in output
    (request,) = transport.requests
    assert_stripe_list(request)


def test_stripe_endpoint_without_refund_events_is_a_problem(monkeypatch):
    # given: the endpoint predates the refund events (the known gap)
    without_refunds = [name for name in STRIPE_EVENTS if not name.startswith("refund.")]
    use_stripe(monkeypatch, ScriptedTransport(stripe_page(endpoint(events=without_refunds))))
    # when
    status, output = run("--provider", "stripe")
    # then: the three missing events are named, exit 1
    assert status == 1, output
    assert "stripe: PROBLEM: endpoint we_1 is not subscribed to refund.created, refund.failed, refund.updated" in output
    assert "stripe: OK" not in output


def test_stripe_star_subscription_covers_every_event(monkeypatch):
    use_stripe(monkeypatch, ScriptedTransport(stripe_page(endpoint(events=["*"]))))
    status, output = run()
    assert status == 0, output
    assert "stripe: OK" in output


def test_stripe_endpoint_at_another_url_is_a_problem_naming_the_urls_found(monkeypatch):
    # given: the endpoint points at the old host (and another app's endpoint exists)
    use_stripe(
        monkeypatch,
        ScriptedTransport(
            stripe_page(endpoint(url="https://old.example.com/webhooks/stripe"), endpoint("we_2", url=f"{STRIPE_URL}/"))
        ),
    )
    # when
    status, output = run()
    # then
    assert status == 1, output
    assert f"stripe: PROBLEM: no enabled webhook endpoint at {STRIPE_URL}" in output
    assert "https://old.example.com/webhooks/stripe (we_1, enabled)" in output
    assert f"{STRIPE_URL}/ (we_2, enabled)" in output


def test_stripe_disabled_endpoint_is_a_problem(monkeypatch):
    use_stripe(monkeypatch, ScriptedTransport(stripe_page(endpoint(status="disabled"))))
    status, output = run()
    assert status == 1, output
    assert f"stripe: PROBLEM: endpoint we_1 at {STRIPE_URL} is disabled" in output


def test_stripe_endpoint_on_an_api_version_before_2024_10_28_is_a_problem(monkeypatch):
    use_stripe(monkeypatch, ScriptedTransport(stripe_page(endpoint(api_version="2024-09-30.acacia"))))
    status, output = run()
    assert status == 1, output
    assert "stripe: PROBLEM: endpoint we_1 is on API version 2024-09-30.acacia, older than 2024-10-28" in output


def test_stripe_endpoint_on_the_account_default_version_is_a_warning_only(monkeypatch):
    use_stripe(monkeypatch, ScriptedTransport(stripe_page(endpoint(api_version=None))))
    status, output = run()
    assert status == 0, output
    assert "stripe: warning: endpoint we_1 uses the account's default API version" in output
    assert "stripe: OK" in output


def test_stripe_endpoints_are_read_page_by_page(monkeypatch):
    # given: two pages; Darkroom's endpoint is on the second
    transport = use_stripe(
        monkeypatch,
        ScriptedTransport(
            stripe_page(endpoint("we_other", url="https://crm.example.com/hook"), has_more=True),
            stripe_page(endpoint("we_2")),
        ),
    )
    # when
    status, output = run()
    # then: the second request starts after the first page's last endpoint
    assert status == 0, output
    first, second = transport.requests
    assert_stripe_list(first)
    assert_stripe_list(second, starting_after=["we_other"])
    assert "stripe: OK" in output


def test_stripe_refusing_the_key_exits_2(monkeypatch):
    error = {"error": {"message": "Invalid API Key provided: sk_live_****abcd", "type": "invalid_request_error"}}
    use_stripe(monkeypatch, ScriptedTransport(json_response(error, status=401)))
    status, output = run()
    assert status == 2, output
    assert "stripe: could not ask:" in output
    assert "Invalid API Key" in output


def test_stripe_unreachable_exits_2(monkeypatch):
    use_stripe(monkeypatch, ScriptedTransport(TransportError("connect timed out")))
    status, output = run()
    assert status == 2, output
    assert "stripe: could not ask:" in output


# --- PayPal ----------------------------------------------------------------------------------


def test_paypal_webhook_set_up_as_needed_is_ok(monkeypatch, settings):
    settings.SHOP_PAYMENT_PROVIDERS = ["paypal"]
    transport = ScriptedTransport(paypal_token(), paypal_webhook())
    use_paypal(monkeypatch, transport)
    status, output = run()
    assert status == 0, output
    assert "paypal: OK" in output
    assert_paypal_requests(transport)


def test_paypal_webhook_without_refund_events_is_a_problem(monkeypatch):
    transport = ScriptedTransport(paypal_token(), paypal_webhook(events=PAYPAL_EVENTS[:6]))
    use_paypal(monkeypatch, transport)
    status, output = run("--provider", "paypal")
    assert status == 1, output
    assert "paypal: PROBLEM: webhook 8PT597110X687430LKGECATA is not subscribed to PAYMENT.CAPTURE.REFUNDED" in output
    assert "PAYMENT.CAPTURE.REVERSED" in output
    assert "PAYMENT.PAYOUTSBATCH.SUCCESS" in output
    assert_paypal_requests(transport)


def test_paypal_star_subscription_covers_every_event(monkeypatch):
    use_paypal(monkeypatch, ScriptedTransport(paypal_token(), paypal_webhook(events=["*"])))
    status, output = run("--provider", "paypal")
    assert status == 0, output
    assert "paypal: OK" in output


def test_paypal_webhook_at_another_url_is_a_problem(monkeypatch):
    use_paypal(monkeypatch, ScriptedTransport(paypal_token(), paypal_webhook(url="https://old.example.com/hook")))
    status, output = run("--provider", "paypal")
    assert status == 1, output
    assert f"paypal: PROBLEM: webhook {PAYPAL_WEBHOOK_ID} points at https://old.example.com/hook, not {PAYPAL_URL}" in (
        output
    )


def test_paypal_unknown_webhook_id_is_a_problem(monkeypatch):
    # given: PayPal's documented 404 for a webhook id of no webhook of this app
    not_found = {"name": "INVALID_RESOURCE_ID", "message": "Webhook id not found", "debug_id": "f1c5e6a7b8c9d"}
    transport = ScriptedTransport(paypal_token(), json_response(not_found, status=404))
    use_paypal(monkeypatch, transport)
    # when
    status, output = run("--provider", "paypal")
    # then
    assert status == 1, output
    assert f"paypal: PROBLEM: PayPal knows no webhook {PAYPAL_WEBHOOK_ID}" in output
    assert_paypal_requests(transport)


def test_paypal_refusing_the_credentials_exits_2(monkeypatch):
    refused = {"error": "invalid_client", "error_description": "Client Authentication failed"}
    transport = ScriptedTransport(json_response(refused, status=401))
    use_paypal(monkeypatch, transport)
    status, output = run("--provider", "paypal")
    assert status == 2, output
    assert "paypal: could not ask:" in output
    assert len(transport.requests) == 1


def test_paypal_without_a_webhook_id_is_a_problem_and_asks_nothing(monkeypatch):
    transport = ScriptedTransport()
    use_paypal(monkeypatch, transport, webhook_id="")
    status, output = run("--provider", "paypal")
    assert status == 1, output
    assert "paypal: PROBLEM: PAYPAL_WEBHOOK_ID is empty" in output
    assert transport.requests == []


# --- Flutterwave, selection, summary ---------------------------------------------------------


def test_flutterwave_cannot_be_checked_and_says_what_to_set(monkeypatch):
    transport = ScriptedTransport()
    adapter = FlutterwaveProvider(secret_key="FLWSECK_TEST-x", secret_hash="hash-of-the-studio", transport=transport)
    monkeypatch.setitem(registry._instances, "flutterwave", adapter)
    status, output = run("--provider", "flutterwave")
    assert status == 0, output
    assert "flutterwave: cannot be checked" in output
    assert f"{BASE}/webhooks/flutterwave" in output
    assert "FLUTTERWAVE_SECRET_HASH" in output
    assert "hash-of-the-studio" not in output  # the secret is never printed
    assert transport.requests == []


def test_default_is_the_shops_live_providers_without_the_sandbox(monkeypatch, settings):
    # given: the shop offers Stripe, PayPal and the sandbox
    settings.SHOP_PAYMENT_PROVIDERS = ["stripe", "sandbox", "paypal"]
    use_stripe(monkeypatch, ScriptedTransport(stripe_page(endpoint())))
    paypal = ScriptedTransport(paypal_token(), json_response({"name": "INVALID_RESOURCE_ID"}, status=404))
    use_paypal(monkeypatch, paypal)
    # when
    status, output = run()
    # then: both live providers are asked, the sandbox is not; one problem means exit 1
    assert status == 1, output
    assert "stripe: OK" in output
    assert "paypal: PROBLEM" in output
    assert "sandbox" not in output.replace("api-m.sandbox.paypal.com", "")
    assert "1 OK, 1 with problems" in output


def test_a_provider_not_asked_wins_over_a_problem(monkeypatch):
    use_stripe(monkeypatch, ScriptedTransport(stripe_page(endpoint(status="disabled"))))
    use_paypal(monkeypatch, ScriptedTransport(TransportError("connection refused")))
    status, output = run("--provider", "stripe", "--provider", "paypal")
    assert status == 2, output
    assert "stripe: PROBLEM" in output
    assert "paypal: could not ask:" in output


def test_the_sandbox_is_not_a_provider_to_check():
    with pytest.raises(CommandError, match="invalid choice: 'sandbox'"):
        call_command("payments_webhooks_check", "--provider", "sandbox", stdout=StringIO())
