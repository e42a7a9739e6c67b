"""A second charge's refund in its remaining edge cases: it fails at the provider after it landed,
or the charge is refunded in the provider's dashboard (before or after Darkroom saw the charge).

Either way it concerns that other charge alone: never the order's lines, sums or state. Which
providers can charge one checkout twice: Flutterwave (README "A second charge";
`tests/payments/test_second_charge.py`, whose fake Flutterwave v3 API these tests share). Its
events are delivered through the real endpoint and consumers. A Stripe checkout cannot be charged
twice, but a refund event naming a second charge Darkroom knows is read the same way whatever the
provider, so one test sends Stripe's format too.
"""

from __future__ import annotations

import json
import re
import uuid
from decimal import Decimal

import pytest
from django.core import mail
from django.test import Client

from apps.commerce.services import checkout_refund_request
from apps.commerce.services.payment import refund_retry
from apps.payments.models import WebhookEvent
from apps.payments.services import webhook_events_replay
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.commerce.helpers import drain_outbox
from tests.commerce.test_refund_failed_shopper_told import heading, item_states, order_page, plain
from tests.payments.test_second_charge import (  # noqa: F401 - `flutterwave` is a fixture
    PAID_ORDER,
    PRICE,
    FlutterwaveApi,
    charged,
    delivered,
    flutterwave,
    order,
    paid,
    refund_completed,
    refunds_of,
    refused_second_charge,
    second_charge_metric,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]
FLUTTERWAVE = pytest.mark.usefixtures("flutterwave")  # its fake API: `FlutterwaveApi`, reset for each test


def refund_failed(refund_id: str, transaction_id: str, amount: str, *, comments: str = "Card closed") -> bytes:
    """Flutterwave's `refund.completed` for refund `refund_id` whose status is `failed` (the bank
    returned it: the money is back in the merchant's balance), as its adapter reads it."""
    document = json.loads(refund_completed(refund_id, transaction_id, amount))
    document["data"].update({"status": "failed", "comments": comments})
    return json.dumps(document).encode()


def refunds_metric(status: str) -> float:
    body = Client().get("/metrics").content.decode()
    match = re.search(rf'^darkroom_refunds{{status="{status}"}} (\S+)$', body, re.M)
    assert match, "darkroom_refunds not in /metrics"
    return float(match[1])


def replayed(event: WebhookEvent) -> WebhookEvent:
    """The event processed again (an operator's replay: a new message, so the consumer's inbox
    lets it through); processing must change nothing more."""
    with system_context("test"):
        webhook_events_replay(ids=[event.pk], actor_label="test")
    drain_outbox(topics={"webhook.received"})
    with system_context("test"):
        return WebhookEvent.objects.get(pk=event.pk)


def audits(action: str, checkout_id: str) -> list[AuditLog]:
    with system_context("test"):
        return list(AuditLog.objects.filter(action=action, target_id=checkout_id).order_by("pk"))


def dashboard_refund(api: type[FlutterwaveApi], refund_id: int, transaction_id: str) -> None:
    """The studio refunds a whole transaction in Flutterwave's dashboard: Flutterwave holds that
    refund (a later refund of the same transaction by Darkroom's API call would exceed it)."""
    api.refunds.append({"id": refund_id, "transaction_id": transaction_id, "amount": Decimal(PRICE), "key": ""})


# --- 1. the second charge's refund fails after it landed ---------------------------------------


@FLUTTERWAVE
def test_a_second_charges_refund_that_fails_after_landing_leaves_the_refunded_order_alone_and_is_retried(
    tenant_a, shop
) -> None:
    # given: an order paid by transaction A and charged again (B); B's refund landed; then the
    # studio refunded the order whole (A) and that landed too
    checkout_id, first = paid(tenant_a, shop)
    second, body = charged(checkout_id)
    assert delivered(body).status == "processed"
    drain_outbox()
    [back] = FlutterwaveApi.refunds
    assert delivered(refund_completed(str(back["id"]), second, PRICE)).status == "processed"
    with tenant_context(tenant_a.org.pk):
        checkout_refund_request(tenant_id=tenant_a.org.pk, checkout_id=checkout_id, actor_label="test")
    drain_outbox()
    orders_refund = FlutterwaveApi.refunds[-1]
    landed = delivered(refund_completed(str(orders_refund["id"]), first, PRICE, tx_ref=checkout_id))
    assert landed.status == "processed", landed.error
    drain_outbox()
    mail.outbox.clear()
    refunded_order = order(tenant_a, checkout_id)
    assert refunded_order["checkout"] == "refunded"
    page_before = order_page(tenant_a, checkout_id)
    failed_before = refunds_metric("failed")
    # when: Flutterwave reports B's refund failed (the bank returned it), and the event is
    # processed again (an operator's replay)
    back["amount"] = Decimal(0)  # (Flutterwave holds that money again)
    event = delivered(refund_failed(str(back["id"]), second, PRICE))
    assert event.status == "processed", event.error
    assert replayed(event).status == "processed"
    drain_outbox()
    # then: the shopper's order page reads as before: the order refunded, its item refunded
    # (before: its item and heading said "Refund did not reach you", as if the order's own
    # refund had failed)
    page = order_page(tenant_a, checkout_id)
    assert (heading(page), item_states(page)) == (heading(page_before), item_states(page_before))
    assert "did not reach you" not in plain(page)
    # and: the order, its refund and its books are as they were
    assert order(tenant_a, checkout_id) == refunded_order
    given_back, studio = refunds_of(tenant_a, checkout_id)
    assert (studio.reason, studio.status, studio.landed_at is not None, studio.provider_failed_at) == (
        "studio",
        "submitted",
        True,
        None,
    )
    # and: B's refund is failed, as a refund the provider refused is: nothing came back of it
    assert (given_back.reason, given_back.status, given_back.landed_at, given_back.provider_refund_id) == (
        "duplicate_charge",
        "failed",
        None,
        None,
    )
    assert given_back.failed_provider_refund_ids == [str(back["id"])]
    assert "Card closed" in given_back.last_error
    # and: audited once, and counted where a refused refund alerts (DarkroomRefundFailed)
    [audit] = audits("refund.failed_after_landing", checkout_id)
    assert (audit.data["refund_id"], audit.data["payment_id"]) == (given_back.pk, second)
    assert refunds_metric("failed") == failed_before + 1
    # and: the shopper, told before that B came back, is told once that it did not
    [told] = mail.outbox
    assert told.subject == f"A refund from {tenant_a.org.name} did not reach you ({checkout_id[:8]})"
    assert told.body.startswith(
        f"We are sorry: the refund of your second charge, 9.00 EUR, from {tenant_a.org.name} did not reach your "
        "card or account."
    ), told.body
    assert "This is about the second charge only: your order is as we last told you." in told.body
    # when: an operator, the cause fixed, retries it, and Flutterwave announces the new refund
    with system_context("test: admin"):
        assert refund_retry(refund_id=given_back.pk, actor_label="admin:ops")
    drain_outbox()
    again = FlutterwaveApi.refunds[-1]
    assert (again["transaction_id"], again["key"]) == (second, f"{given_back.idempotency_key}:retry-1")
    assert delivered(refund_completed(str(again["id"]), second, PRICE)).status == "processed"
    drain_outbox()
    # then: it landed on B's refund alone, and the shopper is told B came back; the order as it was
    given_back, _ = refunds_of(tenant_a, checkout_id)
    assert (given_back.status, given_back.provider_refund_id, given_back.landed_at is not None) == (
        "submitted",
        str(again["id"]),
        True,
    )
    assert refunds_metric("failed") == failed_before
    assert order(tenant_a, checkout_id) == refunded_order
    assert [m.subject.split(":")[0] for m in mail.outbox] == [
        f"A refund from {tenant_a.org.name} did not reach you ({checkout_id[:8]})",
        f"You were charged twice by {tenant_a.org.name}",
    ]


# --- 2. the second charge refunded in the provider's dashboard ---------------------------------


@FLUTTERWAVE
@pytest.mark.parametrize("darkroom_refund", ["not sent yet", "refused", "accepted, not landed"])
def test_a_second_charge_refunded_in_flutterwaves_dashboard_is_recorded_on_its_refund(
    tenant_a, shop, darkroom_refund: str
) -> None:
    # given: a paid order charged again (transaction B), whose refund Darkroom has asked for and
    # not sent yet (its message not consumed), that Flutterwave refused, or that Flutterwave
    # accepted and has not announced
    accepted: list[str] = []
    if darkroom_refund == "refused":
        checkout_id, first, second, _ = refused_second_charge(tenant_a, shop, FlutterwaveApi)
    else:
        checkout_id, first = paid(tenant_a, shop)
        second, body = charged(checkout_id)
        assert delivered(body).status == "processed"
        if darkroom_refund == "accepted, not landed":
            drain_outbox()
            accepted = [str(asked["id"]) for asked in FlutterwaveApi.refunds]
            assert [r.status for r in refunds_of(tenant_a, checkout_id)] == ["submitted"]
    failed_before = refunds_metric("failed")
    # when: the studio refunds B in Flutterwave's dashboard, whose event names only B; it is
    # processed twice (an operator's replay)
    dashboard_refund(FlutterwaveApi, 777001, second)
    event = delivered(refund_completed("777001", second, PRICE))
    # then: it is processed (before: retried as a refund Darkroom had not recorded yet, or, once
    # refused or accepted, only logged: a refused refund stayed failed and alerting)
    assert event.status == "processed", event.error
    assert replayed(event).status == "processed"
    drain_outbox()
    # and: B's refund is recorded given back by that refund, and Darkroom asked Flutterwave for
    # nothing more; an attempt of its own Flutterwave accepted is set aside
    [refund] = refunds_of(tenant_a, checkout_id)
    assert (refund.reason, refund.payment_id, refund.status, refund.provider_refund_id) == (
        "duplicate_charge",
        second,
        "submitted",
        "777001",
    )
    assert (refund.landed_at is not None, refund.failed_provider_refund_ids, refund.last_error) == (True, accepted, "")
    assert [str(asked["id"]) for asked in FlutterwaveApi.refunds] == [*accepted, "777001"]
    assert refunds_metric("failed") == failed_before - (1 if darkroom_refund == "refused" else 0)
    # and: audited once; the order stands on its first charge
    [audit] = audits("refund.second_charge_at_provider", checkout_id)
    assert (audit.actor_label, audit.data["payment_id"], audit.data["provider_refund_id"]) == (
        "provider:flutterwave",
        second,
        "777001",
    )
    assert order(tenant_a, checkout_id) == {**PAID_ORDER, "payment_id": first}
    # and: the shopper is told once that the second charge came back
    [told] = mail.outbox
    assert told.subject.startswith(f"You were charged twice by {tenant_a.org.name}"), told.subject
    assert "the second charge, 9.00 EUR, has been refunded in full" in told.body
    # when: the attempt set aside is announced too
    for refund_id in accepted:
        assert delivered(refund_completed(refund_id, second, PRICE)).status == "processed"
    drain_outbox()
    # then: nothing more: one refund, one e-mail, the order as it was
    assert [(r.pk, r.provider_refund_id) for r in refunds_of(tenant_a, checkout_id)] == [(refund.pk, "777001")]
    assert len(mail.outbox) == 1
    assert order(tenant_a, checkout_id) == {**PAID_ORDER, "payment_id": first}


@FLUTTERWAVE
def test_a_second_charge_refunded_at_flutterwave_before_darkroom_saw_it_is_never_refunded_again(tenant_a, shop) -> None:
    # given: an order paid by transaction A, and charged again (B), whose charge.completed has not
    # reached Darkroom yet; the studio refunds B in Flutterwave's dashboard
    checkout_id, first = paid(tenant_a, shop)
    counted = second_charge_metric()
    second, paid_twice = charged(checkout_id)
    dashboard_refund(FlutterwaveApi, 777002, second)
    # when: Flutterwave announces that refund (naming the tx_ref and B), processed twice
    event = delivered(refund_completed("777002", second, PRICE, tx_ref=checkout_id))
    # then: the order stands on A (before: B's 9.00 EUR back was read as the order's whole
    # payment back: the order refunded, its download revoked, its credit reversed)
    assert event.status == "processed", event.error
    assert replayed(event).status == "processed"
    assert order(tenant_a, checkout_id) == {**PAID_ORDER, "payment_id": first}
    # and: B is recorded as a second charge, given back by that refund; audited, counted
    [refund] = refunds_of(tenant_a, checkout_id)
    assert (refund.reason, refund.payment_id, refund.amount_minor, refund.currency, refund.status) == (
        "duplicate_charge",
        second,
        900,
        "EUR",
        "submitted",
    )
    assert (refund.provider_refund_id, refund.landed_at is not None) == ("777002", True)
    [audit] = audits("refund.second_charge_at_provider", checkout_id)
    assert (audit.data["payment_id"], audit.data["first_payment_id"]) == (second, first)
    assert second_charge_metric() == counted + 1
    # when: B's charge.completed arrives after all
    assert delivered(paid_twice).status == "processed"
    drain_outbox()
    # then: no second refund of B: Flutterwave is asked nothing, the order still stands
    assert [r.pk for r in refunds_of(tenant_a, checkout_id)] == [refund.pk]
    assert [asked["id"] for asked in FlutterwaveApi.refunds] == [777002]
    assert order(tenant_a, checkout_id) == {**PAID_ORDER, "payment_id": first}
    assert second_charge_metric() == counted + 1
    # and: the shopper is told once that the second charge came back
    [told] = mail.outbox
    assert told.subject.startswith(f"You were charged twice by {tenant_a.org.name}"), told.subject


@FLUTTERWAVE
def test_a_dashboard_refund_of_part_of_a_second_charge_fails_for_an_operator_and_records_nothing(
    tenant_a, shop
) -> None:
    # given: a paid order charged again (B), its refund not sent yet
    checkout_id, first = paid(tenant_a, shop)
    second, body = charged(checkout_id)
    assert delivered(body).status == "processed"
    # when: the studio refunds 4.00 of B's 9.00 in Flutterwave's dashboard
    event = delivered(refund_completed("777003", second, "4.00"))
    # then: the event fails for good, saying what to do; nothing is recorded
    assert (event.status, event.error.split(":")[0]) == ("failed", "SecondChargeRefundedInPart"), event.error
    assert "4.00 EUR of the second charge" in event.error and "9.00 EUR" in event.error, event.error
    [refund] = refunds_of(tenant_a, checkout_id)
    assert (refund.status, refund.provider_refund_id, refund.landed_at) == ("requested", None, None)
    assert order(tenant_a, checkout_id) == {**PAID_ORDER, "payment_id": first}


# --- Stripe's format -------------------------------------------------------------------------


def stripe_refund_event(event_type: str, *, refund_id: str, payment_intent: str, amount: int) -> bytes:
    """Stripe's `refund.created` / `refund.updated` of a refund made in its dashboard: the object
    is the refund, naming its PaymentIntent and no metadata (Darkroom's refunds carry the session)."""
    refund = {
        "id": refund_id,
        "object": "refund",
        "amount": amount,
        "currency": "eur",
        "status": "succeeded",
        "payment_intent": payment_intent,
        "charge": f"ch_{uuid.uuid4().hex[:14]}",
        "metadata": {},
    }
    document = {"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": event_type, "data": {"object": refund}}
    return json.dumps(document).encode()


def test_a_second_charge_refunded_in_stripes_dashboard_is_recorded_once_whatever_the_event(
    tenant_a, shop, monkeypatch
) -> None:
    from tests.payments.test_webhook_processing_fuzz import PROVIDERS
    from tests.payments.test_webhook_refund_checks import _paid_checkout, processed

    # given: a Stripe checkout paid, then told paid again by another PaymentIntent (Stripe does
    # not do this; Darkroom gives such a charge back whatever the provider), its refund not sent
    checkout_id, session = _paid_checkout("stripe", tenant_a.client(), shop, monkeypatch)
    again = PROVIDERS["stripe"].paid_body(checkout_id, session)
    assert processed("stripe", again).status == "processed"
    [refund] = refunds_of(tenant_a, checkout_id)
    assert (refund.reason, refund.status) == ("duplicate_charge", "requested")
    first = order(tenant_a, checkout_id)["payment_id"]
    mail.outbox.clear()
    # when: that PaymentIntent is refunded in Stripe's dashboard: refund.created, then refund.updated
    for event_type in ("refund.created", "refund.updated"):
        body = stripe_refund_event(event_type, refund_id="re_dash_1", payment_intent=refund.payment_id, amount=900)
        event = processed("stripe", body)
        assert event.status == "processed", event.error
    drain_outbox()
    # then: the second charge's refund is recorded once, given back by that refund; Darkroom's own
    # is never sent (its message consumed, no call to Stripe); the order stands
    [recorded] = refunds_of(tenant_a, checkout_id)
    assert (recorded.pk, recorded.status, recorded.provider_refund_id, recorded.attempts) == (
        refund.pk,
        "submitted",
        "re_dash_1",
        0,
    )
    assert recorded.landed_at is not None
    assert len(audits("refund.second_charge_at_provider", checkout_id)) == 1
    assert order(tenant_a, checkout_id) == {**PAID_ORDER, "payment_id": first}
    [told] = mail.outbox
    assert told.subject.startswith(f"You were charged twice by {tenant_a.org.name}"), told.subject
