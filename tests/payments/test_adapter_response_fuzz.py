"""Malformed provider answers are explicit, handled errors, never crashes.

Each adapter call (session create, status, capture, confirm, refund, payout, payout status) is
answered through the scripted transport with the provider's real answer, changed by hypothesis:
members removed or replaced by any JSON value (a list for an object, a string for a number,
null, huge integers, floats, long or NUL-holding strings). The call must return a well-formed
result or raise ProviderError (WebhookPayloadError too where the call confirms an event): a
TypeError or ValueError out of a payout answer would be taken for a refusal and credit the
wallet back while the provider may have paid (`apps.payouts.services.payout_submit`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.payments.providers.base import (
    PaymentState,
    PaymentStatus,
    PayoutResult,
    PayoutStatus,
    ProviderError,
    ProviderSession,
    RefundResult,
    WebhookEnvelope,
    WebhookPayloadError,
)
from apps.payments.providers.flutterwave import FlutterwaveProvider
from apps.payments.providers.http import HttpResponse
from apps.payments.providers.paypal import PayPalProvider
from apps.payments.providers.stripe import StripeProvider
from tests.payments.provider_transport import ScriptedTransport, json_response
from tests.payments.test_webhook_fuzz import JSON_VALUES, _paths

CHECKOUT_ID = "7d1c0b9a-8e7f-4a6b-9c5d-4e3f2a1b0c9d"
PAYOUT_ID = "5b3c8f0e-2a1d-4c6b-9e7f-0a1b2c3d4e5f"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))

LEAVES = st.one_of(
    JSON_VALUES,
    st.sampled_from([2**63, -(2**63) - 1, 10**30, -1, 0, 1e308, "1e400", "NaN", "x" * 5000, "a\u0000b", "\ud800"]),
)


@st.composite
def changed(draw: st.DrawFn, answer: dict[str, Any]) -> dict[str, Any]:
    """`answer` with one to four members replaced by any JSON value, or removed."""
    document = json.loads(json.dumps(answer))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent: Any = document
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(LEAVES)
    return document


def _answer(document: dict[str, Any], status: int = 200) -> HttpResponse:
    body = json.dumps(document).encode()  # a lone surrogate travels as its JSON escape
    return HttpResponse(status, {"Content-Type": "application/json"}, body)


def stripe(*answers: HttpResponse) -> StripeProvider:
    return StripeProvider(
        secret_key="sk_test_local_xxxxxxxx",
        webhook_secrets=["whsec_local"],
        transport=ScriptedTransport(*answers),
        max_network_retries=0,
    )


def flutterwave(*answers: HttpResponse) -> FlutterwaveProvider:
    return FlutterwaveProvider(
        secret_key="FLWSECK_TEST-x",
        secret_hash="hash",
        api_base="https://api.flutterwave.test/v3",
        transport=ScriptedTransport(*answers),
    )


TOKEN = json_response({"access_token": "A21AA-token", "token_type": "Bearer", "expires_in": 32400})


def paypal(*answers: HttpResponse) -> PayPalProvider:
    return PayPalProvider(
        client_id="client",
        client_secret="secret",
        webhook_id="WH-ID",
        api_base="https://api-m.sandbox.paypal.test",
        transport=ScriptedTransport(TOKEN, *answers),
        cert_fetcher=lambda url: b"",
    )


STRIPE_SESSION = {
    "id": "cs_test_a1",
    "object": "checkout.session",
    "url": "https://checkout.stripe.com/c/pay/cs_test_a1",
    "status": "complete",
    "payment_status": "paid",
    "amount_total": 900,
    "currency": "eur",
    "payment_intent": {"id": "pi_1", "object": "payment_intent", "status": "succeeded", "latest_charge": {}},
}
STRIPE_REFUND = {"id": "re_1", "object": "refund", "status": "pending", "amount": 900, "currency": "eur"}
STRIPE_TRANSFER = {
    "id": "tr_1",
    "object": "transfer",
    "amount": 5000,
    "currency": "eur",
    "destination": "acct_1",
    "reversed": False,
    "amount_reversed": 0,
    "transfer_group": PAYOUT_ID,
    "metadata": {"payout_id": PAYOUT_ID},
}
STRIPE_EMPTY_LIST = {"object": "list", "data": [], "has_more": False, "url": "/v1/transfers"}
FLUTTERWAVE_TRANSACTION = {
    "status": "success",
    "message": "Transaction fetched successfully",
    "data": {"id": 4_123_456, "tx_ref": CHECKOUT_ID, "amount": 9, "currency": "EUR", "status": "successful"},
}
FLUTTERWAVE_REFUND = {
    "status": "success",
    "message": "Transaction refund initiated",
    "data": {"id": 75923, "amount_refunded": 9, "status": "completed", "tx_ref": CHECKOUT_ID},
}
FLUTTERWAVE_TRANSFER = {
    "status": "success",
    "message": "Transfer Queued Successfully",
    "data": {"id": 190626, "reference": PAYOUT_ID, "amount": 50, "currency": "NGN", "status": "NEW"},
}
PAYPAL_ORDER = {
    "id": "5O190127TN364715T",
    "status": "COMPLETED",
    "links": [{"rel": "payer-action", "href": "https://www.paypal.com/checkoutnow?token=5O190127TN364715T"}],
    "purchase_units": [
        {
            "reference_id": CHECKOUT_ID,
            "custom_id": CHECKOUT_ID,
            "amount": {"currency_code": "EUR", "value": "9.00"},
            "payments": {
                "captures": [
                    {
                        "id": "3C679366HH908993F",
                        "status": "COMPLETED",
                        "amount": {"currency_code": "EUR", "value": "9.00"},
                    }
                ]
            },
        }
    ],
}
PAYPAL_REFUND = {"id": "1JU08902781691411", "status": "COMPLETED"}
PAYPAL_BATCH = {
    "batch_header": {
        "payout_batch_id": "5UXD2E8A7EBQJ",
        "batch_status": "SUCCESS",
        "sender_batch_header": {"sender_batch_id": PAYOUT_ID},
        "amount": {"currency": "EUR", "value": "50.00"},
    },
    "items": [
        {
            "payout_item_id": "8AELMXH8UB2P8",
            "transaction_status": "SUCCESS",
            "payout_batch_id": "5UXD2E8A7EBQJ",
            "payout_item": {"sender_item_id": PAYOUT_ID, "amount": {"currency": "EUR", "value": "50.00"}},
        }
    ],
}


def _paid_envelope() -> WebhookEnvelope:
    return WebhookEnvelope(
        provider="flutterwave",
        event_id="charge.completed:4123456:successful",
        event_type="charge.completed",
        status=PaymentStatus.PAID,
        reference=CHECKOUT_ID,
        checkout_id=CHECKOUT_ID,
        payment_id="4123456",
        amount_minor=900,
        currency="EUR",
    )


def _session(provider: Any) -> ProviderSession:
    return provider.create_session(
        checkout_id=CHECKOUT_ID,
        amount_minor=900,
        currency="EUR",
        email="ann@example.test",
        description="Darkroom order",
        success_url="https://shop.example/ok",
        cancel_url="https://shop.example/cancel",
    )


def _payout(provider: Any, destination: str, currency: str = "EUR") -> PayoutResult:
    return provider.payout(
        payout_id=PAYOUT_ID, amount_minor=5000, currency=currency, destination=destination, description="payout"
    )


# name -> (the answer hypothesis changes, the call given that changed answer, the errors it may raise)
CALLS: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], object], tuple[type[Exception], ...]]] = {
    "stripe session create": (STRIPE_SESSION, lambda a: _session(stripe(_answer(a))), (ProviderError,)),
    "stripe fetch_status": (
        STRIPE_SESSION,
        lambda a: stripe(_answer(a)).fetch_status(reference="cs_test_a1"),
        (ProviderError,),
    ),
    "stripe refund (session read)": (
        STRIPE_SESSION,
        lambda a: stripe(_answer(a), json_response(STRIPE_REFUND)).refund(
            reference="cs_test_a1", amount_minor=900, idempotency_key="refund:1"
        ),
        (ProviderError,),
    ),
    "stripe refund": (
        STRIPE_REFUND,
        lambda a: stripe(json_response(STRIPE_SESSION), _answer(a)).refund(
            reference="cs_test_a1", amount_minor=900, idempotency_key="refund:1"
        ),
        (ProviderError,),
    ),
    "stripe payout (lookup)": (
        {**STRIPE_EMPTY_LIST, "data": [STRIPE_TRANSFER]},
        lambda a: _payout(stripe(_answer(a), json_response(STRIPE_TRANSFER)), "acct_1"),
        (ProviderError,),
    ),
    "stripe payout": (
        STRIPE_TRANSFER,
        lambda a: _payout(stripe(json_response(STRIPE_EMPTY_LIST), _answer(a)), "acct_1"),
        (ProviderError,),
    ),
    "stripe payout_status": (
        STRIPE_TRANSFER,
        lambda a: stripe(_answer(a)).payout_status(payout_id=PAYOUT_ID, provider_payout_id="tr_1"),
        (ProviderError,),
    ),
    "flutterwave session create": (
        {
            "status": "success",
            "message": "Hosted Link",
            "data": {"link": "https://checkout.flutterwave.com/v3/hosted/pay/x"},
        },
        lambda a: _session(flutterwave(_answer(a))),
        (ProviderError,),
    ),
    "flutterwave fetch_status": (
        FLUTTERWAVE_TRANSACTION,
        lambda a: flutterwave(_answer(a)).fetch_status(reference=CHECKOUT_ID),
        (ProviderError,),
    ),
    "flutterwave confirm_payment": (
        FLUTTERWAVE_TRANSACTION,
        lambda a: flutterwave(_answer(a)).confirm_payment(envelope=_paid_envelope()),
        (ProviderError, WebhookPayloadError),
    ),
    "flutterwave refund (verify)": (
        FLUTTERWAVE_TRANSACTION,
        lambda a: flutterwave(_answer(a), json_response(FLUTTERWAVE_REFUND)).refund(
            reference=CHECKOUT_ID, amount_minor=900, idempotency_key="refund:1"
        ),
        (ProviderError,),
    ),
    "flutterwave refund": (
        FLUTTERWAVE_REFUND,
        lambda a: flutterwave(json_response(FLUTTERWAVE_TRANSACTION), _answer(a)).refund(
            reference=CHECKOUT_ID, amount_minor=900, idempotency_key="refund:1"
        ),
        (ProviderError,),
    ),
    "flutterwave payout": (
        FLUTTERWAVE_TRANSFER,
        lambda a: _payout(
            flutterwave(_answer(a), json_response({"status": "success", "data": []})), "044:0690000031", "NGN"
        ),
        (ProviderError,),
    ),
    "flutterwave payout_status": (
        FLUTTERWAVE_TRANSFER,
        lambda a: flutterwave(_answer(a)).payout_status(payout_id=PAYOUT_ID, provider_payout_id="190626"),
        (ProviderError,),
    ),
    "paypal token": (
        {"access_token": "A21AA-token", "token_type": "Bearer", "expires_in": 32400},
        lambda a: PayPalProvider(
            client_id="c",
            client_secret="s",
            webhook_id="W",
            api_base="https://api-m.sandbox.paypal.test",
            transport=ScriptedTransport(_answer(a), json_response(PAYPAL_ORDER)),
        ).fetch_status(reference="5O190127TN364715T"),
        (ProviderError,),
    ),
    "paypal session create": (PAYPAL_ORDER, lambda a: _session(paypal(_answer(a, 201))), (ProviderError,)),
    "paypal fetch_status": (
        PAYPAL_ORDER,
        lambda a: paypal(_answer(a)).fetch_status(reference="5O190127TN364715T"),
        (ProviderError,),
    ),
    "paypal capture": (
        PAYPAL_ORDER,
        lambda a: paypal(_answer(a, 201)).capture(reference="5O190127TN364715T", idempotency_key="capture:1"),
        (ProviderError,),
    ),
    "paypal refund (order read)": (
        PAYPAL_ORDER,
        lambda a: paypal(_answer(a), json_response(PAYPAL_REFUND, 201)).refund(
            reference="5O190127TN364715T", amount_minor=900, idempotency_key="refund:1"
        ),
        (ProviderError,),
    ),
    "paypal refund": (
        PAYPAL_REFUND,
        lambda a: paypal(json_response(PAYPAL_ORDER), _answer(a, 201)).refund(
            reference="5O190127TN364715T", amount_minor=900, idempotency_key="refund:1"
        ),
        (ProviderError,),
    ),
    "paypal payout": (PAYPAL_BATCH, lambda a: _payout(paypal(_answer(a, 201)), "ann@example.test"), (ProviderError,)),
    "paypal payout refused as a duplicate": (
        {
            "name": "USER_BUSINESS_ERROR",
            "message": "Batch with given sender_batch_id already exists",
            "details": [
                {
                    "issue": "DUPLICATE_REQUEST_ID",
                    "link": [{"href": "https://api-m.paypal.com/v1/payments/payouts/5UXD2E8A7EBQJ"}],
                }
            ],
        },
        lambda a: _payout(paypal(_answer(a, 400), json_response(PAYPAL_BATCH)), "ann@example.test"),
        (ProviderError,),
    ),
    "paypal payout_status": (
        PAYPAL_BATCH,
        lambda a: paypal(_answer(a)).payout_status(payout_id=PAYOUT_ID, provider_payout_id="5UXD2E8A7EBQJ"),
        (ProviderError,),
    ),
}


def _well_formed(result: object) -> None:
    """A result the callers can use as typed: ints for amounts, strings for ids and codes."""
    if isinstance(result, ProviderSession):
        assert isinstance(result.reference, str) and result.reference and isinstance(result.payment_url, str)
    elif isinstance(result, PaymentState | WebhookEnvelope):
        assert isinstance(result.status, PaymentStatus)
        assert result.amount_minor is None or type(result.amount_minor) is int
        assert result.currency is None or isinstance(result.currency, str)
        assert result.payment_id is None or isinstance(result.payment_id, str)
    elif isinstance(result, RefundResult):
        assert isinstance(result.refund_id, str) and isinstance(result.status, PaymentStatus)
        assert type(result.amount_minor) is int and isinstance(result.currency, str)
    elif isinstance(result, PayoutResult):
        assert isinstance(result.provider_payout_id, str) and result.provider_payout_id
        assert isinstance(result.status, PayoutStatus)
        assert type(result.amount_minor) is int and isinstance(result.currency, str)
    else:
        raise AssertionError(f"unexpected result {result!r}")


@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_changed_provider_answer_is_a_result_or_a_provider_error(call: str) -> None:
    answer, make_call, allowed = CALLS[call]
    _well_formed(make_call(answer))  # the provider's own answer works

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    @given(changed_answer=changed(answer))
    def call_with(changed_answer: dict[str, Any]) -> None:
        try:
            result = make_call(changed_answer)
        except allowed:
            return
        _well_formed(result)

    call_with()


# --- what the fuzz above found, pinned ------------------------------------------------------


def test_a_paypal_order_whose_captures_are_not_a_list_is_read_as_no_capture_not_a_crash() -> None:
    """Found by fuzzing PayPal's CHECKOUT.ORDER.COMPLETED (a 500 at the webhook endpoint): a
    `payments.captures` that is not a list raised TypeError in every call that reads an order."""
    # given: PayPal's answer to a capture whose `captures` is a number
    order = json.loads(json.dumps(PAYPAL_ORDER))
    order["purchase_units"][0]["payments"]["captures"] = 7
    # when: the adapter captures (and reads the order back)
    state = paypal(_answer(order, 201)).capture(reference="5O190127TN364715T", idempotency_key="capture:1")
    # then: no capture to go by: not paid
    assert (state.status, state.payment_id) == (PaymentStatus.PENDING, None)


def test_a_flutterwave_verify_answer_with_an_unreadable_amount_is_a_provider_error() -> None:
    """Found by the fuzz above: Flutterwave's own answer with an amount no currency holds raised
    WebhookPayloadError out of fetch_status (and out of refund, which reads it first), an error
    no caller of a provider call expects."""
    # given: Flutterwave's verify answer with an amount of a list
    answer = json.loads(json.dumps(FLUTTERWAVE_TRANSACTION))
    answer["data"]["amount"] = []
    # when / then: the refund stops on a provider error before anything is sent
    with pytest.raises(ProviderError) as refused:
        flutterwave(_answer(answer)).refund(reference=CHECKOUT_ID, amount_minor=900, idempotency_key="refund:1")
    assert not refused.value.retryable


def test_a_flutterwave_verify_answer_with_an_unreadable_transaction_id_is_a_provider_error() -> None:
    """Found by the fuzz above in CI: a transaction id with a lone surrogate went into the refund's
    URL and raised UnicodeEncodeError out of refund."""
    # given: Flutterwave's verify answer whose transaction id is not text a URL can carry
    answer = json.loads(json.dumps(FLUTTERWAVE_TRANSACTION))
    answer["data"]["id"] = "\ud800"
    # when / then: the refund stops on a provider error before anything is sent
    with pytest.raises(ProviderError) as refused:
        flutterwave(_answer(answer)).refund(reference=CHECKOUT_ID, amount_minor=900, idempotency_key="refund:1")
    assert not refused.value.retryable


def test_a_stripe_transfer_list_that_cannot_be_read_is_a_retryable_error_never_a_refusal() -> None:
    """Found by the fuzz above: a transfer list whose data is a number raised AttributeError
    before the payout's transfer was made; the payout service takes anything but a ProviderError
    for a crash. Unreadable, the list may hide an earlier attempt's transfer, so it is retried,
    not taken for a refusal (which would credit the wallet back)."""
    # given: Stripe's answer to the payout's transfer lookup, whose data is no list
    for data in (7, None, {"id": "tr_1"}):
        transport_answers = _answer({**STRIPE_EMPTY_LIST, "data": data})
        # when / then: a retryable ProviderError, and no transfer was asked for
        with pytest.raises(ProviderError) as failed:
            _payout(stripe(transport_answers), "acct_1")
        assert failed.value.retryable
