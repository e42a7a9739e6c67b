"""Ending a payment session with its checkout: each adapter's session lifetime on create and its
`close_payment_session`, checked on the exact HTTP request it makes (or that it makes none)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from django.core.cache import cache

from apps.payments.providers.base import PaymentStatus, ProviderError, SessionCloseOutcome
from apps.payments.providers.flutterwave import FlutterwaveProvider
from apps.payments.providers.paypal import PayPalProvider
from apps.payments.providers.sandbox import SandboxProvider
from apps.payments.providers.stripe import StripeProvider
from tests.payments.provider_transport import ScriptedTransport, form_body, json_body, json_response, path

NOW = 1_750_000_000
CHECKOUT_ID = "4f9c1e0a-6b7d-4c1e-9a55-2a3b4c5d6e7f"
SESSION_ID = "cs_test_a1"
CHECKOUT_EXPIRES = datetime.fromtimestamp(NOW + 15 * 60, tz=UTC)  # the default 15-minute checkout


def stripe(transport: ScriptedTransport, *, now: float = NOW, retries: int = 0) -> StripeProvider:
    return StripeProvider(
        secret_key="sk_test_local_xxxxxxxx",
        webhook_secrets=["whsec_local"],
        transport=transport,
        max_network_retries=retries,
        now=lambda: now,
    )


def stripe_session(**fields: object) -> dict[str, object]:
    return {"id": SESSION_ID, "object": "checkout.session", "url": "https://checkout.stripe.com/c/pay/a1"} | fields


def stripe_error(status: int, message: str, error_type: str = "invalid_request_error"):
    return json_response({"error": {"type": error_type, "message": message}}, status=status)


def create_stripe_session(adapter: StripeProvider, expires_at: datetime | None = CHECKOUT_EXPIRES):
    return adapter.create_session(
        checkout_id=CHECKOUT_ID,
        amount_minor=1500,
        currency="EUR",
        email="shopper@example.com",
        description="order",
        success_url="https://darkroom.test/ok",
        cancel_url="https://darkroom.test/ok",
        expires_at=expires_at,
    )


# --- Stripe: expires_at on create -----------------------------------------------------------------


def test_stripe_session_expires_35_minutes_after_its_checkout_whenever_the_attempt_runs():
    # given: a checkout expiring at NOW + 15 min; two attempts, at NOW and 10 minutes later
    first, retry = (
        ScriptedTransport(json_response(stripe_session())),
        ScriptedTransport(json_response(stripe_session())),
    )
    # when: both create its session (the retry reuses the checkout id as idempotency key)
    create_stripe_session(stripe(first, now=NOW))
    create_stripe_session(stripe(retry, now=NOW + 600))
    # then: both send the same expires_at, 35 minutes after the checkout's expiry, so Stripe's
    # idempotency layer sees the same parameters, and the value is at least 30 minutes ahead
    sent = [form_body(t.requests[0])["expires_at"] for t in (first, retry)]
    assert sent == [[str(NOW + 15 * 60 + 35 * 60)]] * 2
    assert int(sent[0][0]) - (NOW + 600) >= 30 * 60
    assert first.requests[0].header("Idempotency-Key") == CHECKOUT_ID


def test_stripe_session_of_a_checkout_living_almost_a_day_keeps_stripes_default_lifetime():
    transport = ScriptedTransport(json_response(stripe_session()))
    # 23 h 30 min + 35 min would pass Stripe's 24-hour cap (less a 5-minute margin)
    create_stripe_session(stripe(transport), expires_at=datetime.fromtimestamp(NOW + 23 * 3600 + 1800, tz=UTC))
    assert "expires_at" not in form_body(transport.requests[0])


def test_stripe_session_without_a_checkout_expiry_sends_none():
    transport = ScriptedTransport(json_response(stripe_session()))
    create_stripe_session(stripe(transport), expires_at=None)
    assert "expires_at" not in form_body(transport.requests[0])


# --- Stripe: close ------------------------------------------------------------------------------


def test_stripe_close_expires_the_session_with_its_own_idempotency_key():
    # given: Stripe answers the expire call with the session, now expired
    transport = ScriptedTransport(json_response(stripe_session(status="expired")))
    # when
    outcome = stripe(transport).close_payment_session(reference=SESSION_ID)
    # then: exactly one POST to the session's expire endpoint, authenticated, keyed by the session
    assert outcome is SessionCloseOutcome.CLOSED
    [request] = transport.requests
    assert (request.method, path(request)) == (
        "POST",
        f"https://api.stripe.com/v1/checkout/sessions/{SESSION_ID}/expire",
    )
    assert request.header("Authorization") == "Bearer sk_test_local_xxxxxxxx"
    assert request.header("Idempotency-Key") == f"expire:{SESSION_ID}"
    assert not request.body  # no parameters


@pytest.mark.parametrize(
    ("status", "outcome"),
    [("expired", SessionCloseOutcome.ALREADY_CLOSED), ("complete", SessionCloseOutcome.COMPLETED)],
)
def test_stripe_refusing_to_expire_a_session_that_is_not_open_is_nothing_to_do(status, outcome):
    # given: Stripe refuses the expire call (the session is no longer open); read back, it is `status`
    transport = ScriptedTransport(
        stripe_error(400, "Only Checkout Sessions with status open can be expired."),
        json_response(stripe_session(status=status)),
    )
    # when / then: the refusal is checked against the session itself, and is not an error
    assert stripe(transport).close_payment_session(reference=SESSION_ID) is outcome
    _expire, read = transport.requests
    assert (read.method, path(read)) == ("GET", f"https://api.stripe.com/v1/checkout/sessions/{SESSION_ID}")


def test_stripe_refusal_for_a_session_still_open_is_raised():
    transport = ScriptedTransport(stripe_error(400, "bad request"), json_response(stripe_session(status="open")))
    with pytest.raises(ProviderError) as caught:
        stripe(transport).close_payment_session(reference=SESSION_ID)
    assert (caught.value.retryable, caught.value.http_status) == (False, 400)


@pytest.mark.parametrize(("status", "error_type"), [(500, "api_error"), (429, "rate_limit_error")])
def test_stripe_outage_while_closing_is_retryable_and_reads_nothing_back(status, error_type):
    transport = ScriptedTransport(stripe_error(status, "try later", error_type))
    with pytest.raises(ProviderError) as caught:
        stripe(transport).close_payment_session(reference=SESSION_ID)
    assert caught.value.retryable
    assert len(transport.requests) == 1


# --- Flutterwave ----------------------------------------------------------------------------------


def flutterwave(transport: ScriptedTransport, *, now: float = NOW) -> FlutterwaveProvider:
    return FlutterwaveProvider(
        secret_key="FLWSECK_TEST-local-X",
        secret_hash="",
        api_base="https://api.flutterwave.com/v3",
        transport=transport,
        now=lambda: now,
    )


@pytest.mark.parametrize(
    ("remaining_seconds", "minutes"),
    [(15 * 60, 15), (14 * 60 + 1, 15), (20, 1), (-30, 1), (3 * 24 * 3600, 1440)],
)
def test_flutterwave_session_duration_is_the_checkouts_remaining_lifetime(remaining_seconds, minutes):
    # given: a checkout with `remaining_seconds` left
    transport = ScriptedTransport(json_response({"status": "success", "data": {"link": "https://checkout.flw/pay/x"}}))
    # when: its hosted payment is created
    flutterwave(transport).create_session(
        checkout_id=CHECKOUT_ID,
        amount_minor=1500,
        currency="NGN",
        email="shopper@example.com",
        description="d",
        success_url="https://darkroom.test/done",
        cancel_url="https://darkroom.test/done",
        expires_at=datetime.fromtimestamp(NOW + remaining_seconds, tz=UTC),
    )
    # then: `session_duration` is that lifetime in whole minutes, rounded up, within 1..1440
    [request] = transport.requests
    assert (request.method, request.url) == ("POST", "https://api.flutterwave.com/v3/payments")
    assert json_body(request)["session_duration"] == minutes


def test_flutterwave_has_nothing_to_close_and_sends_nothing():
    transport = ScriptedTransport()  # any request would fail the test
    assert flutterwave(transport).close_payment_session(reference=CHECKOUT_ID) is SessionCloseOutcome.NOT_SUPPORTED
    assert transport.requests == []


# --- PayPal ---------------------------------------------------------------------------------------


def test_paypal_has_nothing_to_close_and_sends_nothing():
    transport = ScriptedTransport()
    adapter = PayPalProvider(
        client_id="client-local", client_secret="secret-local", webhook_id="WH-local", transport=transport
    )
    assert adapter.close_payment_session(reference="5O190127TN364715T") is SessionCloseOutcome.NOT_SUPPORTED
    assert transport.requests == []


# --- sandbox --------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox(clock: Clock) -> SandboxProvider:
    return SandboxProvider(webhook_secrets=["local"], public_base_url="http://127.0.0.1:8000/", cache=cache, now=clock)


def sandbox_session(sandbox: SandboxProvider, *, expires_in: float | None = 15 * 60) -> str:
    checkout_id = str(uuid.uuid4())
    expires_at = datetime.fromtimestamp(NOW + expires_in, tz=UTC) if expires_in is not None else None
    return sandbox.create_session(
        checkout_id=checkout_id,
        amount_minor=1500,
        currency="EUR",
        email="shopper@example.com",
        description="photos",
        success_url="http://127.0.0.1:8000/done",
        cancel_url="http://127.0.0.1:8000/done",
        expires_at=expires_at,
    ).reference


def test_sandbox_closed_session_refuses_pay_and_fail(sandbox):
    # given: an open session, closed because its checkout expired
    reference = sandbox_session(sandbox)
    assert sandbox.close_payment_session(reference=reference) is SessionCloseOutcome.CLOSED
    # when / then: the pay page's Pay and Fail are refused, nothing is charged
    for outcome in (PaymentStatus.PAID, PaymentStatus.FAILED):
        with pytest.raises(ProviderError, match="has expired; nothing was charged") as caught:
            sandbox.settle(reference=reference, outcome=outcome)
        assert (caught.value.http_status, caught.value.retryable) == (409, False)
    assert sandbox.fetch_status(reference=reference).status == PaymentStatus.EXPIRED
    # and: closing again is nothing to do
    assert sandbox.close_payment_session(reference=reference) is SessionCloseOutcome.ALREADY_CLOSED


def test_sandbox_session_paid_before_the_close_stays_paid(sandbox):
    reference = sandbox_session(sandbox)
    event = sandbox.settle(reference=reference, outcome=PaymentStatus.PAID)
    assert sandbox.close_payment_session(reference=reference) is SessionCloseOutcome.COMPLETED
    assert sandbox.fetch_status(reference=reference).status == PaymentStatus.PAID
    assert sandbox.settle(reference=reference, outcome=PaymentStatus.PAID) == event  # a double click


def test_sandbox_session_closes_itself_when_its_checkout_expires(sandbox, clock):
    # given: two sessions of checkouts expiring in 15 minutes; the first is paid in time
    paid_in_time, unpaid = sandbox_session(sandbox), sandbox_session(sandbox)
    sandbox.settle(reference=paid_in_time, outcome=PaymentStatus.PAID)
    # when: the checkouts' expiry passes, and no close call ever came
    clock.now = NOW + 15 * 60
    # then: the unpaid session refuses payment; the paid one still repeats its event
    with pytest.raises(ProviderError, match="has expired"):
        sandbox.settle(reference=unpaid, outcome=PaymentStatus.PAID)
    sandbox.settle(reference=paid_in_time, outcome=PaymentStatus.PAID)
    assert sandbox.close_payment_session(reference=unpaid) is SessionCloseOutcome.ALREADY_CLOSED


def test_sandbox_session_without_an_expiry_stays_payable(sandbox, clock):
    reference = sandbox_session(sandbox, expires_in=None)
    clock.now = NOW + 7 * 24 * 3600
    assert sandbox.settle(reference=reference, outcome=PaymentStatus.PAID).event_type == "payment.paid"


def test_sandbox_closing_an_unknown_session_is_a_provider_error(sandbox):
    with pytest.raises(ProviderError) as caught:
        sandbox.close_payment_session(reference="sbx_unknown")
    assert (caught.value.http_status, caught.value.retryable) == (404, False)
