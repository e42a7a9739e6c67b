"""A second successful charge for a checkout already paid is given back, and only that charge.

Which providers can charge one checkout twice (the adapters' flows; README "A second charge"):
Flutterwave cannot be ruled out. Its hosted page is one `tx_ref` (the checkout id) that takes
several attempts (`max_retry_attempt`), each a transaction of its own id, and its documentation
asks the merchant for a unique tx_ref but states no rule that only one transaction of it may
succeed: a shopper who pays again in a second tab, or by bank transfer after paying by card, may
be charged twice, each successful transaction with its own `charge.completed`. Stripe
cannot (a Checkout Session has one PaymentIntent, which succeeds once), nor PayPal (a
CAPTURE-intent order is captured once; another capture is refused ORDER_ALREADY_CAPTURED), nor
the sandbox (one outcome per session); a payment in another session of the same checkout is not
applied (`SessionMismatch`). Those adapters refund only their session's own payment.

Each Flutterwave test runs a checkout of one download (9.00 EUR) through the real endpoint and
consumers, with Flutterwave's v3 API played by a local fake that holds the transactions of each
tx_ref and refunds them one by one (its verify-by-reference answers the latest transaction of a
tx_ref: which one Flutterwave answers when there are several is not documented).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import mail
from django.db import IntegrityError, transaction
from django.test import Client, override_settings
from django.utils import timezone

from apps.commerce.models import Checkout, Entitlement, Refund, Transaction
from apps.commerce.services import checkout_refund_request, checkouts_expire_due
from apps.commerce.services.payment import whole_refund_minor
from apps.ledger.models import LedgerEvent
from apps.payments.models import WebhookEvent
from apps.payments.providers.base import PaymentStatus, ProviderError
from apps.payments.providers.sandbox import SandboxProvider
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import drain_outbox
from tests.payments import signing_helpers as sign
from tests.payments.provider_transport import JsonHandler, ScriptedTransport, json_body, json_response, serving
from tests.payments.test_webhook_endpoint import post

PRICE = "9.00"  # the shop's download, EUR


# --- Flutterwave's v3 API, as far as these checkouts need it -----------------------------------


class FlutterwaveApi(JsonHandler):
    """The hosted payment link, the transactions Flutterwave holds (by id, each with its tx_ref),
    verify by id and by reference, and refunds of one transaction each: `X-Idempotency-Key`
    replays the first answer, and a transaction is refunded at most up to its amount."""

    transactions: ClassVar[dict[str, dict[str, Any]]] = {}
    refunds: ClassVar[list[dict[str, Any]]] = []
    answers: ClassVar[dict[str, dict[str, Any]]] = {}
    refusing: ClassVar[set[str]] = set()  # transactions whose refunds Flutterwave refuses (for now)
    lock = threading.Lock()

    @classmethod
    def reset(cls) -> None:
        cls.transactions, cls.refunds, cls.answers, cls.refusing = {}, [], {}, set()

    def _body(self) -> dict[str, Any]:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return json.loads(raw) if raw else {}

    def do_POST(self) -> None:
        body = self._body()
        path = urlsplit(self.path).path
        if path.endswith("/payments"):
            self.send_json(200, {"status": "success", "data": {"link": "https://checkout.flutterwave.test/pay/x"}})
            return
        match = re.fullmatch(r"/v3/transactions/([^/]+)/refund", path)
        assert match, path
        key = self.headers.get("X-Idempotency-Key") or ""
        with self.lock:
            if key in self.answers:
                self.send_json(200, self.answers[key])
                return
            if match[1] in self.refusing:
                self.send_json(400, {"status": "error", "message": "Insufficient balance to process refund"})
                return
            charge = self.transactions[match[1]]
            amount = Decimal(str(body["amount"]))
            refunded = sum((r["amount"] for r in self.refunds if r["transaction_id"] == match[1]), Decimal(0))
            if refunded + amount > Decimal(charge["amount"]):
                self.send_json(400, {"status": "error", "message": "Refund amount exceeds the transaction amount"})
                return
            refund_id = 600_000 + len(self.refunds)
            self.refunds.append({"id": refund_id, "transaction_id": match[1], "amount": amount, "key": key})
            data = {"id": refund_id, "tx_id": int(match[1]), "amount_refunded": float(amount), "status": "completed"}
            self.answers[key] = {"status": "success", "message": "Transaction refund initiated", "data": data}
            self.send_json(200, self.answers[key])

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path.endswith("/verify_by_reference"):
            [tx_ref] = parse_qs(parts.query)["tx_ref"]
            found = [charge for charge in self.transactions.values() if charge["tx_ref"] == tx_ref]
            if not found:
                self.send_json(404, {"status": "error", "message": "No transaction was found for this id"})
            else:
                self.send_json(200, {"status": "success", "data": found[-1]})
            return
        transaction_id = parts.path.rstrip("/").split("/")[-2]  # /v3/transactions/<id>/verify
        if transaction_id not in self.transactions:
            self.send_json(404, {"status": "error", "message": "No transaction was found for this id"})
        else:
            self.send_json(200, {"status": "success", "data": self.transactions[transaction_id]})


@pytest.fixture
def flutterwave() -> Iterator[type[FlutterwaveApi]]:
    FlutterwaveApi.reset()
    with serving(FlutterwaveApi) as url, override_settings(FLUTTERWAVE_API_BASE=f"{url}/v3"):
        yield FlutterwaveApi


def open_checkout(tenant: Any, shop: Any) -> str:
    """A checkout of one download awaiting its payment on Flutterwave's hosted page."""
    checkout_id = post_checkout(
        tenant.client(), checkout_body(shop, {"product": shop.download.pk}, provider="flutterwave")
    ).json()["id"]
    drain_outbox()  # its payment link
    return str(checkout_id)


def charged(checkout_id: str, amount: str = PRICE, currency: str = "EUR") -> tuple[str, bytes]:
    """The shopper pays on the checkout's hosted page: a successful transaction of its tx_ref, as
    Flutterwave holds it (what its verify endpoint answers), and its `charge.completed` (v3)."""
    transaction_id = str(4_000_000 + uuid.uuid4().int % 1_000_000)
    charge = {
        "id": int(transaction_id),
        "tx_ref": checkout_id,
        "flw_ref": f"FLW-MOCK-{transaction_id}",
        "amount": amount,
        "currency": currency,
        "charged_amount": amount,
        "status": "successful",
        "payment_type": "card",
    }
    FlutterwaveApi.transactions[transaction_id] = charge
    return transaction_id, json.dumps({"event": "charge.completed", "data": charge}).encode()


def refund_completed(refund_id: str, transaction_id: str, amount: str, *, tx_ref: str | None = None) -> bytes:
    """Flutterwave's v3 `refund.completed` for refund `refund_id` of transaction `transaction_id`
    (as its documented sample: the transaction's id, not always its tx_ref)."""
    data: dict[str, Any] = {
        "id": int(refund_id),
        "AmountRefunded": Decimal(amount),
        "status": "completed",
        "FlwRef": f"URF_{refund_id}",
        "destination": "payment_source",
        "comments": "Refund",
        "TransactionId": int(transaction_id),
        "currency": "EUR",
        "createdAt": "2026-06-16T09:00:00.000Z",
    }
    if tx_ref is not None:
        data["tx_ref"] = tx_ref
    return json.dumps({"event": "refund.completed", "data": data}, default=str).encode()


def delivered(body: bytes) -> WebhookEvent:
    """`body` signed, posted to /webhooks/flutterwave (answered 200) and processed by the consumer:
    the recorded event. A failure raised for Celery's retry is recorded on it: read it there."""
    response = post("flutterwave", body, sign.flutterwave_headers(body))
    assert response.status_code == 200, response.content[:300]
    try:
        drain_outbox(topics={"webhook.received"})
    except Exception:  # noqa: BLE001 - a retryable failure, recorded on the event
        pass
    with system_context("test"):
        return WebhookEvent.objects.get(provider="flutterwave", event_id=response.json()["event_id"])


def paid(tenant: Any, shop: Any) -> tuple[str, str]:
    """A checkout paid by its first charge, its receipt sent: (checkout id, transaction id)."""
    checkout_id = open_checkout(tenant, shop)
    first, body = charged(checkout_id)
    assert delivered(body).status == "processed"
    drain_outbox()
    mail.outbox.clear()
    return checkout_id, first


def refunds_of(tenant: Any, checkout_id: str) -> list[Refund]:
    with tenant_context(tenant.org.pk):
        return list(Refund.objects.filter(transaction__checkout_id=checkout_id).order_by("pk"))


def order(tenant: Any, checkout_id: str) -> dict[str, Any]:
    """What the order is: its status, its payment's, the payment id, live downloads, the ledger."""
    with tenant_context(tenant.org.pk):
        checkout = Checkout.objects.get(pk=checkout_id)
        txn = Transaction.objects.get(checkout_id=checkout_id)
        live = Entitlement.objects.filter(checkout_id=checkout_id, revoked_at__isnull=True).count()
    with system_context("test"):
        kinds = sorted(LedgerEvent.objects.filter(reference=f"checkout:{checkout_id}").values_list("kind", flat=True))
    return {
        "checkout": checkout.status,
        "payment": txn.status,
        "payment_id": txn.payment_id,
        "live": live,
        "ledger": kinds,
    }


PAID_ORDER = {"checkout": "paid", "payment": "paid", "live": 1, "ledger": ["credit"]}


def second_charge_metric(provider: str = "flutterwave") -> float:
    body = Client().get("/metrics").content.decode()
    match = re.search(rf'^darkroom_refunds_second_charge_total{{provider="{provider}"}} (\S+)$', body, re.M)
    assert match, "darkroom_refunds_second_charge_total not in /metrics"
    return float(match[1])


# --- Flutterwave: one tx_ref charged twice ----------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_second_flutterwave_charge_of_a_paid_order_is_given_back_and_the_order_stands(
    tenant_a, shop, flutterwave
) -> None:
    # given: a checkout of one download paid by Flutterwave transaction A
    checkout_id, first = paid(tenant_a, shop)
    counted = second_charge_metric()
    # when: the shopper pays on the same hosted page again: transaction B of the same tx_ref
    second, body = charged(checkout_id)
    event = delivered(body)
    # then: a refund of that charge, B's 9.00 EUR, is asked for, naming B (before: nothing at
    # all; the second 9.00 EUR was kept, silently)
    assert event.status == "processed", event.error
    [refund] = refunds_of(tenant_a, checkout_id)
    assert (refund.reason, refund.payment_id, refund.amount_minor, refund.currency, refund.status) == (
        "duplicate_charge",
        second,
        900,
        "EUR",
        "requested",
    )
    # and: the order stands on its first charge: paid, its download the shopper's, its one credit
    assert order(tenant_a, checkout_id) == {**PAID_ORDER, "payment_id": first}
    # and: the decision is audited, and counted where an operator sees it
    with system_context("test"):
        [audit] = AuditLog.objects.filter(action="refund.second_charge", target_id=checkout_id)
    assert (audit.actor_label, audit.data["payment_id"], audit.data["first_payment_id"]) == (
        "provider:flutterwave",
        second,
        first,
    )
    assert second_charge_metric() == counted + 1
    # when: its message is consumed
    drain_outbox()
    # then: Flutterwave was asked to refund transaction B (not A, nor whatever the tx_ref names),
    # all of it, with the refund's idempotency key
    [asked] = flutterwave.refunds
    assert (asked["transaction_id"], asked["amount"], asked["key"]) == (second, Decimal(PRICE), refund.idempotency_key)
    [refund] = refunds_of(tenant_a, checkout_id)
    assert (refund.status, refund.provider_refund_id) == ("submitted", str(asked["id"]))
    # when: Flutterwave announces that refund (naming transaction B, not the tx_ref)
    landed = delivered(refund_completed(str(asked["id"]), second, PRICE))
    drain_outbox()
    # then: it lands on the second charge's refund; the order is as it was (before: a refund of
    # 9.00 EUR was taken for the whole payment back, refunding the order)
    assert landed.status == "processed", landed.error
    [refund] = refunds_of(tenant_a, checkout_id)
    assert refund.landed_at is not None
    assert order(tenant_a, checkout_id) == {**PAID_ORDER, "payment_id": first}
    # and: the shopper is told, in plain words, that they were charged twice and the second charge
    # went back, and that the order is theirs as before
    [told] = mail.outbox
    assert told.to == ["ann@example.test"]
    assert (
        told.subject
        == f"You were charged twice by {tenant_a.org.name}: the second charge was refunded ({checkout_id[:8]})"
    )
    assert told.body.startswith(
        f"You were charged twice for your order with {tenant_a.org.name}: the second charge, 9.00 EUR, has been "
        "refunded in full.\nYour order was paid by your first payment and stays yours as before."
    ), told.body
    assert "The money goes back the way you paid" in told.body


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_second_charge_told_again_is_given_back_once(tenant_a, shop, flutterwave) -> None:
    # given: a paid checkout, charged a second time
    checkout_id, _ = paid(tenant_a, shop)
    second, body = charged(checkout_id)
    assert delivered(body).status == "processed"
    # when: the same charge is delivered again (a redelivery, deduplicated), told by an event of its
    # own id (Flutterwave's v4 deliveries carry one), and that event replayed by an operator
    post("flutterwave", body, sign.flutterwave_headers(body))
    again = json.dumps({"id": f"wh_{uuid.uuid4().hex[:12]}", **json.loads(body)}).encode()
    assert delivered(again).status == "processed"
    from apps.payments.services import webhook_events_replay

    with system_context("test"):
        ids = list(WebhookEvent.objects.filter(provider="flutterwave").values_list("pk", flat=True))
        webhook_events_replay(ids=ids, actor_label="test")
    drain_outbox()
    # then: one refund of the second charge, asked of Flutterwave once
    [refund] = refunds_of(tenant_a, checkout_id)
    assert (refund.reason, refund.payment_id) == ("duplicate_charge", second)
    assert [asked["transaction_id"] for asked in flutterwave.refunds] == [second]
    # and: the database refuses a second refund of that charge, and one naming no charge
    with tenant_context(tenant_a.org.pk), pytest.raises(IntegrityError), transaction.atomic():
        Refund.objects.create(
            tenant_id=refund.tenant_id,
            transaction_id=refund.transaction_id,
            reason="duplicate_charge",
            payment_id=second,
            amount_minor=900,
            currency="EUR",
            idempotency_key=f"another-{uuid.uuid4()}",
        )
    # (a third charge of the same payment is given back too: the reason key leaves them out)
    with tenant_context(tenant_a.org.pk), transaction.atomic():
        third = Refund.objects.create(
            tenant_id=refund.tenant_id,
            transaction_id=refund.transaction_id,
            reason="duplicate_charge",
            payment_id=f"{second}-3",
            amount_minor=900,
            currency="EUR",
            idempotency_key=f"third-{uuid.uuid4()}",
        )
        Refund.objects.filter(pk=third.pk).delete()
    for reason, payment_id in (("duplicate_charge", ""), ("studio", second)):
        with tenant_context(tenant_a.org.pk), pytest.raises(IntegrityError), transaction.atomic():
            Refund.objects.create(
                tenant_id=refund.tenant_id,
                transaction_id=refund.transaction_id,
                reason=reason,
                payment_id=payment_id,
                amount_minor=900,
                currency="EUR",
                idempotency_key=f"another-{uuid.uuid4()}",
            )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_the_second_charges_refund_announced_before_its_answer_waits_and_never_refunds_the_order(
    tenant_a, shop, flutterwave
) -> None:
    # given: a paid checkout charged a second time (transaction B), whose refund is asked for and
    # whose provider call is made but has not answered yet (`refund_submit` counts the attempt
    # before it calls; a refund never sent cannot be the one announced)
    checkout_id, first = paid(tenant_a, shop)
    second, body = charged(checkout_id)
    assert delivered(body).status == "processed"
    with tenant_context(tenant_a.org.pk):
        assert Refund.objects.filter(transaction__checkout_id=checkout_id).update(attempts=1) == 1
    # when: a refund of B's 9.00 EUR is announced first (the webhook beat the call's answer)
    event = delivered(refund_completed("699999", second, PRICE, tx_ref=checkout_id))
    # then: it waits for the answer (retried), changing nothing; before, 9.00 EUR back was taken
    # for the whole payment: the order refunded, its download revoked, its credit reversed
    assert (event.status, event.error.split(":")[0]) == ("failed", "RefundNotRecordedYet")
    assert order(tenant_a, checkout_id) == {**PAID_ORDER, "payment_id": first}
    [refund] = refunds_of(tenant_a, checkout_id)
    assert (refund.reason, refund.landed_at) == ("duplicate_charge", None)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_after_a_second_charge_the_orders_own_refund_gives_back_the_first_and_adds_up(
    tenant_a, shop, flutterwave
) -> None:
    # given: a paid checkout whose second charge (B) was given back and landed
    checkout_id, first = paid(tenant_a, shop)
    second, body = charged(checkout_id)
    assert delivered(body).status == "processed"
    drain_outbox()
    [back] = flutterwave.refunds
    assert delivered(refund_completed(str(back["id"]), second, PRICE)).status == "processed"
    # when: the studio refunds the order
    with tenant_context(tenant_a.org.pk):
        studio = checkout_refund_request(tenant_id=tenant_a.org.pk, checkout_id=checkout_id, actor_label="test")
    drain_outbox()
    # then: the order's refund is of what the order was paid, and Flutterwave was asked to refund
    # transaction A, the order's payment (its verify-by-reference names B, the latest)
    assert (studio.reason, studio.amount_minor) == ("studio", 900)
    assert [(asked["transaction_id"], asked["amount"]) for asked in flutterwave.refunds] == [
        (second, Decimal(PRICE)),
        (first, Decimal(PRICE)),
    ]
    # when: Flutterwave announces it
    asked = flutterwave.refunds[-1]
    assert delivered(refund_completed(str(asked["id"]), first, PRICE, tx_ref=checkout_id)).status == "processed"
    # then: the order is refunded once, its download revoked and its credit reversed once; the whole
    # payment is the order's 9.00 EUR (the second charge is no part of it)
    assert order(tenant_a, checkout_id) == {
        "checkout": "refunded",
        "payment": "refunded",
        "payment_id": first,
        "live": 0,
        "ledger": ["credit", "debit"],
    }
    with tenant_context(tenant_a.org.pk):
        txn = Transaction.objects.get(checkout_id=checkout_id)
        assert whole_refund_minor(txn=txn) == 900
    assert [(r.reason, r.status, r.landed_at is not None) for r in refunds_of(tenant_a, checkout_id)] == [
        ("duplicate_charge", "submitted", True),
        ("studio", "submitted", True),
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_second_charge_of_a_late_payment_is_given_back_as_its_own_refund(tenant_a, shop, flutterwave) -> None:
    # given: a checkout that expired unpaid; its first charge (A) then arrived late, and is refunded
    checkout_id = open_checkout(tenant_a, shop)
    assert checkouts_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    first, body = charged(checkout_id)
    assert delivered(body).status == "processed"
    # when: a second charge (B, of another amount) of the same tx_ref arrives too
    second, body = charged(checkout_id, amount="12.00")
    assert delivered(body).status == "processed"
    drain_outbox()
    # then: each charge has its own refund, of what it charged, asked of Flutterwave for its own
    # transaction
    assert [(r.reason, r.payment_id, r.amount_minor) for r in refunds_of(tenant_a, checkout_id)] == [
        ("late_payment", "", 900),
        ("duplicate_charge", second, 1200),
    ]
    assert sorted((asked["transaction_id"], asked["amount"]) for asked in flutterwave.refunds) == sorted(
        [(first, Decimal(PRICE)), (second, Decimal("12.00"))]
    )
    # when: both refunds are announced
    for asked in flutterwave.refunds:
        assert delivered(refund_completed(str(asked["id"]), asked["transaction_id"], str(asked["amount"]))).status == (
            "processed"
        )
    # then: the late payment is refunded whole at its own 9.00 EUR, and the second charge's refund
    # landed apart
    with tenant_context(tenant_a.org.pk):
        txn = Transaction.objects.get(checkout_id=checkout_id)
        assert (txn.status, whole_refund_minor(txn=txn)) == ("refunded", 900)
    assert all(r.landed_at is not None for r in refunds_of(tenant_a, checkout_id))


# --- the adapters refund the one charge they are given, or refuse -----------------------------


def test_flutterwave_refunds_the_transaction_it_is_given_after_checking_its_tx_ref() -> None:
    from apps.payments.providers.flutterwave import FlutterwaveProvider

    def verified(transaction_id: int, tx_ref: str) -> Any:
        data = {"id": transaction_id, "tx_ref": tx_ref, "status": "successful", "amount": 15, "currency": "NGN"}
        return json_response({"status": "success", "message": "Transaction fetched successfully", "data": data})

    refunded = json_response({"status": "success", "data": {"id": 7, "amount_refunded": 15, "status": "completed"}})
    transport = ScriptedTransport(verified(4242, "tx-1"), refunded)
    adapter = FlutterwaveProvider(secret_key="FLWSECK_TEST-x", secret_hash="", transport=transport)
    # when: transaction 4242 of tx_ref tx-1 is refunded
    result = adapter.refund(reference="tx-1", amount_minor=1500, idempotency_key="rf-2", payment_id="4242")
    # then: it was read back by its id (not by the tx_ref, which may name another), then refunded
    verify, refund = transport.requests
    assert verify.url == "https://api.flutterwave.com/v3/transactions/4242/verify"
    assert (refund.url, refund.header("X-Idempotency-Key"), json_body(refund)) == (
        "https://api.flutterwave.com/v3/transactions/4242/refund",
        "rf-2",
        {"amount": 15},
    )
    assert (result.refund_id, result.currency) == ("7", "NGN")
    # and: a transaction of another tx_ref is not refunded
    transport = ScriptedTransport(verified(4343, "tx-2"))
    adapter = FlutterwaveProvider(secret_key="FLWSECK_TEST-x", secret_hash="", transport=transport)
    with pytest.raises(ProviderError) as refused:
        adapter.refund(reference="tx-1", amount_minor=1500, idempotency_key="rf-3", payment_id="4343")
    assert not refused.value.retryable
    assert len(transport.requests) == 1


def test_stripe_paypal_and_the_sandbox_refuse_to_refund_a_payment_not_their_sessions() -> None:
    from tests.payments.test_provider_paypal import TOKEN, order_response
    from tests.payments.test_provider_paypal import provider as paypal
    from tests.payments.test_provider_stripe import provider as stripe
    from tests.payments.test_provider_stripe import session_response

    # Stripe: a Checkout Session has one PaymentIntent
    transport = ScriptedTransport(json_response(session_response(payment_intent="pi_1")))
    with pytest.raises(ProviderError) as refused:
        stripe(transport=transport).refund(
            reference="cs_test_a1", amount_minor=500, idempotency_key="k", payment_id="pi_2"
        )
    assert not refused.value.retryable and len(transport.requests) == 1
    transport = ScriptedTransport(
        json_response(session_response(payment_intent="pi_1")),
        json_response({"id": "re_1", "object": "refund", "status": "succeeded", "amount": 500, "currency": "eur"}),
    )
    stripe(transport=transport).refund(reference="cs_test_a1", amount_minor=500, idempotency_key="k", payment_id="pi_1")
    assert transport.requests[1].url.endswith("/v1/refunds")
    # PayPal: only a capture of the order
    unit = {
        "amount": {"currency_code": "EUR", "value": "15.00"},
        "payments": {"captures": [{"id": "CAP1", "status": "COMPLETED"}]},
    }
    transport = ScriptedTransport(TOKEN, order_response("COMPLETED", purchase_units=[unit]))
    with pytest.raises(ProviderError) as refused:
        paypal(transport=transport).refund(reference="ORDER1", amount_minor=500, idempotency_key="k", payment_id="CAP2")
    assert not refused.value.retryable and len(transport.requests) == 2
    transport = ScriptedTransport(
        TOKEN, order_response("COMPLETED", purchase_units=[unit]), json_response({"id": "REF1", "status": "COMPLETED"})
    )
    paypal(transport=transport).refund(reference="ORDER1", amount_minor=500, idempotency_key="k", payment_id="CAP1")
    assert transport.requests[2].url.endswith("/v2/payments/captures/CAP1/refund")
    # the sandbox: one payment per session, named by its reference (a paid session of its own)
    sandbox = SandboxProvider(webhook_secrets=["s"], public_base_url="http://testserver")
    session = sandbox.create_session(
        checkout_id=str(uuid.uuid4()),
        amount_minor=900,
        currency="EUR",
        email="ann@example.test",
        description="order",
        success_url="http://testserver/back",
        cancel_url="http://testserver/back",
    )
    sandbox.settle(reference=session.reference, outcome=PaymentStatus.PAID)
    with pytest.raises(ProviderError) as refused:
        sandbox.refund(reference=session.reference, amount_minor=500, idempotency_key="k", payment_id="sbx_other")
    assert not refused.value.retryable
    made = sandbox.refund(
        reference=session.reference, amount_minor=500, idempotency_key="k", payment_id=session.reference
    )
    assert made.amount_minor == 500


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_the_studios_sale_shows_a_second_charge_given_back_apart_from_the_orders_money(
    tenant_a, shop, flutterwave
) -> None:
    from apps.web.studio.views.money import SALES_HEADER
    from tests.web.studio.conftest import signed_in, text
    from tests.web.studio.test_sale_refund_items import sales_csv_row

    # given: a paid sale whose second charge (B) was given back
    checkout_id, first = paid(tenant_a, shop)
    second, body = charged(checkout_id)
    assert delivered(body).status == "processed"
    drain_outbox()
    [back] = flutterwave.refunds
    assert delivered(refund_completed(str(back["id"]), second, PRICE)).status == "processed"
    owner = signed_in(tenant_a.owner)
    refunded = SALES_HEADER.index("refunded")
    # then: the sales CSV counts none of it as refunded (revenue is amount minus refunded; before,
    # 9.00 of this paid sale read as refunded), and the sale page lists it as no item of the order
    assert sales_csv_row(owner, checkout_id)[refunded] == "0.00"
    page = text(owner.get(f"/studio/sales/{checkout_id}/"))
    assert "Charged twice: the second charge given back" in page
    assert "None: a second charge, not the order's payment" in page
    # when: the studio then refunds the whole order in Flutterwave's dashboard (no refund of Darkroom's)
    assert delivered(refund_completed("777001", first, PRICE, tx_ref=checkout_id)).status == "processed"
    # then: the sale's 9.00 went back, and its page shows the part no listed refund accounts for
    assert order(tenant_a, checkout_id)["checkout"] == "refunded"
    assert sales_csv_row(owner, checkout_id)[refunded] == "9.00"
    page = text(owner.get(f"/studio/sales/{checkout_id}/"))
    assert re.search(r"Refunded at the payment provider</td>\s*<td[^>]*>Not named</td>\s*<td[^>]*>9\.00 EUR<", page), (
        page
    )


def refused_second_charge(tenant: Any, shop: Any, flutterwave: type[FlutterwaveApi]) -> tuple[str, str, str, Refund]:
    """A paid checkout charged a second time, whose refund Flutterwave refused (a balance too
    low, say): (checkout id, first transaction, second transaction, the failed refund)."""
    checkout_id, first = paid(tenant, shop)
    second, body = charged(checkout_id)
    assert delivered(body).status == "processed"
    flutterwave.refusing.add(second)
    drain_outbox()
    [refund] = refunds_of(tenant, checkout_id)
    assert (refund.reason, refund.status) == ("duplicate_charge", "failed"), refund.last_error
    flutterwave.refusing.clear()
    return checkout_id, first, second, refund


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_refused_second_charge_refund_is_retried_even_after_the_order_was_refunded(
    tenant_a, shop, flutterwave
) -> None:
    from apps.commerce.services.payment import refund_retry

    # given: a second charge whose refund Flutterwave refused, and the order since refunded whole
    checkout_id, first, second, refund = refused_second_charge(tenant_a, shop, flutterwave)
    with tenant_context(tenant_a.org.pk):
        checkout_refund_request(tenant_id=tenant_a.org.pk, checkout_id=checkout_id, actor_label="test")
    drain_outbox()
    asked = flutterwave.refunds[-1]
    assert delivered(refund_completed(str(asked["id"]), first, PRICE, tx_ref=checkout_id)).status == "processed"
    assert order(tenant_a, checkout_id)["checkout"] == "refunded"
    # when: an operator, the cause fixed, retries the second charge's refund
    with system_context("test: admin"):
        retried = refund_retry(refund_id=refund.pk, actor_label="admin:ops")
    drain_outbox()
    # then: it is asked again (before: skipped, as if the order's refund had covered it) and
    # Flutterwave refunds the second charge, under a new key
    assert retried
    assert [(asked["transaction_id"], asked["key"]) for asked in flutterwave.refunds] == [
        (first, f"refund:{checkout_id}:studio"),
        (second, f"{refund.idempotency_key}:retry-1"),
    ]
    given_back, studio = refunds_of(tenant_a, checkout_id)
    assert (given_back.status, studio.reason, studio.landed_at is not None) == ("submitted", "studio", True)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_refused_second_charge_refund_paid_back_outside_leaves_the_order_alone(tenant_a, shop, flutterwave) -> None:
    from apps.commerce.services.payment import refund_settle_outside

    # given: a second charge whose refund Flutterwave refused
    checkout_id, first, _, refund = refused_second_charge(tenant_a, shop, flutterwave)
    # when: an operator pays the shopper back by bank transfer and records it
    with system_context("test: admin"):
        refund_settle_outside(refund_id=refund.pk, note="bank transfer ref 42", actor_label="admin:ops")
    drain_outbox()
    # then: that refund is settled and landed, and the order is as it was (before: settling it
    # refunded the order, revoking its download and reversing its credit)
    [settled] = refunds_of(tenant_a, checkout_id)
    assert (settled.status, settled.landed_at is not None) == ("settled", True)
    assert order(tenant_a, checkout_id) == {**PAID_ORDER, "payment_id": first}
    # and: the shopper hears the second charge was paid back to them directly
    [told] = mail.outbox
    assert told.subject.startswith(f"You were charged twice by {tenant_a.org.name}")
    assert "paid this back to you directly" in told.body
