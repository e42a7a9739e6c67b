"""A photographer's "pay me now": one request pays that one wallet once, under the batch lease,
whatever redeliveries, busy leases or scheduled batches happen meanwhile.

Real PostgreSQL, Redis and (for the busy lease) a real relay and Celery worker.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from celery import signals
from django.db import connection, transaction
from django.utils import timezone

from apps.commerce.models import CheckoutLine
from apps.core.locks import LockBusy, fenced_lock
from apps.ledger.projection import projection_rebuild
from apps.ops.killswitch import CapabilityDisabled, kill_switch_engage, kill_switch_release
from apps.outbox.models import OutboxMessage
from apps.outbox.routing import Route, resolve_route
from apps.payouts.models import Payout, PayoutBatch
from apps.payouts.selectors import REQUEST_IN_FLIGHT_HOURS
from apps.payouts.services import (
    BATCH_LOCK,
    TOPIC_BATCH_REQUESTED,
    TOPIC_WALLET_REQUESTED,
    WALLET_REQUEST_CONSUMER,
    BelowPayoutMinimum,
    NoPayoutDestination,
    PayoutInProgress,
    WalletNotFound,
    payout_batch_run,
    payout_submit,
    payout_wallet_request,
    payout_wallet_run,
    wallet_exact_balance,
)
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tasks.payouts import WALLET_REQUEST_RETRY
from tests.commerce.fixtures import empty_broker, row_lock_strategy, worker_running  # noqa: F401 - fixtures by name
from tests.commerce.refunds import ask, confirmed
from tests.payments.test_e2e_sandbox import outbox_idle, running_relay, wait_until
from tests.payouts.helpers import Wallet, make_wallet, post, sale_to_wallet
from tests.web.studio.conftest import people_of

pytestmark = pytest.mark.django_db(transaction=True)

# How long a delivery that finds the lease busy keeps retrying: the holder's work takes well under a
# second when the machine is idle, and retries stop as soon as the lease is free.
BUSY_LEASE_PATIENCE_SECONDS = 60.0


def request(wallet: Wallet) -> int:
    """The studio form's call: in the tenant's context, inside the form's transaction."""
    with tenant_context(wallet.tenant.pk), transaction.atomic():
        return payout_wallet_request(tenant_id=wallet.tenant.pk, account_id=wallet.account.pk, actor=wallet.owner)


def requests_published() -> list[OutboxMessage]:
    with system_context("test: outbox"):
        return list(OutboxMessage.objects.filter(topic=TOPIC_WALLET_REQUESTED).order_by("created_at", "id"))


def consume(message: OutboxMessage) -> str:
    """Run the consumer task's code for `message`, as a worker would (in the message's tenant)."""
    import tasks.payouts

    with tenant_context(message.tenant_id):
        return str(tasks.payouts.wallet_run_requested(message_id=str(message.pk), payload=message.payload))


def payouts_of(wallet: Wallet) -> list[Payout]:
    with system_context("test: payouts"):
        return list(Payout.objects.filter(account=wallet.account).order_by("created_at"))


def exact_balance(wallet: Wallet) -> int:
    with tenant_context(wallet.tenant.pk), transaction.atomic():
        return wallet_exact_balance(account=wallet.account, tenant=wallet.tenant)


def request_audits() -> int:
    with system_context("test: audit"):
        return AuditLog.objects.filter(action="payout.request").count()


@pytest.fixture
def studios(tenant_a: Any, tenant_b: Any) -> tuple[Any, Any]:
    return tenant_a.org, tenant_b.org


def test_a_request_pays_that_wallet_once_and_no_other(studios: tuple[Any, Any]) -> None:
    # given: due wallets in two studios, projected
    studio, other = studios
    wallet = make_wallet(studio, credited=5000)
    colleague = make_wallet(studio, credited=6000)
    elsewhere = make_wallet(other, credited=7000)
    projection_rebuild()

    # when: the photographer asks to be paid, and the request is consumed
    assert request(wallet) == 5000
    [message] = requests_published()
    outcome = consume(message)

    # then: one payout of the wallet's balance, in a completed batch of its own naming the request
    [payout] = payouts_of(wallet)
    assert (payout.amount_minor, payout.status) == (5000, Payout.Status.PENDING)
    assert outcome == f"paid 5000 in payout {payout.id} (batch {payout.batch_id})"
    with system_context("test"):
        batch = PayoutBatch.objects.get(pk=payout.batch_id)
        assert OutboxMessage.objects.filter(topic="payout.created", aggregate_id=str(payout.id)).count() == 1
        assert not OutboxMessage.objects.filter(topic=TOPIC_BATCH_REQUESTED).exists()
    assert (batch.status, batch.payouts_created) == (PayoutBatch.Status.COMPLETED, 1)
    assert f"wallet {wallet.account.pk}" in batch.trigger and str(message.pk) in batch.trigger
    assert message.payload == {
        "tenant_id": studio.pk,
        "account_id": wallet.account.pk,
        "requested_by": wallet.owner.pk,
    }
    assert exact_balance(wallet) == 0
    # and: the other due wallets, of this studio and of another, are untouched
    assert payouts_of(colleague) == payouts_of(elsewhere) == []
    assert (exact_balance(colleague), exact_balance(elsewhere)) == (6000, 7000)
    assert request_audits() == 1


def test_a_redelivery_of_a_request_pays_once(studios: tuple[Any, Any]) -> None:
    # given: a request, consumed
    studio, _ = studios
    wallet = make_wallet(studio, credited=5000)
    projection_rebuild()
    request(wallet)
    [message] = requests_published()
    paid = consume(message)

    # when: it is redelivered after new sales credited the wallet
    post(studio, wallet.account, 3000, kind="credit")
    redelivered = consume(message)

    # then: one payout; the redelivery did nothing
    [payout] = payouts_of(wallet)
    assert payout.amount_minor == 5000 and paid.startswith("paid 5000")
    assert redelivered == "request already handled: skipped"
    assert exact_balance(wallet) == 3000
    with system_context("test"):
        assert PayoutBatch.objects.count() == 1


def test_a_second_request_is_refused_until_the_first_is_paid_and_counted(studios: tuple[Any, Any]) -> None:
    # given: a photographer who asked to be paid 44.10 EUR, the request not consumed yet
    studio, _ = studios
    wallet = make_wallet(studio, credited=4410)
    projection_rebuild()
    assert request(wallet) == 4410

    # when: they ask again (the page they landed on, or a tab opened earlier)
    # then: refused, saying the payout was just asked for; nothing more is written
    with pytest.raises(PayoutInProgress) as refused:
        request(wallet)
    assert str(refused.value).startswith("A payout of this wallet was just requested")
    assert len(requests_published()) == 1 and request_audits() == 1

    # when: the request is consumed: its payout is pending
    [message] = requests_published()
    assert consume(message).startswith("paid 4410")
    [payout] = payouts_of(wallet)
    # then: refused as being sent
    with pytest.raises(PayoutInProgress) as refused:
        request(wallet)
    assert str(refused.value).startswith("A payout of this wallet is already being sent")

    # when: the provider paid it, and the projector has not counted its debit yet (the projected
    # balance still says 44.10 EUR)
    with tenant_context(studio.pk):
        assert payout_submit(payout_id=payout.id).status == Payout.Status.PAID
    # then: still refused at once, rather than accepted and then paying nothing
    with pytest.raises(PayoutInProgress):
        request(wallet)

    # when: the debit is counted: the balance is 0.00 EUR, below the minimum
    projection_rebuild()
    with pytest.raises(BelowPayoutMinimum):
        request(wallet)
    # and: new sales bring it back up: a new request is taken
    post(studio, wallet.account, 2000, kind="credit")
    projection_rebuild()
    assert request(wallet) == 2000
    assert len(requests_published()) == 2 and request_audits() == 2
    assert consume(requests_published()[1]).startswith("paid 2000")


def test_a_request_the_consumer_found_nothing_to_pay_for_no_longer_blocks_the_next(studios: tuple[Any, Any]) -> None:
    # given: a request, then a refund that took the wallet below the minimum before it was consumed
    studio, _ = studios
    wallet = make_wallet(studio, credited=5000)
    projection_rebuild()
    request(wallet)
    post(studio, wallet.account, 4500, kind="debit")
    [message] = requests_published()
    assert consume(message) == "wallet below the payout minimum: nothing paid"
    # when: sales bring it up again, and the photographer asks again
    post(studio, wallet.account, 2000, kind="credit")
    projection_rebuild()
    # then: taken: the first request is done with
    assert request(wallet) == 2500


def test_two_requests_at_once_from_two_connections_are_one_request(studios: tuple[Any, Any]) -> None:
    # given: a due wallet, and two requests of it on two connections: the second is made while
    # the first's transaction is still open
    studio, _ = studios
    wallet = make_wallet(studio, credited=4410)
    projection_rebuild()
    first_made = threading.Event()
    outcomes: dict[str, int | BaseException] = {}

    def ask_for_it(name: str) -> None:
        try:
            if name == "second":
                assert first_made.wait(30)
            with tenant_context(studio.pk), transaction.atomic():
                outcomes[name] = payout_wallet_request(
                    tenant_id=studio.pk, account_id=wallet.account.pk, actor=wallet.owner
                )
                if name == "first":
                    first_made.set()
                    time.sleep(1.0)  # commit late: the second request runs meanwhile
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcomes[name] = exc
            first_made.set()
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=ask_for_it, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then: the first is taken; the second waited for it to commit, and was refused
    assert outcomes["first"] == 4410, outcomes
    assert isinstance(outcomes["second"], PayoutInProgress), outcomes
    assert "was just requested" in str(outcomes["second"])
    assert len(requests_published()) == 1 and request_audits() == 1


def test_a_request_never_consumed_stops_blocking_once_its_consumer_would_have_given_up(
    studios: tuple[Any, Any],
) -> None:
    # given: a request of a wallet made longer ago than its consumer keeps retrying, never consumed
    # (its message dead-lettered, or the consumer gave up on a busy lease: the schedule pays it)
    studio, _ = studios
    wallet = make_wallet(studio, credited=5000)
    projection_rebuild()
    with system_context("test: a request of long ago"), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tenancy_auditlog (tenant_id, actor_label, action, target_type, target_id, data,"
            " request_id, created_at) VALUES (%s, '', 'payout.request', 'ledger_account', %s, %s, '', %s)",
            [
                studio.pk,
                str(wallet.account.pk),
                json.dumps({"message_id": str(uuid.uuid4())}),
                timezone.now() - timedelta(hours=REQUEST_IN_FLIGHT_HOURS, minutes=1),
            ],
        )
    # when: the photographer asks to be paid
    # then: taken
    assert request(wallet) == 5000
    # and: the horizon outlasts every retry of the consumer (backoff doubling up to its cap, no jitter)
    budget = sum(
        min(WALLET_REQUEST_RETRY["retry_backoff_max"], WALLET_REQUEST_RETRY["retry_backoff"] * 2**n)
        for n in range(WALLET_REQUEST_RETRY["max_retries"])
    )
    assert budget < REQUEST_IN_FLIGHT_HOURS * 3600


def test_two_deliveries_of_one_request_at_once_pay_once(studios: tuple[Any, Any]) -> None:
    # given: one request, delivered twice to two workers at the same moment
    studio, _ = studios
    wallet = make_wallet(studio, credited=4000)
    projection_rebuild()
    request(wallet)
    [message] = requests_published()
    barrier = threading.Barrier(2)
    outcomes: list[str | BaseException] = []

    def deliver() -> None:
        try:
            barrier.wait(BUSY_LEASE_PATIENCE_SECONDS)
            # What Celery's retry does for a busy lease, without the backoff. Bounded by time, not
            # by a count of tries: the other delivery holds the lease for as long as its payout
            # takes, which on a loaded machine can be seconds.
            deadline = time.monotonic() + BUSY_LEASE_PATIENCE_SECONDS
            while True:
                try:
                    outcomes.append(consume(message))
                    return
                except LockBusy:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcomes.append(exc)
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=2 * BUSY_LEASE_PATIENCE_SECONDS)

    # then: one paid it, the other skipped it
    paid, skipped = sorted(o if isinstance(o, str) else repr(o) for o in outcomes)
    assert paid.startswith("paid 4000") and skipped == "request already handled: skipped"
    assert [p.amount_minor for p in payouts_of(wallet)] == [4000]


def test_a_request_queued_behind_a_batch_does_not_pay_again(studios: tuple[Any, Any]) -> None:
    # given: a request published, and the scheduled batch runs before it is consumed
    studio, other = studios
    wallet = make_wallet(studio, credited=5000)
    elsewhere = make_wallet(other, credited=2500)
    projection_rebuild()
    request(wallet)
    assert len(payout_batch_run(trigger="schedule").payout_ids) == 2

    # when: the request is consumed
    [message] = requests_published()
    outcome = consume(message)

    # then: the wallet was paid once, by the batch
    assert outcome == "wallet below the payout minimum: nothing paid"
    assert [len(payouts_of(w)) for w in (wallet, elsewhere)] == [1, 1]


def test_a_batch_right_after_a_request_does_not_pay_the_wallet_again(studios: tuple[Any, Any]) -> None:
    # given: a request consumed, before the projector applied its debit (the projected balance,
    # which the batch selects wallets by, still says 5,000)
    studio, other = studios
    wallet = make_wallet(studio, credited=5000)
    elsewhere = make_wallet(other, credited=2500)
    projection_rebuild()
    request(wallet)
    [message] = requests_published()
    consume(message)

    # when: the scheduled batch runs
    result = payout_batch_run(trigger="schedule")

    # then: its exact-balance check skipped the wallet; the other due wallet was paid
    [batch_payout] = result.payout_ids
    assert [p.id for p in payouts_of(elsewhere)] == [batch_payout]
    assert [p.amount_minor for p in payouts_of(wallet)] == [5000]


def test_a_request_and_a_batch_at_once_pay_the_wallet_once(studios: tuple[Any, Any]) -> None:
    # given: a requested wallet among several due wallets, nothing consumed yet
    studio, other = studios
    wallet = make_wallet(studio, credited=5000)
    others = [make_wallet(studio if i % 2 else other, credited=1500 + i) for i in range(6)]
    projection_rebuild()
    request(wallet)
    [message] = requests_published()
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    batch_ids: list[int | None] = []

    def scheduled_batch() -> None:
        try:
            barrier.wait()
            batch_ids.append(payout_batch_run(trigger="schedule").batch_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    def request_consumer() -> None:
        try:
            barrier.wait(BUSY_LEASE_PATIENCE_SECONDS)
            # Celery retries a busy lease; here without the backoff, for as long as the scheduled
            # batch (seven payouts) may hold the lease on a loaded machine
            deadline = time.monotonic() + BUSY_LEASE_PATIENCE_SECONDS
            while True:
                try:
                    consume(message)
                    return
                except LockBusy:
                    if time.monotonic() > deadline:
                        raise AssertionError("the lease never came free") from None
                    time.sleep(0.01)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    # when: the scheduled batch and the request's consumer start at the same moment
    threads = [threading.Thread(target=scheduled_batch), threading.Thread(target=request_consumer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=2 * BUSY_LEASE_PATIENCE_SECONDS)

    # then: whoever won the lease, nothing failed; a scheduled run that found the lease busy
    # (the request's consumer won the race) runs again at the next beat
    assert errors == [] and len(batch_ids) == 1, (errors, batch_ids)
    if batch_ids == [None]:
        assert payout_batch_run(trigger="schedule").batch_id is not None
    # and: every wallet was paid once, the requested one its whole balance
    assert [p.amount_minor for p in payouts_of(wallet)] == [5000]
    assert [len(payouts_of(w)) for w in others] == [1] * 6


def test_a_request_pays_beside_a_crashed_batch_and_leaves_it_to_the_next_run(studios: tuple[Any, Any]) -> None:
    # given: a batch a crashed runner left running, and a request for one of the due wallets
    studio, _ = studios
    wallet, colleague = make_wallet(studio, credited=5000), make_wallet(studio, credited=3000)
    projection_rebuild()
    with system_context("test"):
        crashed = PayoutBatch.objects.create(trigger="crashed runner", epoch=0)
    request(wallet)
    [message] = requests_published()

    # when: the request is consumed
    consume(message)

    # then: the wallet is paid in its own batch; the crashed one is still running, untouched
    [payout] = payouts_of(wallet)
    assert payout.batch_id != crashed.pk and payouts_of(colleague) == []
    with system_context("test"):
        crashed.refresh_from_db()
    assert (crashed.status, crashed.runs) == (PayoutBatch.Status.RUNNING, 1)
    # and: the next batch run finishes it, paying the colleague and not the requested wallet again
    result = payout_batch_run(trigger="schedule")
    assert result.resumed and result.batch_id == crashed.pk
    assert len(payouts_of(wallet)) == len(payouts_of(colleague)) == 1


def test_a_wallet_below_the_minimum_when_the_request_is_consumed_is_not_paid(
    studios: tuple[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # given: a request, then a refund that takes the wallet below the minimum before it is consumed
    studio, _ = studios
    wallet = make_wallet(studio, credited=5000)
    projection_rebuild()
    request(wallet)
    post(studio, wallet.account, 4500, kind="debit")

    # when
    [message] = requests_published()
    with caplog.at_level(logging.INFO, logger="darkroom.payouts"):
        outcome = consume(message)

    # then: nothing paid, no batch row, and the log says why
    assert outcome == "wallet below the payout minimum: nothing paid"
    assert payouts_of(wallet) == [] and exact_balance(wallet) == 500
    with system_context("test"):
        assert not PayoutBatch.objects.exists()
    assert any("below the payout minimum" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_a_request_that_finds_the_lease_busy_is_retried_then_paid(studios: tuple[Any, Any]) -> None:
    # given: a due wallet, the relay and a worker running, and a batch runner holding the lease
    studio, _ = studios
    wallet = make_wallet(studio, credited=4200)
    projection_rebuild()
    retries: list[str] = []

    def on_retry(sender: Any = None, **kwargs: Any) -> None:
        if getattr(sender, "name", None) == WALLET_REQUEST_CONSUMER:
            retries.append(str(kwargs.get("reason")))

    signals.task_retry.connect(on_retry, weak=False)
    try:
        with worker_running(), running_relay():
            # (the lock's TTL outlasts the wait below, which ends at the first retry)
            with fenced_lock(BATCH_LOCK, ttl=120):
                # when: the photographer asks to be paid while the lease is held
                request(wallet)
                # then: the consumer ran, found the lease busy, and scheduled a retry; nothing paid
                wait_until(lambda: len(retries) >= 1, timeout=60)
                assert payouts_of(wallet) == []
            # when: the lease comes free
            # then: a retry pays the wallet, and the provider worker sends it (the retries' backoff
            # doubles while the lease is held, so the next one may be a while away on a slow run)
            wait_until(lambda: [p.status for p in payouts_of(wallet)] == [Payout.Status.PAID], timeout=150)
            wait_until(outbox_idle)
    finally:
        signals.task_retry.disconnect(on_retry)
    assert any("held by another worker" in reason for reason in retries), retries
    assert [p.amount_minor for p in payouts_of(wallet)] == [4200]


def test_the_kill_switch_refuses_requests_and_holds_queued_ones(studios: tuple[Any, Any]) -> None:
    studio, _ = studios
    wallet = make_wallet(studio, credited=5000)
    projection_rebuild()
    request(wallet)  # queued before the switch is engaged
    kill_switch_engage(capability="payouts", reason="provider incident", actor_label="test")

    # a new request is refused, nothing written
    with pytest.raises(CapabilityDisabled):
        request(wallet)
    assert len(requests_published()) == 1 and request_audits() == 1

    # the queued one is not paid while the switch is engaged: the consumer raises for a retry
    [message] = requests_published()
    with pytest.raises(CapabilityDisabled):
        consume(message)
    assert payouts_of(wallet) == []

    # once released, the retry pays it
    kill_switch_release(capability="payouts", actor_label="test", force=True)
    assert consume(message).startswith("paid 5000")
    assert len(payouts_of(wallet)) == 1


@pytest.mark.parametrize("case", ["someone_elses", "other_studios", "no_destination", "below_minimum", "pending"])
def test_a_request_that_breaks_a_payout_rule_is_refused_and_writes_nothing(studios: tuple[Any, Any], case: str) -> None:
    # given
    studio, other = studios
    mine = make_wallet(
        studio,
        credited=500 if case == "below_minimum" else 5000,
        destination=None if case == "no_destination" else "studio-bank-1",
    )
    theirs = make_wallet(studio if case == "someone_elses" else other, credited=5000)
    projection_rebuild()
    if case == "pending":
        payout_batch_run(trigger="schedule")
        post(studio, mine.account, 4000, kind="credit")
        projection_rebuild()
    account_id = theirs.account.pk if case in ("someone_elses", "other_studios") else mine.account.pk
    expected: type[Exception] = {
        "someone_elses": WalletNotFound,
        "other_studios": WalletNotFound,
        "no_destination": NoPayoutDestination,
        "below_minimum": BelowPayoutMinimum,
        "pending": PayoutInProgress,
    }[case]

    # when
    with pytest.raises(expected), tenant_context(studio.pk), transaction.atomic():
        payout_wallet_request(tenant_id=studio.pk, account_id=account_id, actor=mine.owner)

    # then: no message, no audit row
    assert requests_published() == [] and request_audits() == 0


@pytest.mark.usefixtures("empty_broker", "row_lock_strategy")
def test_a_request_counts_and_pays_the_balance_less_refunds_under_way(tenant_a: Any) -> None:
    # given: a photographer's sale (30.60 in their wallet) and the studio's refund of its print
    # (22.50 of it) asked for, not landed
    people = people_of(tenant_a)
    sale, wallet = sale_to_wallet(people)
    with tenant_context(people.org.pk):
        print_line = CheckoutLine.objects.get(checkout_id=sale, kind="print").pk
    refund = ask(people, sale, [print_line])
    projection_rebuild()

    # when: the photographer asks to be paid
    # then: refused, saying why: 8.10 is left, under the 10.00 minimum; nothing is written
    with pytest.raises(BelowPayoutMinimum) as refusal:
        request(wallet)
    assert str(refusal.value).startswith(
        "Your balance is 30.60 EUR, 22.50 EUR of it held for refunds under way; payouts start at 10.00 EUR."
    )
    assert requests_published() == [] and request_audits() == 0

    # when: a later sale of 20.00 (18.00 after the fee) makes the rest 26.10, and they ask again
    post(people.org, wallet.account, 1800, kind="credit")
    projection_rebuild()
    # then: the request names what will be sent, and its run pays that, not the refund's share
    assert request(wallet) == 2610
    [message] = requests_published()
    assert consume(message).startswith("paid 2610")
    assert exact_balance(wallet) == 2250
    confirmed(refund, sale)
    assert exact_balance(wallet) == 0


def test_the_request_commits_or_rolls_back_with_the_callers_transaction(studios: tuple[Any, Any]) -> None:
    studio, _ = studios
    wallet = make_wallet(studio, credited=5000)
    projection_rebuild()

    class FormFailed(Exception):
        pass

    # when: the form's transaction fails after the request was made
    with pytest.raises(FormFailed), tenant_context(studio.pk), transaction.atomic():
        payout_wallet_request(tenant_id=studio.pk, account_id=wallet.account.pk, actor=wallet.owner)
        raise FormFailed

    # then: neither the message nor the audit row exists
    assert requests_published() == [] and request_audits() == 0


def test_the_consumer_refuses_to_run_inside_a_transaction(studios: tuple[Any, Any]) -> None:
    studio, _ = studios
    with transaction.atomic(), pytest.raises(transaction.TransactionManagementError):
        payout_wallet_run(tenant_id=studio.pk, account_id=1, message_id=uuid.uuid4(), trigger="test")


def test_wallet_requests_go_to_their_consumer_on_the_payments_queue() -> None:
    import tasks.payouts  # noqa: F401 - registers the consumers

    assert resolve_route(TOPIC_WALLET_REQUESTED) == Route(TOPIC_WALLET_REQUESTED, WALLET_REQUEST_CONSUMER, "payments")
