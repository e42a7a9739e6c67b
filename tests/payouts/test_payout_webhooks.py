"""The providers' payout webhooks settle payouts through the settle task's own rules: recorded
once per provider event id with their outbox message, applied once by the consumer (its inbox
row, the payout row locked), a paid payout never credited back by a webhook alone, and an event
for a payout Darkroom does not know recorded, ignored and counted.

Real PostgreSQL and Redis; the payloads are the providers' documented shapes, signed with their
real schemes (local secrets and key). A stand-in adapter plays the provider's API answer only.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from apps.ledger.models import LedgerEvent
from apps.ops.metrics import render
from apps.outbox.models import InboxEntry, OutboxMessage
from apps.payments.models import WebhookEvent
from apps.payments.providers.base import PayoutResult, PayoutStatus
from apps.payments.providers.registry import get_provider
from apps.payments.services import CONSUMER, webhook_event_process
from apps.payouts import services
from apps.payouts.models import Payout
from apps.payouts.services import payout_resolve, payout_submit, payouts_settle_submitted
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import Organization
from tests.commerce.helpers import deliver
from tests.payments.signing_helpers import paypal_headers, paypal_key, paypal_trust, stripe_headers
from tests.payouts.webhook_helpers import (
    AMOUNT,
    StandInProvider,
    flutterwave_transfer_completed,
    payout_of,
    paypal_item_event,
    post_webhook,
    process,
    provider_payout,
    stripe_transfer_event,
    submitted,
    verif_hash,
    webhook_events,
)
from tests.payouts.webhook_helpers import exact_balance as balance

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def studio(tenant_a: Any) -> Organization:
    return tenant_a.org


def paid(provider_payout_id: str) -> PayoutResult:
    return PayoutResult(provider_payout_id, PayoutStatus.PAID, amount_minor=AMOUNT, currency="EUR")


def pending(provider_payout_id: str) -> PayoutResult:
    return PayoutResult(provider_payout_id, PayoutStatus.PENDING, amount_minor=AMOUNT, currency="EUR")


def reversals(payout: Payout) -> int:
    with system_context("test: ledger"):
        return LedgerEvent.objects.filter(idempotency_key=f"payout-reversal:{payout.id}").count()


def received_messages() -> int:
    with system_context("test: outbox"):
        return OutboxMessage.objects.filter(topic="webhook.received").count()


# --- Stripe ------------------------------------------------------------------------------


def test_stripe_reversal_of_a_paid_transfer_goes_to_review_and_the_operator_credits_it_back(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a Stripe payout paid by its transfer (the wallet is debited)
    payout, wallet, _ = submitted(studio, monkeypatch, "stripe", paid("tr_1Reversed"))
    assert payout.status == Payout.Status.PAID and balance(wallet) == 0
    # when: someone reverses the whole transfer in Stripe, which says so by webhook
    body = stripe_transfer_event(
        "transfer.reversed", transfer_id="tr_1Reversed", payout_id=str(payout.id), amount_reversed=AMOUNT
    )
    response = post_webhook("stripe", body, stripe_headers(body))
    process()
    # then: 200 and the payout waits for an operator; the wallet is NOT credited back by the webhook
    assert response.status_code == 200 and response.json()["duplicate"] is False
    review = payout_of(wallet)
    assert review.status == Payout.Status.NEEDS_REVIEW and "reports the paid payout failed" in review.last_error
    assert balance(wallet) == 0 and reversals(payout) == 0
    [event] = webhook_events()
    assert (event.status, event.tenant_id, event.payout_id, event.payout_outcome) == (
        "processed",
        studio.pk,
        payout.id,
        "needs_review",
    )
    assert (event.payment_status, event.reference) == ("payout:failed", "tr_1Reversed")
    # when: the operator checked the reversal in Stripe and marks it not paid
    with system_context("test: operator"):
        payout_resolve(payout_id=payout.id, paid=False, actor=None, actor_label="admin:ops")
    # then: credited back, once
    assert payout_of(wallet).status == Payout.Status.FAILED and balance(wallet) == AMOUNT and reversals(payout) == 1


def test_stripe_partial_reversal_of_a_paid_transfer_goes_to_review(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    payout, wallet, _ = submitted(studio, monkeypatch, "stripe", paid("tr_1Partly"))
    body = stripe_transfer_event(
        "transfer.reversed", transfer_id="tr_1Partly", payout_id=str(payout.id), amount_reversed=1000
    )
    post_webhook("stripe", body, stripe_headers(body))
    process()
    review = payout_of(wallet)
    assert review.status == Payout.Status.NEEDS_REVIEW and "partly reversed (1000 of 2500 EUR" in review.last_error
    assert balance(wallet) == 0


def test_stripe_transfer_created_before_our_submit_records_its_answer_pays_once(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: Stripe's transfer.created arrives and is processed while our transfer call is in flight
    def webhook_meanwhile(call: dict[str, Any]) -> None:
        body = stripe_transfer_event("transfer.created", transfer_id="tr_1Early", payout_id=call["payout_id"])
        assert post_webhook("stripe", body, stripe_headers(body)).status_code == 200
        process()
        assert payout_of(wallet_holder["wallet"]).status == Payout.Status.PAID  # found by metadata[payout_id]

    wallet_holder: dict[str, Any] = {}
    payout, wallet = provider_payout(studio, "stripe")
    wallet_holder["wallet"] = wallet
    stand = StandInProvider(paid("tr_1Early"), during_call=webhook_meanwhile)
    monkeypatch.setattr(services, "get_provider", lambda name: stand)
    # when: the call returns and its answer is recorded after the webhook's
    with tenant_context(studio.pk):
        payout_submit(payout_id=payout.id)
    # then: paid once, by one attempt, with Stripe's transfer id; nothing credited back
    settled = payout_of(wallet)
    assert (settled.status, settled.provider_payout_id, settled.attempts) == ("paid", "tr_1Early", 1)
    assert settled.claimed_until is None and reversals(payout) == 0 and balance(wallet) == 0
    assert [e.payout_outcome for e in webhook_events()] == ["paid"]


def test_stripe_transfer_updated_for_a_paid_payout_changes_nothing(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    payout, wallet, _ = submitted(studio, monkeypatch, "stripe", paid("tr_1Updated"))
    body = stripe_transfer_event("transfer.updated", transfer_id="tr_1Updated", payout_id=str(payout.id))
    post_webhook("stripe", body, stripe_headers(body))
    process()
    assert payout_of(wallet).status == Payout.Status.PAID
    assert [(e.status, e.payout_outcome) for e in webhook_events()] == [("processed", "unchanged")]


# --- Flutterwave -------------------------------------------------------------------------


def test_flutterwave_transfer_completed_settles_a_submitted_payout_and_a_duplicate_changes_nothing(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a Flutterwave transfer accepted (NEW: submitted, settled later)
    payout, wallet, _ = submitted(studio, monkeypatch, "flutterwave", pending("408136"))
    assert payout.status == Payout.Status.SUBMITTED
    body = flutterwave_transfer_completed(transfer_id=408136, payout_id=str(payout.id), status="SUCCESSFUL")
    # when: Flutterwave delivers transfer.completed twice (verif-hash), then the consumer runs
    first = post_webhook("flutterwave", body, verif_hash())
    second = post_webhook("flutterwave", body, verif_hash())
    process()
    # then: one event, one message, paid once
    assert [first.json()["duplicate"], second.json()["duplicate"]] == [False, True]
    assert len(webhook_events()) == 1 and received_messages() == 1
    settled = payout_of(wallet)
    assert settled.status == Payout.Status.PAID and settled.completed_at is not None
    assert webhook_events()[0].event_id == "transfer.completed:408136:successful"
    # when: the same message is redelivered to the consumer (the relay republished it)
    with system_context("test"):
        message = OutboxMessage.objects.get(topic="webhook.received")
    outcome = webhook_event_process(webhook_event_id=webhook_events()[0].pk, message_id=message.pk)
    # then: the inbox skips it
    assert outcome == "duplicate message: skipped"
    with system_context("test"):
        assert InboxEntry.objects.filter(consumer=CONSUMER, message_id=message.pk).count() == 1


def test_flutterwave_failed_transfer_goes_to_review_not_back_to_the_wallet(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    payout, wallet, _ = submitted(studio, monkeypatch, "flutterwave", pending("408137"))
    body = flutterwave_transfer_completed(
        transfer_id=408137, payout_id=str(payout.id), status="FAILED", message="DISBURSE FAILED: Account not found"
    )
    post_webhook("flutterwave", body, verif_hash())
    process()
    review = payout_of(wallet)
    assert review.status == Payout.Status.NEEDS_REVIEW and "Account not found" in review.last_error
    assert "balance history" in review.last_error and balance(wallet) == 0 and reversals(payout) == 0
    # and: the settle task leaves it to the operator (it asks about submitted payouts only)
    with override_settings(PAYOUT_SETTLE_EVERY_SECONDS=0):
        assert payouts_settle_submitted() == {}


def test_flutterwave_failure_arriving_before_our_submit_answer_wins_over_that_answer(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the transfer fails at once and Flutterwave's webhook is processed before the create
    # call's answer (status NEW) is recorded
    def webhook_meanwhile(call: dict[str, Any]) -> None:
        body = flutterwave_transfer_completed(
            transfer_id=408138, payout_id=call["payout_id"], status="FAILED", message="DISBURSE FAILED: Insufficient"
        )
        post_webhook("flutterwave", body, verif_hash())
        process()

    payout, wallet, stand = submitted(
        studio, monkeypatch, "flutterwave", pending("408138"), during_call=webhook_meanwhile
    )
    # then: the webhook's needs_review stands; the later answer changed nothing
    assert len(stand.calls) == 1
    assert payout.status == Payout.Status.NEEDS_REVIEW and payout.provider_payout_id == "408138"
    assert payout.claimed_until is None and balance(wallet) == 0


def test_flutterwave_failure_after_success_goes_to_review(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a transfer Flutterwave reported SUCCESSFUL
    payout, wallet, _ = submitted(studio, monkeypatch, "flutterwave", pending("408139"))
    ok = flutterwave_transfer_completed(transfer_id=408139, payout_id=str(payout.id), status="SUCCESSFUL")
    post_webhook("flutterwave", ok, verif_hash())
    process()
    assert payout_of(wallet).status == Payout.Status.PAID
    # when: it later says FAILED (a reversal)
    failed = flutterwave_transfer_completed(transfer_id=408139, payout_id=str(payout.id), status="FAILED")
    post_webhook("flutterwave", failed, verif_hash())
    process()
    # then: contradiction: an operator settles it, the wallet stays debited
    review = payout_of(wallet)
    assert review.status == Payout.Status.NEEDS_REVIEW and "reports the paid payout" in review.last_error
    assert balance(wallet) == 0 and [e.payout_outcome for e in webhook_events()] == ["paid", "needs_review"]


# --- PayPal ------------------------------------------------------------------------------


@pytest.fixture
def paypal_signer() -> Any:
    key = paypal_key()
    paypal_trust(key)
    return lambda body: paypal_headers(body, key)


@pytest.mark.parametrize(
    ("event_type", "status", "wallet_after"),
    [
        ("PAYMENT.PAYOUTS-ITEM.SUCCEEDED", Payout.Status.PAID, 0),
        ("PAYMENT.PAYOUTS-ITEM.FAILED", Payout.Status.FAILED, AMOUNT),
        ("PAYMENT.PAYOUTS-ITEM.RETURNED", Payout.Status.FAILED, AMOUNT),
        ("PAYMENT.PAYOUTS-ITEM.DENIED", Payout.Status.FAILED, AMOUNT),
        ("PAYMENT.PAYOUTS-ITEM.UNCLAIMED", Payout.Status.SUBMITTED, 0),
        ("PAYMENT.PAYOUTS-ITEM.BLOCKED", Payout.Status.NEEDS_REVIEW, 0),
    ],
)
def test_paypal_item_events_settle_a_submitted_payout_like_the_settle_task(
    studio: Organization,
    monkeypatch: pytest.MonkeyPatch,
    paypal_signer: Any,
    event_type: str,
    status: str,
    wallet_after: int,
) -> None:
    # given: a PayPal payout batch accepted (PENDING: submitted)
    payout, wallet, _ = submitted(studio, monkeypatch, "paypal", pending("5UXD2E8A7EBQJ"))
    # when: PayPal's item event arrives
    body = paypal_item_event(event_type, batch_id="5UXD2E8A7EBQJ", payout_id=str(payout.id))
    assert post_webhook("paypal", body, paypal_signer(body)).status_code == 200
    process()
    # then: the payout is where the settle task's mapping puts it; credited back only if failed
    settled = payout_of(wallet)
    assert settled.status == status and balance(wallet) == wallet_after
    assert reversals(payout) == (1 if status == Payout.Status.FAILED else 0)


def test_paypal_two_events_about_one_return_credit_back_once(
    studio: Organization, monkeypatch: pytest.MonkeyPatch, paypal_signer: Any
) -> None:
    payout, wallet, _ = submitted(studio, monkeypatch, "paypal", pending("5UXD2E8A7EBQK"))
    for event_type in (
        "PAYMENT.PAYOUTS-ITEM.RETURNED",
        "PAYMENT.PAYOUTS-ITEM.FAILED",
        "PAYMENT.PAYOUTS-ITEM.SUCCEEDED",
    ):
        body = paypal_item_event(event_type, batch_id="5UXD2E8A7EBQK", payout_id=str(payout.id))
        post_webhook("paypal", body, paypal_signer(body))
    process()
    assert payout_of(wallet).status == Payout.Status.FAILED
    assert balance(wallet) == AMOUNT and reversals(payout) == 1
    assert [e.payout_outcome for e in webhook_events()] == ["failed", "unchanged", "unchanged"]


def test_a_failed_payout_paypal_later_reports_paid_is_counted_once_for_an_operator(
    studio: Organization, monkeypatch: pytest.MonkeyPatch, paypal_signer: Any
) -> None:
    # given: a PayPal payout that failed (its item DENIED) and was credited back; the counter
    # already reported at 0, so that the first one is an increase
    counted = "darkroom_payouts_paid_after_failure_total"
    assert f"{counted} 0.0" in render().decode()
    payout, wallet, _ = submitted(studio, monkeypatch, "paypal", pending("5UXD2E8A7EBQM"))
    body = paypal_item_event("PAYMENT.PAYOUTS-ITEM.DENIED", batch_id="5UXD2E8A7EBQM", payout_id=str(payout.id))
    post_webhook("paypal", body, paypal_signer(body))
    process()
    assert payout_of(wallet).status == Payout.Status.FAILED and balance(wallet) == AMOUNT

    # when: a late UNCLAIMED event (sent before the denial) arrives: nothing new
    body = paypal_item_event("PAYMENT.PAYOUTS-ITEM.UNCLAIMED", batch_id="5UXD2E8A7EBQM", payout_id=str(payout.id))
    post_webhook("paypal", body, paypal_signer(body))
    process()
    assert payout_of(wallet).paid_after_failure_at is None and f"{counted} 0.0" in render().decode()

    # when: PayPal then says the item SUCCEEDED, in two events
    for _ in range(2):
        body = paypal_item_event("PAYMENT.PAYOUTS-ITEM.SUCCEEDED", batch_id="5UXD2E8A7EBQM", payout_id=str(payout.id))
        post_webhook("paypal", body, paypal_signer(body))
    process()

    # then: the payout stays failed and credited back once, but is recorded for an operator, once:
    # the credit back would be paid out again
    settled = payout_of(wallet)
    assert settled.status == Payout.Status.FAILED and balance(wallet) == AMOUNT and reversals(payout) == 1
    assert settled.paid_after_failure_at is not None
    assert settled.last_error.startswith("paypal reports this payout paid (paypal webhook")
    assert "the photographer may be paid twice" in settled.last_error
    assert f"{counted} 1.0" in render().decode()


def test_paypal_refund_after_success_goes_to_review(
    studio: Organization, monkeypatch: pytest.MonkeyPatch, paypal_signer: Any
) -> None:
    payout, wallet, _ = submitted(studio, monkeypatch, "paypal", pending("5UXD2E8A7EBQL"))
    for event_type in ("PAYMENT.PAYOUTS-ITEM.SUCCEEDED", "PAYMENT.PAYOUTS-ITEM.REFUNDED"):
        body = paypal_item_event(event_type, batch_id="5UXD2E8A7EBQL", payout_id=str(payout.id))
        post_webhook("paypal", body, paypal_signer(body))
        process()
    assert payout_of(wallet).status == Payout.Status.NEEDS_REVIEW and balance(wallet) == 0


def test_an_event_for_another_amount_goes_to_review(
    studio: Organization, monkeypatch: pytest.MonkeyPatch, paypal_signer: Any
) -> None:
    payout, wallet, _ = submitted(studio, monkeypatch, "paypal", pending("5UXD2E8A7EBQM"))
    body = paypal_item_event(
        "PAYMENT.PAYOUTS-ITEM.SUCCEEDED", batch_id="5UXD2E8A7EBQM", payout_id=str(payout.id), value="250.00"
    )
    post_webhook("paypal", body, paypal_signer(body))
    process()
    review = payout_of(wallet)
    assert review.status == Payout.Status.NEEDS_REVIEW and "25000 EUR" in review.last_error


# --- refusals, unknown payouts, races ------------------------------------------------------


@pytest.mark.parametrize("provider", ["stripe", "flutterwave", "paypal"])
def test_a_bad_signature_is_refused_with_a_problem_and_writes_nothing(
    studio: Organization, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    # given: a submitted payout and a payout event signed with the wrong secret or key
    payout, wallet, _ = submitted(studio, monkeypatch, provider, pending("po_forged"))
    if provider == "stripe":
        body = stripe_transfer_event(
            "transfer.reversed", transfer_id="po_forged", payout_id=str(payout.id), amount_reversed=AMOUNT
        )
        headers = stripe_headers(body, secret="whsec_not_ours")
    elif provider == "flutterwave":
        body = flutterwave_transfer_completed(transfer_id=1, payout_id=str(payout.id), status="SUCCESSFUL")
        headers = verif_hash("not-our-hash")
    else:
        body = paypal_item_event("PAYMENT.PAYOUTS-ITEM.RETURNED", batch_id="po_forged", payout_id=str(payout.id))
        paypal_trust(paypal_key())  # the cached certificate is PayPal's; the signer is someone else
        headers = paypal_headers(body, paypal_key())
    # when
    response = post_webhook(provider, body, headers)
    # then: a 400 problem, and nothing recorded, queued or changed
    assert response.status_code == 400 and response["Content-Type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("invalid-webhook-signature")
    assert webhook_events() == [] and received_messages() == 0
    assert payout_of(wallet).status == Payout.Status.SUBMITTED and balance(wallet) == 0


def test_an_event_for_an_unknown_payout_is_recorded_ignored_and_counted(studio: Organization) -> None:
    # given: a transfer Darkroom did not make (another integration on the same Stripe account),
    # and the counter already reported at 0, so that its first event is an increase
    unknown_at_stripe = 'darkroom_payout_webhooks_total{outcome="unknown_payout",provider="stripe"}'
    assert f"{unknown_at_stripe} 0.0" in render().decode()
    body = stripe_transfer_event(
        "transfer.reversed", transfer_id="tr_1NotOurs", payout_id=str(uuid.uuid4()), amount_reversed=AMOUNT
    )
    # when
    response = post_webhook("stripe", body, stripe_headers(body))
    process()
    # then: accepted (no redelivery storm), recorded as ignored, untenanted, and counted
    assert response.status_code == 200
    [event] = webhook_events()
    assert (event.status, event.tenant_id, event.payout_id, event.payout_outcome) == (
        "ignored",
        None,
        None,
        "unknown_payout",
    )
    assert event.outcome.startswith("unknown payout") and event.error == ""
    metrics = render().decode()
    assert f"{unknown_at_stripe} 1.0" in metrics
    assert 'darkroom_payout_webhooks_total{outcome="needs_review",provider="paypal"} 0.0' in metrics


def test_an_event_naming_our_payout_with_another_transfer_is_not_applied(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    payout, wallet, _ = submitted(studio, monkeypatch, "stripe", paid("tr_1Ours"))
    body = stripe_transfer_event(
        "transfer.reversed", transfer_id="tr_1Other", payout_id=str(payout.id), amount_reversed=AMOUNT
    )
    post_webhook("stripe", body, stripe_headers(body))
    process()
    assert payout_of(wallet).status == Payout.Status.PAID
    assert [e.payout_outcome for e in webhook_events()] == ["unknown_payout"]


def test_a_payout_event_without_an_amount_is_ignored(studio: Organization, monkeypatch: pytest.MonkeyPatch) -> None:
    payout, wallet, _ = submitted(studio, monkeypatch, "flutterwave", pending("408140"))
    body = flutterwave_transfer_completed(transfer_id=408140, payout_id=str(payout.id), status="SUCCESSFUL")
    body = body.replace(b'"amount": 25, ', b"")
    post_webhook("flutterwave", body, verif_hash())
    process()
    assert payout_of(wallet).status == Payout.Status.SUBMITTED
    assert [(e.status, e.payout_outcome) for e in webhook_events()] == [("ignored", "")]


def test_a_reversal_and_the_settle_task_racing_credit_back_once(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a submitted Stripe payout (partly reversed at the first answer), then fully reversed:
    # Stripe's two events about it are processed from two threads while the settle task asks
    answer = PayoutResult("tr_1Race", PayoutStatus.PENDING, amount_minor=AMOUNT, currency="EUR")
    reversed_ = PayoutResult("tr_1Race", PayoutStatus.FAILED, amount_minor=AMOUNT, currency="EUR")
    payout, wallet, stand = submitted(studio, monkeypatch, "stripe", answer)
    stand.outcomes = [reversed_]
    assert payout.status == Payout.Status.SUBMITTED
    for event_type in ("transfer.reversed", "transfer.updated"):
        body = stripe_transfer_event(
            event_type, transfer_id="tr_1Race", payout_id=str(payout.id), amount_reversed=AMOUNT
        )
        post_webhook("stripe", body, stripe_headers(body))
    with system_context("test"):
        messages = list(OutboxMessage.objects.filter(topic="webhook.received").order_by("created_at"))
        OutboxMessage.objects.filter(topic="webhook.received").update(
            status=OutboxMessage.Status.PUBLISHED, published_at=timezone.now()
        )
    events = webhook_events()
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def run(work: Any) -> None:
        try:
            start.wait()
            work()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    def settle() -> None:
        with override_settings(PAYOUT_SETTLE_EVERY_SECONDS=0):
            payouts_settle_submitted()

    works = [
        lambda event=event, message=message: webhook_event_process(webhook_event_id=event.pk, message_id=message.pk)
        for event, message in zip(events, messages, strict=True)
    ] + [settle]
    threads = [threading.Thread(target=run, args=(work,)) for work in works]
    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # then: failed and credited back exactly once, whoever came first
    assert errors == []
    assert payout_of(wallet).status == Payout.Status.FAILED
    assert balance(wallet) == AMOUNT and reversals(payout) == 1
    with system_context("test"):
        assert sorted(WebhookEvent.objects.values_list("status", flat=True)) == ["processed", "processed"]


# --- the sandbox ---------------------------------------------------------------------------


def test_sandbox_payout_paid_webhook_before_the_answer_and_a_return_afterwards(studio: Organization) -> None:
    # given: the sandbox says payout.paid (duplicated, out of order with our own answer)
    payout, wallet = provider_payout(studio, "sandbox")
    sandbox = get_provider("sandbox")
    real_payout = sandbox.payout

    def pays_then_announces(**kwargs: Any) -> PayoutResult:
        result = real_payout(**kwargs)
        deliver([sandbox.payout_event(payout_id=kwargs["payout_id"])], duplicates=2)  # type: ignore[attr-defined]
        process()
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sandbox, "payout", pays_then_announces)
        with tenant_context(studio.pk):
            payout_submit(payout_id=payout.id)
    settled = payout_of(wallet)
    assert settled.status == Payout.Status.PAID and settled.provider_payout_id == f"sbx_po_{payout.id.hex}"
    assert [e.payout_outcome for e in webhook_events()] == ["paid"]
    # when: the receiver's bank returns it, and the sandbox says so by webhook
    deliver([sandbox.payout_return(payout_id=str(payout.id))])  # type: ignore[attr-defined]
    process()
    # then: paid, then contradicted: needs review; the settle task agrees it is failed at the sandbox
    assert payout_of(wallet).status == Payout.Status.NEEDS_REVIEW and balance(wallet) == 0
    result = sandbox.payout_status(payout_id=str(payout.id), provider_payout_id=settled.provider_payout_id or "")
    assert result.status == PayoutStatus.FAILED
