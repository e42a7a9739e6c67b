"""Signed refund events that cannot be a refund of the payment they name fail for good.

For each provider a checkout of one download (EUR 9.00) is paid through its real paid event,
then a refund event in the provider's real format (signed, posted to the endpoint, processed by
the real consumer) says something no refund of that payment can say: another currency, or an
amount that is not 1..2^63-1 minor units. It must fail for good with a domain error the admin's
failed webhook events show, changing nothing: the order stays paid, its download the shopper's,
the photographer's credit standing, no refund recorded. A long provider event id is refused at
the endpoint rather than merged with another event sharing its first 255 characters.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from apps.commerce.models import Checkout, Entitlement, Refund, Transaction
from apps.ledger.models import LedgerEvent
from apps.payments.models import WebhookEvent
from apps.payments.providers.base import PaymentStatus
from apps.payments.providers.sandbox import build_event
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.helpers import drain_outbox, system_count
from tests.payments import signing_helpers as sign
from tests.payments.provider_transport import use_stripe
from tests.payments.test_webhook_endpoint import post as post_to_endpoint
from tests.payments.test_webhook_money_fuzz import flutterwave_api, flutterwave_holds  # noqa: F401 - a fixture
from tests.payments.test_webhook_processing_fuzz import (
    PAYPAL_KEY,
    PROVIDERS,
    ProviderSessions,
    _forget_pending_messages,
    _open_checkout,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("empty_broker", "flutterwave_api"),
]

HEADERS = {
    # the secret of the Stripe adapter `use_stripe` installs (its sessions are made through it)
    "stripe": lambda body: sign.stripe_headers(body, secret="whsec_local"),
    "paypal": lambda body: sign.paypal_headers(body, PAYPAL_KEY),
    "flutterwave": sign.flutterwave_headers,
    "sandbox": sign.sandbox_headers,
}


def post(provider: str, body: bytes, headers: dict[str, str]) -> Any:
    """POST /webhooks/<provider>: the test client's response."""
    return post_to_endpoint(provider, body, headers)


def _paid_checkout(name: str, client: Any, shop: Any, monkeypatch: Any) -> tuple[str, str]:
    """A checkout of one download (EUR 9.00) paid through the provider's real paid event:
    (its id, its provider session)."""
    transport = ProviderSessions()
    use_stripe(monkeypatch, transport)  # type: ignore[type-var]  # ProviderSessions answers as a transport
    from apps.payments.providers import registry

    registry.get_provider("paypal")._api.transport = transport  # type: ignore[attr-defined]
    sign.paypal_trust(PAYPAL_KEY)
    checkout_id, session = _open_checkout(client, shop, name)
    body = PROVIDERS[name].paid_body(checkout_id, session)
    if name == "flutterwave":
        flutterwave_holds(body)
    assert post(name, body, HEADERS[name](body)).status_code == 200
    drain_outbox(topics={"webhook.received"})
    _forget_pending_messages()
    return checkout_id, session


def refund_event(name: str, *, checkout_id: str, session: str, amount: Any, currency: Any, **extra: Any) -> bytes:
    """A provider's event saying refund `re-<uuid>` of the checkout's payment completed, in its real
    format, with `amount` as the provider writes it (minor units for Stripe and the sandbox, major
    units for PayPal and Flutterwave). `extra`: PayPal's `total` (seller_payable_breakdown
    total_refunded_amount), the sandbox's `own` (refund_amount_minor)."""
    refund_id = f"re-{uuid.uuid4().hex[:16]}"
    if name == "stripe":
        refund = {
            "id": refund_id,
            "object": "refund",
            "amount": amount,
            "currency": currency,
            "status": "succeeded",
            "payment_intent": f"pi_{uuid.uuid4().hex[:14]}",
            "metadata": {"session": session, "checkout_id": checkout_id},
        }
        document: dict[str, Any] = {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": "refund.updated",
            "data": {"object": refund},
        }
    elif name == "paypal":
        resource: dict[str, Any] = {
            "id": refund_id,
            "status": "COMPLETED",
            "amount": {"currency_code": currency, "value": amount},
            "custom_id": checkout_id,
        }
        if "total" in extra:
            resource["seller_payable_breakdown"] = {
                "total_refunded_amount": {"currency_code": currency, "value": extra["total"]}
            }
        document = {
            "id": f"WH-{uuid.uuid4().hex[:16]}",
            "event_version": "1.0",
            "resource_type": "refund",
            "event_type": "PAYMENT.CAPTURE.REFUNDED",
            "resource": resource,
        }
    elif name == "flutterwave":
        data = {
            "id": uuid.uuid4().int % 10**9,
            "amount_refunded": amount,
            "status": "completed",
            "tx_ref": checkout_id,
            "currency": currency,
        }
        document = {"event": "refund.completed", "data": data}
    else:
        return build_event(
            status=PaymentStatus.REFUNDED,
            reference=session,
            checkout_id=checkout_id,
            amount_minor=amount,
            currency=currency,
            refund_id=refund_id,
            refund_amount_minor=extra.get("own"),
        ).body
    return json.dumps(document).encode()


def processed(name: str, body: bytes) -> WebhookEvent:
    """`body` delivered (answered 200) and processed by the consumer; the recorded event. A
    failure the consumer raises for Celery's retry is recorded on the event: read it there."""
    response = post(name, body, HEADERS[name](body))
    assert response.status_code == 200, response.content[:300]
    try:
        drain_outbox(topics={"webhook.received"})
    except Exception:  # noqa: BLE001 - a retryable failure, recorded on the event
        pass
    with system_context("test"):
        return WebhookEvent.objects.get(provider=name, event_id=response.json()["event_id"])


def assert_unchanged(tenant_id: int, checkout_id: str) -> None:
    """The order is paid, its download granted, its one credit standing, no refund recorded."""
    with tenant_context(tenant_id):
        assert Checkout.objects.get(pk=checkout_id).status == Checkout.Status.PAID
        [entitlement] = Entitlement.objects.filter(checkout_id=checkout_id)
        assert entitlement.revoked_at is None
        assert list(Refund.objects.filter(transaction__checkout_id=checkout_id)) == []
    assert system_count(lambda: LedgerEvent.objects.filter(reference=f"checkout:{checkout_id}")) == 1


# --- the refund's currency --------------------------------------------------------------------

# 900 or 400 of JPY as each provider writes them (Stripe and the sandbox in minor units; JPY has
# none below the yen, so PayPal and Flutterwave write the same figure).
OTHER_CURRENCY: dict[str, dict[str, dict[str, Any]]] = {
    "stripe": {"whole": {"amount": 900, "currency": "jpy"}, "part": {"amount": 400, "currency": "jpy"}},
    "paypal": {
        "whole": {"amount": "900", "currency": "JPY", "total": "900"},
        "part": {"amount": "400", "currency": "JPY", "total": "400"},
    },
    "flutterwave": {"whole": {"amount": 900, "currency": "JPY"}, "part": {"amount": 400, "currency": "jpy"}},
    "sandbox": {
        "whole": {"amount": 900, "currency": "JPY", "own": 900},
        "part": {"amount": 400, "currency": "JPY", "own": 400},
    },
}


@pytest.mark.parametrize("size", ["whole", "part"])
@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_a_refund_event_in_another_currency_fails_for_good_and_changes_nothing(
    name: str, size: str, tenant_a, shop, monkeypatch
) -> None:
    # given: a paid checkout of one download, EUR 9.00
    checkout_id, session = _paid_checkout(name, tenant_a.client(), shop, monkeypatch)
    # when: a signed refund event of it says 900 (or 400) JPY went back, naming a refund
    body = refund_event(name, checkout_id=checkout_id, session=session, **OTHER_CURRENCY[name][size])
    event = processed(name, body)
    # then: the event failed for good (in the admin's failed webhook events), naming both
    # currencies; before, 900 JPY refunded the 9.00 EUR payment whole and 400 JPY was recorded as
    # 4.00 EUR given back
    assert event.status == "failed", (event.status, event.outcome)
    assert event.error.startswith("RefundCurrencyMismatch:"), event.error
    assert "JPY" in event.error.upper() and "EUR" in event.error, event.error
    # and: nothing changed
    assert_unchanged(tenant_a.org.pk, checkout_id)


@pytest.mark.parametrize("name", ["stripe", "sandbox"])
def test_a_refund_event_with_an_amount_and_no_currency_fails_for_good_and_changes_nothing(
    name: str, tenant_a, shop, monkeypatch
) -> None:
    # given: a paid checkout of one download, EUR 9.00
    checkout_id, session = _paid_checkout(name, tenant_a.client(), shop, monkeypatch)
    # when: a signed refund event of it says 400 went back, without the currency Stripe's and the
    # sandbox's refunds always carry
    document = json.loads(refund_event(name, checkout_id=checkout_id, session=session, amount=400, currency="EUR"))
    del (document["data"]["object"] if name == "stripe" else document["data"])["currency"]
    event = processed(name, json.dumps(document).encode())
    # then: the event failed for good; nothing was recorded as 4.00 EUR given back
    assert event.status == "failed", (event.status, event.outcome)
    assert event.error.startswith("RefundCurrencyMismatch:"), event.error
    assert_unchanged(tenant_a.org.pk, checkout_id)


@pytest.mark.parametrize("name", ["paypal", "flutterwave"])
def test_a_refund_event_writing_the_payments_currency_in_small_letters_is_the_payments(
    name: str, tenant_a, shop, monkeypatch
) -> None:
    # given: a paid checkout of one download, EUR 9.00
    checkout_id, session = _paid_checkout(name, tenant_a.client(), shop, monkeypatch)
    # when: 4.00 of it is refunded in the provider's dashboard, its event writing `eur`
    extra = {"total": "4.00"} if name == "paypal" else {}
    body = refund_event(name, checkout_id=checkout_id, session=session, amount="4.00", currency="eur", **extra)
    event = processed(name, body)
    # then: 4.00 EUR is recorded as refunded at the provider; the order stays paid
    assert event.status == "processed", (event.status, event.error)
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=checkout_id).status == Checkout.Status.PAID
        [part] = Refund.objects.filter(transaction__checkout_id=checkout_id)
    assert (part.reason, part.amount_minor, part.currency) == ("provider_partial", 400, "EUR")


def test_a_paypal_refund_whose_own_amount_and_total_disagree_on_the_currency_is_refused() -> None:
    # given: a PayPal refund event whose own amount is in JPY while the capture's total is in EUR
    checkout_id = str(uuid.uuid4())
    document = json.loads(
        refund_event("paypal", checkout_id=checkout_id, session="", amount="400", currency="JPY", total="4.00")
    )
    document["resource"]["seller_payable_breakdown"]["total_refunded_amount"]["currency_code"] = "EUR"
    body = json.dumps(document).encode()
    sign.paypal_trust(PAYPAL_KEY)
    # when: it is delivered
    response = post("paypal", body, HEADERS["paypal"](body))
    # then: a 400 problem, nothing recorded (the refund's own 400 JPY would have been read as
    # 4.00 EUR)
    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"] == "application/problem+json"
    assert system_count(lambda: WebhookEvent.objects.all()) == 0


# --- the refund's amount ----------------------------------------------------------------------

BEYOND_BIGINT_MAJOR = "100000000000000000000.00"  # 10^22 cents: a refund row cannot hold it


@pytest.mark.parametrize(
    ("name", "written"),
    [
        ("paypal", {"amount": BEYOND_BIGINT_MAJOR, "currency": "EUR", "total": "4.00"}),
        ("paypal", {"amount": "4.00", "currency": "EUR", "total": BEYOND_BIGINT_MAJOR}),
        ("stripe", {"amount": 2**63, "currency": "eur"}),
        ("stripe", {"amount": 0, "currency": "eur"}),
        ("stripe", {"amount": -400, "currency": "eur"}),
        ("flutterwave", {"amount": BEYOND_BIGINT_MAJOR, "currency": "EUR"}),
        ("sandbox", {"amount": 400, "currency": "EUR", "own": 2**63}),
        ("sandbox", {"amount": 2**63, "currency": "EUR", "own": 400}),
        ("sandbox", {"amount": 400, "currency": "EUR", "own": 0}),
    ],
    ids=[
        "paypal-own-beyond-bigint",
        "paypal-total-beyond-bigint",
        "stripe-beyond-bigint",
        "stripe-zero",
        "stripe-negative",
        "flutterwave-beyond-bigint",
        "sandbox-own-beyond-bigint",
        "sandbox-total-beyond-bigint",
        "sandbox-own-zero",
    ],
)
def test_a_refund_event_for_an_amount_no_refund_can_be_fails_for_good_and_changes_nothing(
    name: str, written: dict[str, Any], tenant_a, shop, monkeypatch
) -> None:
    # given: a paid checkout of one download, EUR 9.00
    checkout_id, session = _paid_checkout(name, tenant_a.client(), shop, monkeypatch)
    # when: a signed refund event of it names a refund of nothing, less, or more than a bigint
    body = refund_event(name, checkout_id=checkout_id, session=session, **written)
    event = processed(name, body)
    # then: the event failed for good, for an operator (before: a refund's own amount beyond a
    # bigint crashed the worker's insert, retried for nothing; a total beyond it refunded the
    # payment whole; nothing or less was processed as nothing to land)
    assert event.status == "failed", (event.status, event.outcome)
    assert event.error.startswith("RefundAmountUnreadable:"), event.error
    # and: nothing changed
    assert_unchanged(tenant_a.org.pk, checkout_id)


# --- the provider's event id --------------------------------------------------------------------


def test_two_flutterwave_events_sharing_their_first_255_characters_are_never_merged(tenant_a) -> None:
    """Flutterwave's event id is derived (`<event>:<data.id>:<status>`): with a long data.id two
    distinct events had the same first 255 characters, and the second was answered as a
    duplicate of the first and never processed."""
    # given: two signed charge events whose data ids differ only after their 300th character
    bodies = [
        json.dumps(
            {
                "event": "charge.completed",
                "data": {
                    "id": "9" * 300 + last,
                    "tx_ref": str(uuid.uuid4()),
                    "amount": "9.00",
                    "currency": "EUR",
                    "status": "successful",
                },
            }
        ).encode()
        for last in ("1", "2")
    ]
    # when: both are delivered
    responses = [post("flutterwave", body, sign.flutterwave_headers(body)) for body in bodies]
    # then: each is refused with a 400 problem naming the id's length, and nothing is recorded
    for response in responses:
        assert response.status_code == 400, response.content[:300]
        assert response["Content-Type"] == "application/problem+json"
        assert "255" in response.json()["detail"], response.json()
    assert system_count(lambda: WebhookEvent.objects.all()) == 0


@pytest.mark.parametrize(("length", "recorded"), [(255, True), (256, False)])
def test_a_stripe_event_id_is_recorded_whole_or_refused(length: int, recorded: bool, tenant_a) -> None:
    # given: a signed Stripe event whose id is `length` characters long
    event_id = "evt_" + "x" * (length - 4)
    body = sign.stripe_session_completed(checkout_id=str(uuid.uuid4()), amount_minor=900, event_id=event_id)
    # when: it is delivered
    response = post("stripe", body, sign.stripe_headers(body))
    # then: an id that fits is recorded as it is; a longer one is a 400 problem, nothing recorded
    assert response.status_code == (200 if recorded else 400), response.content[:300]
    with system_context("test"):
        assert list(WebhookEvent.objects.values_list("event_id", flat=True)) == ([event_id] if recorded else [])


# --- the refund of a charge in another currency than the checkout's -------------------------------


def test_the_refund_of_a_charge_in_another_currency_lands_in_that_currency(tenant_a, shop) -> None:
    """A charge in another currency than the checkout's (Stripe's Adaptive Pricing presents the
    session in the shopper's currency) fails the checkout and is given back in the currency it
    was charged in: the provider's refund event is in that currency, and is the refund of it."""
    # given: a checkout of EUR 9.00 the provider says was paid 900 JPY
    checkout_id, session = _open_checkout(tenant_a.client(), shop, "sandbox")
    facts = {"reference": session, "checkout_id": checkout_id}
    paid = build_event(status=PaymentStatus.PAID, amount_minor=900, currency="JPY", **facts)
    assert processed("sandbox", paid.body).status == "processed"
    with tenant_context(tenant_a.org.pk):
        [refund] = Refund.objects.filter(transaction__checkout_id=checkout_id)
    assert (refund.reason, refund.amount_minor, refund.currency) == ("amount_mismatch", 900, "JPY")
    # when: the provider's event says the 900 JPY went back
    back = build_event(status=PaymentStatus.REFUNDED, amount_minor=900, currency="JPY", refund_id="re-jpy", **facts)
    event = processed("sandbox", back.body)
    # then: the payment is given back whole (before: RefundCurrencyMismatch, failed for good, and
    # the refund Darkroom asked for never landed)
    assert event.status == "processed", (event.status, event.error)
    with tenant_context(tenant_a.org.pk):
        assert Transaction.objects.get(checkout_id=checkout_id).status == Transaction.Status.REFUNDED
        assert Refund.objects.get(pk=refund.pk).landed_at is not None
    # and: a refund event in the checkout's currency is still no refund of that charge
    other = build_event(status=PaymentStatus.REFUNDED, amount_minor=900, currency="EUR", refund_id="re-eur", **facts)
    assert processed("sandbox", other.body).error.startswith("RefundCurrencyMismatch:")


def test_a_flutterwave_refund_naming_no_currency_of_a_charge_in_another_currency_is_read_in_it(
    tenant_a, shop, monkeypatch
) -> None:
    # given: a checkout of EUR 9.00 Flutterwave says (its verify answer too) was paid NGN 9,000.00
    checkout_id, _session = _open_checkout(tenant_a.client(), shop, "flutterwave")
    document = json.loads(sign.flutterwave_charge_completed(checkout_id=checkout_id, amount="9000.00"))
    document["data"]["currency"] = "NGN"
    paid = json.dumps(document).encode()
    flutterwave_holds(paid)
    assert processed("flutterwave", paid).status == "processed"
    with tenant_context(tenant_a.org.pk):
        [refund] = Refund.objects.filter(transaction__checkout_id=checkout_id)
    assert (refund.reason, refund.amount_minor, refund.currency) == ("amount_mismatch", 900_000, "NGN")
    # when: Flutterwave's refund event says 9,000.00 went back, naming no currency
    back = json.loads(refund_event("flutterwave", checkout_id=checkout_id, session="", amount="9000.00", currency=""))
    del back["data"]["currency"]
    event = processed("flutterwave", json.dumps(back).encode())
    # then: read in the currency the payment was charged in, it gives the payment back whole
    assert event.status == "processed", (event.status, event.error)
    with tenant_context(tenant_a.org.pk):
        assert Transaction.objects.get(checkout_id=checkout_id).status == Transaction.Status.REFUNDED
