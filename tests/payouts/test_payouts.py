"""Payouts: each due wallet is paid its exact balance once per batch, whatever crashes, races or
redeliveries happen; the provider is called with the payout id as its idempotency key.

Real PostgreSQL and Redis throughout; the sandbox adapter plays the provider, and a stand-in
adapter is used only where a provider must refuse or fail.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
import uuid
from typing import Any

import pytest
from django.db import IntegrityError, OperationalError, connection, transaction
from django.test import Client, override_settings
from django.utils import timezone

from apps.commerce.models import CheckoutLine
from apps.core.locks import StaleLeaseError, fenced_lock
from apps.ledger.models import LedgerEvent
from apps.ledger.projection import projection_rebuild
from apps.ledger.services import EntryIn, ledger_entries_append
from apps.ops.killswitch import kill_switch_engage
from apps.outbox.models import OutboxMessage
from apps.outbox.routing import Route, resolve_route
from apps.payments.providers.base import PayoutDestinationError, PayoutResult, PayoutStatus, ProviderError
from apps.payouts import services
from apps.payouts.models import Payout, PayoutBatch, PayoutDestination
from apps.payouts.services import (
    BATCH_LOCK,
    NotAMember,
    payout_batch_run,
    payout_destination_set,
    payout_resolve,
    payout_submit,
    payouts_requeue_stale,
    payouts_settle_submitted,
    wallet_exact_balance,
)
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog, Organization
from tests.commerce.fixtures import empty_broker, row_lock_strategy  # noqa: F401 - fixtures, used by name
from tests.commerce.refunds import ask, confirmed
from tests.factories.tenancy import MembershipFactory, UserFactory
from tests.payouts.helpers import Wallet, make_wallet, post, sale_to_wallet
from tests.web.studio.conftest import StudioPeople, people_of

pytestmark = pytest.mark.django_db(transaction=True)


def exact_balance(wallet: Wallet) -> int:
    with tenant_context(wallet.tenant.pk), transaction.atomic():
        return wallet_exact_balance(account=wallet.account, tenant=wallet.tenant)


def payouts_of(wallet: Wallet) -> list[Payout]:
    with system_context("test: payouts"):
        return list(Payout.objects.filter(account=wallet.account).order_by("created_at"))


def all_payouts() -> list[Payout]:
    with system_context("test: payouts"):
        return list(Payout.objects.order_by("created_at"))


def line_of(people: StudioPeople, checkout_id: str, kind: str) -> int:
    with tenant_context(people.org.pk):
        return CheckoutLine.objects.get(checkout_id=checkout_id, kind=kind).pk


def submit_all() -> None:
    for payout in all_payouts():
        with tenant_context(payout.tenant_id):
            payout_submit(payout_id=payout.id)


@pytest.fixture
def studio(tenant_a: Any) -> Organization:
    return tenant_a.org


def test_a_batch_pays_each_due_wallet_its_exact_balance_once(studio: Organization) -> None:
    # given: a wallet due (5,000), one below the minimum (500), one without a destination
    due = make_wallet(studio, credited=5000)
    small = make_wallet(studio, credited=500)
    nowhere = make_wallet(studio, credited=9000, destination=None)
    projection_rebuild()

    # when: a batch runs, and its payouts are submitted
    result = payout_batch_run(trigger="test")
    submit_all()

    # then: one payout of 5,000 for the due wallet, debited in the ledger, paid by the provider
    [payout] = payouts_of(due)
    assert result.payout_ids == [payout.id] and not result.resumed
    assert (payout.amount_minor, payout.currency, payout.status) == (5000, "EUR", Payout.Status.PAID)
    assert payout.provider_payout_id and payout.completed_at is not None
    with system_context("test"):
        debit = LedgerEvent.objects.get(pk=payout.debit_event_id)
        batch = PayoutBatch.objects.get(pk=result.batch_id)
        assert OutboxMessage.objects.filter(topic="payout.created", aggregate_id=str(payout.id)).count() == 1
    assert (debit.kind, debit.amount_minor, debit.idempotency_key) == ("debit", 5000, f"payout:{payout.id}")
    assert batch.status == PayoutBatch.Status.COMPLETED and batch.payouts_created == 1
    assert exact_balance(due) == 0
    assert payouts_of(small) == [] and payouts_of(nowhere) == []

    # when: another batch runs after the projection caught up
    projection_rebuild()
    again = payout_batch_run(trigger="test")

    # then: nobody is paid twice
    assert again.payout_ids == [] and again.batch_id != result.batch_id
    assert len(payouts_of(due)) == 1


def test_the_payout_is_the_exact_balance_including_debits_not_yet_projected(studio: Organization) -> None:
    # given: a projected credit of 5,000, then a refund debit of 1,200 the projector has not applied
    wallet = make_wallet(studio, credited=5000)
    projection_rebuild()
    post(studio, wallet.account, 1200, kind="debit")

    # when
    payout_batch_run(trigger="test")

    # then: 3,800 is paid out, not the projected 5,000
    [payout] = payouts_of(wallet)
    assert payout.amount_minor == 3800
    assert exact_balance(wallet) == 0


@pytest.mark.usefixtures("empty_broker", "row_lock_strategy")
def test_money_a_refund_under_way_will_take_back_stays_in_the_wallet(tenant_a: Any, settings: Any) -> None:
    # given: a photographer's sale (30.60 in their wallet after the fee), and the studio's refund
    # of its print (22.50 of it) asked for, not landed yet; payouts from 5.00
    settings.PAYOUT_MINIMUM_MINOR = 500
    people = people_of(tenant_a)
    sale, wallet = sale_to_wallet(people)
    refund = ask(people, sale, [line_of(people, sale, "print")])
    projection_rebuild()

    # when: a batch runs
    payout_batch_run(trigger="test")

    # then: only 8.10 is paid out; the refund's 22.50 stays in the wallet
    [payout] = payouts_of(wallet)
    assert payout.amount_minor == 810
    assert exact_balance(wallet) == 2250

    # when: the refund lands
    confirmed(refund, sale)

    # then: its debit takes what was held: the wallet is at zero, not below
    assert exact_balance(wallet) == 0
    assert len(payouts_of(wallet)) == 1


@pytest.mark.usefixtures("empty_broker", "row_lock_strategy")
def test_the_due_wallet_scan_leaves_out_a_wallet_that_refunds_under_way_take_below_the_minimum(
    tenant_a: Any,
) -> None:
    # given: a wallet of 30.60, 22.50 of it held by the print's refund (8.10 left, under the
    # 10.00 minimum), and a wallet of 20.00 with nothing held
    people = people_of(tenant_a)
    sale, held = sale_to_wallet(people)
    ask(people, sale, [line_of(people, sale, "print")])
    free = make_wallet(people.org, credited=2000)
    projection_rebuild()

    # when: the batch scans for due wallets
    with system_context("test: due wallets"):
        due = [w.account_id for w in services._due_wallets(batch_id=0, chunk=10)]

    # then: only the wallet whose balance less its refunds under way reaches the minimum
    assert due == [free.account.pk]
    assert held.account.pk not in due


def test_a_runner_that_lost_its_lease_is_refused_and_the_next_runner_finishes_the_batch(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: three due wallets, and a first runner that pays one, then stalls past its lease TTL
    wallets = [make_wallet(studio, credited=2000 + i) for i in range(3)]
    projection_rebuild()
    with system_context("test: due wallets"):
        due = list(services._due_wallets(batch_id=0, chunk=10))
    assert len(due) == 3
    with fenced_lock(BATCH_LOCK, ttl=0.5) as stale, system_context("test: first runner"):
        batch, _ = services._batch_open(lease=stale, trigger="first")
        services._payout_wallet(lease=stale, batch=batch, wallet=due[0])
        time.sleep(0.7)  # the Redis key expires: the first runner is paused, not dead

        # when: a second runner takes the lease and runs
        result = payout_batch_run(trigger="second")

        # then: the stale runner's next write is refused by its epoch, and writes nothing
        with pytest.raises(StaleLeaseError):
            services._payout_wallet(lease=stale, batch=batch, wallet=due[1])

    # then: the second runner resumed the same batch and paid the two others; each wallet once
    assert result.resumed and result.batch_id == batch.pk and len(result.payout_ids) == 2
    assert [len(payouts_of(w)) for w in wallets] == [1, 1, 1]
    with system_context("test"):
        finished = PayoutBatch.objects.get(pk=batch.pk)
    assert (finished.status, finished.runs, finished.payouts_created) == (PayoutBatch.Status.COMPLETED, 2, 3)
    assert finished.epoch == result.epoch > stale.epoch
    assert [exact_balance(w) for w in wallets] == [0, 0, 0]


def test_a_runner_that_crashed_midway_leaves_a_batch_the_next_run_finishes(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: three due wallets and a runner that dies after the first payout
    wallets = [make_wallet(studio, credited=3000) for _ in range(3)]
    projection_rebuild()
    real = services._payout_wallet
    calls = {"n": 0}

    def dies_after_one(**kwargs: Any) -> Payout | None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("worker killed")
        return real(**kwargs)

    monkeypatch.setattr(services, "_payout_wallet", dies_after_one)
    with pytest.raises(RuntimeError):
        payout_batch_run(trigger="crashes")
    monkeypatch.setattr(services, "_payout_wallet", real)

    # when: the next run
    result = payout_batch_run(trigger="next")

    # then: it resumed the batch and each wallet has exactly one payout
    assert result.resumed and len(result.payout_ids) == 2
    assert sorted(len(payouts_of(w)) for w in wallets) == [1, 1, 1]
    with system_context("test"):
        assert PayoutBatch.objects.filter(status=PayoutBatch.Status.RUNNING).count() == 0


def test_a_destination_changed_while_the_batch_runs_is_the_one_paid(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a due wallet, and its owner's studio moving it from one account to another just
    # after the batch read the due wallets (their destinations included) and before its payout
    wallet = make_wallet(studio, credited=2600, destination="old-bank")
    projection_rebuild()
    real = services._payout_wallet

    def destination_changed_first(**kwargs: Any) -> Payout | None:
        with tenant_context(studio.pk):
            payout_destination_set(tenant=studio, owner=wallet.owner, provider="sandbox", destination="new-bank")
        return real(**kwargs)

    monkeypatch.setattr(services, "_payout_wallet", destination_changed_first)

    # when: the batch writes the payout
    payout_batch_run(trigger="test")

    # then: the payout goes to the destination set before it was written, not the one it replaced
    [payout] = payouts_of(wallet)
    assert (payout.provider, payout.destination) == ("sandbox", "new-bank")


def test_the_kill_switch_engaged_during_a_batch_stops_it_before_the_next_wallet(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: three due wallets, and an operator engaging the payouts kill switch (say, payout
    # destinations were tampered with) once the batch has paid the first
    wallets = [make_wallet(studio, credited=3000) for _ in range(3)]
    projection_rebuild()
    real = services._payout_wallet

    def switch_engaged_after_one(**kwargs: Any) -> Payout | None:
        payout = real(**kwargs)
        kill_switch_engage(capability="payouts", reason="destinations tampered with", actor_label="ops")
        return payout

    monkeypatch.setattr(services, "_payout_wallet", switch_engaged_after_one)

    # when: the batch runs on
    result = payout_batch_run(trigger="test")

    # then: it stopped there: one payout, the two other wallets untouched, the batch not left running
    assert result.paused and len(result.payout_ids) == 1
    assert sorted(len(payouts_of(w)) for w in wallets) == [0, 0, 1]
    assert sorted(exact_balance(w) for w in wallets) == [0, 3000, 3000]
    with system_context("test"):
        batch = PayoutBatch.objects.get(pk=result.batch_id)
    assert (batch.status, batch.payouts_created) == (PayoutBatch.Status.COMPLETED, 1)


def test_concurrent_runs_pay_each_wallet_once(studio: Organization) -> None:
    # given: five due wallets
    wallets = [make_wallet(studio, credited=1500) for _ in range(5)]
    projection_rebuild()
    barrier = threading.Barrier(3)
    results: list[Any] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(payout_batch_run(trigger="race"))
        except Exception as exc:  # noqa: BLE001 - reported below
            results.append(exc)
        finally:
            connection.close()

    # when: three runners start at once
    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then: every wallet is paid exactly once, whoever ran
    assert all(not isinstance(r, Exception) for r in results), results
    assert sum(len(r.payout_ids) for r in results) == 5
    assert [len(payouts_of(w)) for w in wallets] == [1] * 5


def test_submit_twice_or_at_once_pays_once(studio: Organization) -> None:
    # given: one pending payout
    make_wallet(studio, credited=4000)
    projection_rebuild()
    [payout_id] = payout_batch_run(trigger="test").payout_ids
    answers: list[Any] = []

    def submit() -> None:
        try:
            with tenant_context(studio.pk):
                answers.append(payout_submit(payout_id=payout_id))
        finally:
            connection.close()

    # when: two workers submit it at once (a redelivery), then once more
    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    submit()

    # then: one attempt called the provider (the other found it claimed or paid), paid once
    [payout] = all_payouts()
    assert payout.status == Payout.Status.PAID and payout.attempts == 1
    assert {a.provider_payout_id for a in answers} <= {payout.provider_payout_id, None}
    assert answers[-1].provider_payout_id == payout.provider_payout_id


class StandInProvider:
    """Plays a provider that answers each call with the next of `outcomes` (a PayoutResult or a
    ProviderError; the last one repeats)."""

    name = "sandbox"

    def __init__(self, *outcomes: PayoutResult | ProviderError) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[dict[str, Any]] = []

    def payout(self, **kwargs: Any) -> PayoutResult:
        self.calls.append(kwargs)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome

    def payout_status(self, **kwargs: Any) -> PayoutResult:
        return self.payout(**kwargs)


def pending_payout(studio: Organization, monkeypatch: pytest.MonkeyPatch, *outcomes: Any) -> tuple[Payout, Wallet, Any]:
    wallet = make_wallet(studio, credited=2500)
    projection_rebuild()
    payout_batch_run(trigger="test")
    provider = StandInProvider(*outcomes)
    monkeypatch.setattr(services, "get_provider", lambda name: provider)
    return all_payouts()[0], wallet, provider


def test_a_final_refusal_fails_the_payout_and_credits_the_wallet_back(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a provider that refuses for good (e.g. a closed account)
    refusal = ProviderError("account closed", provider="sandbox", retryable=False, http_status=400)
    payout, wallet, provider = pending_payout(studio, monkeypatch, refusal)

    # when: submitted twice
    with tenant_context(studio.pk):
        payout_submit(payout_id=payout.id)
        payout_submit(payout_id=payout.id)

    # then: failed once, the debit reversed once, the money back in the wallet
    [failed] = payouts_of(wallet)
    assert failed.status == Payout.Status.FAILED and "account closed" in failed.last_error
    assert len(provider.calls) == 1 and provider.calls[0]["payout_id"] == str(payout.id)
    with system_context("test"):
        reversal = LedgerEvent.objects.get(pk=failed.reversal_event_id)
    assert (reversal.kind, reversal.amount_minor) == ("credit", 2500)
    assert exact_balance(wallet) == 2500


def test_a_destination_the_adapter_refuses_fails_the_payout_before_anything_is_sent(studio: Organization) -> None:
    # given: a wallet whose (sandbox) destination was changed to a Stripe one that is not valid
    wallet = make_wallet(studio, credited=2200)
    with system_context("test"):
        PayoutDestination.objects.filter(owner=wallet.owner).update(provider="stripe", destination="cus_123")
    projection_rebuild()
    [payout_id] = payout_batch_run(trigger="test").payout_ids
    # when
    with tenant_context(studio.pk):
        payout_submit(payout_id=payout_id)
    # then: failed with the adapter's reason, the money back in the wallet
    [failed] = payouts_of(wallet)
    assert failed.status == Payout.Status.FAILED and "connected account" in failed.last_error
    assert exact_balance(wallet) == 2200


def test_a_provider_answer_of_failed_also_reverses(studio: Organization, monkeypatch: pytest.MonkeyPatch) -> None:
    answer = PayoutResult(provider_payout_id="po_1", status=PayoutStatus.FAILED, amount_minor=2500, currency="EUR")
    payout, wallet, _ = pending_payout(studio, monkeypatch, answer)
    with tenant_context(studio.pk):
        payout_submit(payout_id=payout.id)
    [failed] = payouts_of(wallet)
    assert (failed.status, failed.provider_payout_id) == (Payout.Status.FAILED, "po_1")
    assert exact_balance(wallet) == 2500


def test_a_provider_that_settles_later_leaves_the_payout_submitted(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = PayoutResult(provider_payout_id="batch_9", status=PayoutStatus.PENDING, amount_minor=2500, currency="EUR")
    payout, wallet, _ = pending_payout(studio, monkeypatch, answer)
    with tenant_context(studio.pk):
        payout_submit(payout_id=payout.id)
    [submitted] = payouts_of(wallet)
    assert (submitted.status, submitted.completed_at) == (Payout.Status.SUBMITTED, None)
    assert exact_balance(wallet) == 0


def test_a_retryable_error_keeps_the_payout_pending_and_raises(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    outage = ProviderError("503 from provider", provider="sandbox", retryable=True, http_status=503)
    payout, wallet, _ = pending_payout(studio, monkeypatch, outage)
    with tenant_context(studio.pk), pytest.raises(ProviderError):
        payout_submit(payout_id=payout.id)
    [pending] = payouts_of(wallet)
    assert (pending.status, pending.attempts, pending.reversal_event_id) == (Payout.Status.PENDING, 1, None)
    assert pending.claimed_until is None and "503" in pending.last_error  # released for the retry
    assert exact_balance(wallet) == 0


TIMEOUT = ProviderError("read timed out", provider="sandbox", retryable=True)
CLOSED = ProviderError("account closed", provider="sandbox", retryable=False, http_status=400)


@pytest.mark.parametrize(
    ("outcomes", "why"),
    [
        # the first attempt may have paid before it timed out; the retry is refused (e.g. PayPal
        # INSUFFICIENT_FUNDS because the first payout used the balance)
        ((TIMEOUT, CLOSED), "refusal after an attempt whose outcome is unknown"),
        ((ProviderError("unreadable 200 answer", provider="sandbox", retryable=False, http_status=200),), "unread"),
        (
            (ProviderError("already paid, other parameters", provider="sandbox", retryable=False, http_status=409),),
            "409",
        ),
        ((ProviderError("already transferred", provider="sandbox", retryable=False),), "no status"),
    ],
)
def test_a_final_error_that_leaves_the_outcome_unknown_needs_review_and_credits_nothing_back(
    studio: Organization, monkeypatch: pytest.MonkeyPatch, outcomes: Any, why: str
) -> None:
    payout, wallet, provider = pending_payout(studio, monkeypatch, *outcomes)
    with tenant_context(studio.pk):
        for _ in outcomes:
            try:
                payout_submit(payout_id=payout.id)
            except ProviderError:
                pass  # the retryable one: the consumer would retry
        payout_submit(payout_id=payout.id)  # a redelivery after the conclusion calls nothing
    [review] = payouts_of(wallet)
    assert review.status == Payout.Status.NEEDS_REVIEW, why
    assert review.reversal_event_id is None and exact_balance(wallet) == 0
    assert len(provider.calls) == len(outcomes)


def test_a_payout_another_attempt_holds_is_left_alone(studio: Organization, monkeypatch: pytest.MonkeyPatch) -> None:
    answer = PayoutResult(provider_payout_id="po_2", status=PayoutStatus.PAID, amount_minor=2500, currency="EUR")
    payout, _, provider = pending_payout(studio, monkeypatch, answer)
    with system_context("test"):
        Payout.objects.filter(pk=payout.id).update(claimed_until=timezone.now() + dt.timedelta(seconds=60))
    with tenant_context(studio.pk):
        assert payout_submit(payout_id=payout.id).status == Payout.Status.PENDING
    assert provider.calls == []
    with system_context("test"):  # the claim lapsed: the holder died mid-call
        Payout.objects.filter(pk=payout.id).update(claimed_until=timezone.now() - dt.timedelta(seconds=1))
    with tenant_context(studio.pk):
        assert payout_submit(payout_id=payout.id).status == Payout.Status.PAID
    assert len(provider.calls) == 1


def test_a_payout_unsent_past_the_retry_window_goes_to_review_without_calling_the_provider(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    payout, wallet, provider = pending_payout(studio, monkeypatch, TIMEOUT)
    with system_context("test"):
        Payout.objects.filter(pk=payout.id).update(created_at=timezone.now() - dt.timedelta(hours=21))
    with tenant_context(studio.pk):
        assert payout_submit(payout_id=payout.id).status == Payout.Status.NEEDS_REVIEW
    assert provider.calls == []
    assert "not sent within" in payouts_of(wallet)[0].last_error


def test_an_operator_settles_payouts_needing_review(studio: Organization, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: two payouts in review (a refusal after a timeout)
    first, second = make_wallet(studio, credited=2100), make_wallet(studio, credited=2200)
    projection_rebuild()
    payout_batch_run(trigger="test")
    ids = [payouts_of(w)[0].id for w in (first, second)]
    with tenant_context(studio.pk):
        for payout_id in ids:
            provider = StandInProvider(TIMEOUT, CLOSED)
            monkeypatch.setattr(services, "get_provider", lambda name, provider=provider: provider)
            with pytest.raises(ProviderError):
                payout_submit(payout_id=payout_id)
            payout_submit(payout_id=payout_id)
    # when: the operator checked with the provider: the first was paid, the second not
    with system_context("test: operator"):
        paid = payout_resolve(payout_id=ids[0], paid=True, actor=None, actor_label="admin:ops")
        failed = payout_resolve(payout_id=ids[1], paid=False, actor=None, actor_label="admin:ops")
        with pytest.raises(ValueError):
            payout_resolve(payout_id=ids[0], paid=False, actor=None, actor_label="admin:ops")
        audits = AuditLog.objects.filter(action="payout.resolve").count()
    # then: paid stays debited; failed is credited back once; both audited
    assert (paid.status, paid.resolved_by, paid.provider_payout_id) == (Payout.Status.PAID, "admin:ops", None)
    assert failed.status == Payout.Status.FAILED and failed.reversal_event_id is not None
    assert (exact_balance(first), exact_balance(second)) == (0, 2200)
    assert audits == 2


def test_a_wallet_debit_cannot_commit_while_a_payout_reads_its_balance(studio: Organization) -> None:
    # given: a payout transaction that has read the wallet's exact balance and not committed yet
    wallet = make_wallet(studio, credited=3000)
    projection_rebuild()
    outcome: list[BaseException | None] = []

    def refund_meanwhile() -> None:
        try:
            with tenant_context(studio.pk), transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '300ms'")
                refund = EntryIn(
                    account_id=wallet.account.pk,
                    amount_minor=500,
                    currency="EUR",
                    idempotency_key="refund-meanwhile",
                    kind="debit",
                )
                ledger_entries_append(tenant=studio, entries=[refund])
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)
        finally:
            connection.close()

    with tenant_context(studio.pk), transaction.atomic():
        assert wallet_exact_balance(account=wallet.account, tenant=studio) == 3000
        # when: a refund debit of the wallet tries to commit meanwhile
        competitor = threading.Thread(target=refund_meanwhile)
        competitor.start()
        # (the competitor gives up after its 300 ms lock timeout; the bound only covers a slow start)
        competitor.join(timeout=60)
    # then: it had to wait for the payout's transaction (here: gave up after its lock timeout)
    assert len(outcome) == 1 and isinstance(outcome[0], OperationalError), outcome
    assert "lock timeout" in str(outcome[0])


def test_the_ledger_api_refuses_to_debit_a_wallet(studio: Organization, tenant_a: Any) -> None:
    wallet = make_wallet(studio, credited=3000)
    response = tenant_a.client().post(
        "/api/v1/ledger/debits",
        {"account_id": wallet.account.pk, "amount_minor": 100, "currency": "EUR"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )
    assert response.status_code == 422 and response.json()["type"].endswith("ledger-wallet-not-debitable")
    assert exact_balance(wallet) == 3000


def test_submit_refuses_to_run_inside_a_transaction(studio: Organization) -> None:
    with transaction.atomic(), pytest.raises(transaction.TransactionManagementError):
        payout_submit(payout_id=uuid.uuid4())


def test_the_batch_refuses_to_run_inside_a_transaction() -> None:
    with transaction.atomic(), pytest.raises(transaction.TransactionManagementError):
        payout_batch_run(trigger="test")


def test_a_lost_payout_message_is_queued_again(studio: Organization) -> None:
    # given: a payout whose message the broker lost, ten minutes ago
    make_wallet(studio, credited=2000)
    projection_rebuild()
    [payout_id] = payout_batch_run(trigger="test").payout_ids
    with system_context("test"):
        Payout.objects.filter(pk=payout_id).update(
            queued_at=Payout.objects.get(pk=payout_id).queued_at.replace(year=2020)
        )

    # when: the sweep runs (twice)
    with system_context("test: sweep"):
        first = payouts_requeue_stale(older_than_seconds=600)
        second = payouts_requeue_stale(older_than_seconds=600)

    # then: queued again once, audited
    assert first == [payout_id] and second == []
    with system_context("test"):
        assert OutboxMessage.objects.filter(topic="payout.created", aggregate_id=str(payout_id)).count() == 2
        assert AuditLog.objects.filter(action="payout.requeue", target_id=str(payout_id)).count() == 1


def test_payout_messages_go_to_the_providers_worker() -> None:
    import tasks.payouts  # noqa: F401 - registers the consumers

    assert resolve_route("payout.created") == Route("payout.created", "payouts.submit", "providers")
    assert resolve_route("payout.batch_requested").task_name == "payouts.batch_run_requested"


# --- destinations ---------------------------------------------------------------------------


def test_a_destination_is_for_members_only_and_validated_by_the_provider(studio: Organization) -> None:
    outsider = UserFactory()
    with tenant_context(studio.pk):
        with pytest.raises(NotAMember):
            payout_destination_set(tenant=studio, owner=outsider, provider="sandbox", destination="x")
        member = UserFactory()
        MembershipFactory(tenant=studio, user=member, role="photographer")
        with pytest.raises(PayoutDestinationError):
            payout_destination_set(tenant=studio, owner=member, provider="stripe", destination="not-an-account")
        payout_destination_set(tenant=studio, owner=member, provider="stripe", destination="acct_1Nv0FGQ9RKHgCVdK")
        payout_destination_set(tenant=studio, owner=member, provider="sandbox", destination="bank-2")
        rows = list(PayoutDestination.objects.filter(owner=member))
        audits = AuditLog.objects.filter(action="payout_destination.set", target_id=str(member.pk)).count()
    assert [(r.provider, r.destination) for r in rows] == [("sandbox", "bank-2")]
    assert audits == 2


# --- constraints ----------------------------------------------------------------------------


def _payout_row(wallet: Wallet, batch: PayoutBatch, **overrides: Any) -> Payout:
    values: dict[str, Any] = {
        "tenant": wallet.tenant,
        "batch": batch,
        "account": wallet.account,
        "owner": wallet.owner,
        "amount_minor": 100,
        "currency": "EUR",
        "provider": "sandbox",
        "destination": "x",
        "debit_event_id": 1,
        **overrides,
    }
    with tenant_context(wallet.tenant.pk), transaction.atomic():
        return Payout.objects.create(**values)


@pytest.mark.parametrize(
    "overrides",
    [
        {"amount_minor": 0},
        {"status": "paid"},  # paid without the provider's id
        {"status": "failed"},  # failed without a reversal
        {"status": "lost"},
        {"status": "submitted", "resolved_by": "admin:ops"},  # only an operator's "paid" goes without an id
    ],
)
def test_payout_constraints_refuse_bad_rows(studio: Organization, overrides: dict[str, Any]) -> None:
    wallet = make_wallet(studio, credited=0)
    with system_context("test"):
        batch = PayoutBatch.objects.create(trigger="t", epoch=1)
    with pytest.raises(IntegrityError):
        _payout_row(wallet, batch, **overrides)


def test_one_payout_per_batch_and_wallet_and_one_running_batch(studio: Organization) -> None:
    wallet = make_wallet(studio, credited=0)
    with system_context("test"):
        batch = PayoutBatch.objects.create(trigger="t", epoch=1)
        with pytest.raises(IntegrityError), transaction.atomic():
            PayoutBatch.objects.create(trigger="t2", epoch=2)
    _payout_row(wallet, batch)
    with pytest.raises(IntegrityError):
        _payout_row(wallet, batch)
    with pytest.raises(IntegrityError):
        _payout_row(wallet, batch, provider_payout_id="dup")  # same batch and wallet again


def test_provider_payout_ids_are_unique_per_provider(studio: Organization) -> None:
    first, second = make_wallet(studio, credited=0), make_wallet(studio, credited=0)
    with system_context("test"):
        batch = PayoutBatch.objects.create(trigger="t", epoch=1)
    _payout_row(first, batch, provider_payout_id="po_same", status="submitted")
    with pytest.raises(IntegrityError):
        _payout_row(second, batch, provider_payout_id="po_same", status="submitted")


def test_another_studio_sees_no_payouts(studio: Organization, tenant_b: Any) -> None:
    make_wallet(studio, credited=2000)
    projection_rebuild()
    payout_batch_run(trigger="test")
    with tenant_context(tenant_b.org.pk):
        assert Payout.objects.count() == 0 and PayoutDestination.objects.count() == 0
    with tenant_context(studio.pk):
        assert Payout.objects.count() == 1 and PayoutDestination.objects.count() == 1


@override_settings(PAYOUT_MINIMUM_MINOR=10_000)
def test_the_minimum_is_a_setting(studio: Organization) -> None:
    make_wallet(studio, credited=9_999)
    projection_rebuild()
    assert payout_batch_run(trigger="test").payout_ids == []


@pytest.mark.parametrize("minimum", [0, -500])
def test_without_a_minimum_only_positive_balances_are_paid(studio: Organization, minimum: int) -> None:
    # given: no minimum configured (0 or below), an empty wallet, an overdrawn one and one in credit
    empty = make_wallet(studio, credited=0)
    overdrawn = make_wallet(studio, credited=0)
    post(studio, overdrawn.account, 300, kind="debit")
    credited = make_wallet(studio, credited=700)
    projection_rebuild()

    # when: a batch runs, and a photographer with an empty wallet asks to be paid
    with override_settings(PAYOUT_MINIMUM_MINOR=minimum):
        result = payout_batch_run(trigger="test")
        with tenant_context(studio.pk), transaction.atomic(), pytest.raises(services.BelowPayoutMinimum):
            services.payout_wallet_request(tenant_id=studio.pk, account_id=empty.account.pk, actor=empty.owner)

    # then: the batch completes, paying the wallet in credit only
    [payout] = payouts_of(credited)
    assert result.payout_ids == [payout.id] and payout.amount_minor == 700
    assert payouts_of(empty) == [] and payouts_of(overdrawn) == []


def test_metrics_show_payouts_per_status_and_the_oldest_pending(studio: Organization, tenant_b: Any) -> None:
    # given: a pending payout in each of two studios, one of them paid
    make_wallet(studio, credited=2000)
    make_wallet(tenant_b.org, credited=3000)
    projection_rebuild()
    first, _ = payout_batch_run(trigger="test").payout_ids
    with tenant_context(studio.pk):
        payout_submit(payout_id=first)
    # when: Prometheus scrapes
    body = Client().get("/metrics").content.decode()
    # then: figures across studios; no batch running
    assert 'darkroom_payouts{status="paid"} 1.0' in body
    assert 'darkroom_payouts{status="pending"} 1.0' in body
    assert 'darkroom_payouts{status="failed"} 0.0' in body
    assert re.search(r"^darkroom_payouts_oldest_pending_age_seconds (\S+)$", body, re.MULTILINE)
    assert "darkroom_payouts_oldest_submitted_age_seconds 0.0" in body
    assert "darkroom_payout_batch_running_seconds 0.0" in body


def metric(body: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", body, re.MULTILINE)
    assert found, f"{name} is not exported"
    return float(found[1])


def test_metrics_show_how_long_ago_a_batch_over_every_wallet_completed_and_the_period(
    studio: Organization, settings: Any
) -> None:
    # given: no batch yet, beat running the batch every 6 hours
    settings.PAYOUT_BATCH_EVERY_SECONDS = 21600
    body = Client().get("/metrics").content.decode()
    # then: nothing completed yet reads 0 (nothing to be late against), beside the period
    assert metric(body, "darkroom_payout_batch_last_completed_age_seconds") == 0.0
    assert metric(body, "darkroom_payout_batch_every_seconds") == 21600.0

    # given: a scheduled batch completed two days ago
    payout_batch_run(trigger="schedule")
    with system_context("test: batch"):
        PayoutBatch.objects.update(completed_at=timezone.now() - dt.timedelta(days=2))
    # and: a photographer's request paid their wallet just now (a batch of its own)
    wallet = make_wallet(studio, credited=5000)
    projection_rebuild()
    with tenant_context(studio.pk), transaction.atomic():
        services.payout_wallet_request(tenant_id=studio.pk, account_id=wallet.account.pk, actor=wallet.owner)
    with tenant_context(studio.pk):
        assert (
            services.payout_wallet_run(
                tenant_id=studio.pk,
                account_id=wallet.account.pk,
                message_id=uuid.uuid4(),
                trigger="wallet request: test",
            ).outcome
            == "paid"
        )

    # when: Prometheus scrapes
    body = Client().get("/metrics").content.decode()

    # then: the age is the scheduled batch's: a request says nothing about the schedule
    assert 2 * 86400 <= metric(body, "darkroom_payout_batch_last_completed_age_seconds") < 2 * 86400 + 60


def submitted_payout(studio: Organization, monkeypatch: pytest.MonkeyPatch, *later: Any) -> tuple[Payout, Wallet, Any]:
    """A payout the provider accepted to settle later; its status answers are `later`."""
    answer = PayoutResult(provider_payout_id="batch_7", status=PayoutStatus.PENDING, amount_minor=2500, currency="EUR")
    payout, wallet, provider = pending_payout(studio, monkeypatch, answer, *later)
    with tenant_context(studio.pk):
        assert payout_submit(payout_id=payout.id).status == Payout.Status.SUBMITTED
    return payout, wallet, provider


def settle() -> dict[str, int]:
    with override_settings(PAYOUT_SETTLE_EVERY_SECONDS=0):
        return payouts_settle_submitted()


@pytest.mark.parametrize(
    ("status", "outcome", "balance"),
    [(PayoutStatus.PAID, Payout.Status.PAID, 0), (PayoutStatus.FAILED, Payout.Status.FAILED, 2500)],
)
def test_the_settle_task_records_what_the_provider_says_of_submitted_payouts(
    studio: Organization, monkeypatch: pytest.MonkeyPatch, status: PayoutStatus, outcome: str, balance: int
) -> None:
    # given: a submitted payout, still pending at the provider on the first check
    pending = PayoutResult(provider_payout_id="batch_7", status=PayoutStatus.PENDING, amount_minor=2500, currency="EUR")
    final = PayoutResult(provider_payout_id="batch_7", status=status, amount_minor=2500, currency="EUR")
    payout, wallet, provider = submitted_payout(studio, monkeypatch, pending, final)
    # when: checked twice
    first = settle()
    with system_context("test"):
        assert Payout.objects.get(pk=payout.id).checked_at is not None
    assert payouts_settle_submitted() == {}  # asked recently: left alone at the default interval
    second = settle()
    # then: still submitted after the first, settled after the second (failed: credited back)
    assert first == {"submitted": 1} and second == {outcome: 1}
    [settled] = payouts_of(wallet)
    assert settled.status == outcome and exact_balance(wallet) == balance
    assert [c["provider_payout_id"] for c in provider.calls[1:]] == ["batch_7", "batch_7"]


def test_a_payout_its_provider_does_not_know_goes_to_review(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown = ProviderError("no such batch", provider="sandbox", retryable=False, http_status=404)
    _, wallet, _ = submitted_payout(studio, monkeypatch, TIMEOUT, unknown)
    assert settle() == {"unavailable": 1}
    assert settle() == {"needs_review": 1}
    [review] = payouts_of(wallet)
    assert review.status == Payout.Status.NEEDS_REVIEW and exact_balance(wallet) == 0


@pytest.mark.parametrize("http_status", [401, 403])
def test_a_status_check_the_provider_refuses_to_us_leaves_the_payout_submitted(
    studio: Organization, monkeypatch: pytest.MonkeyPatch, http_status: int
) -> None:
    # given: a submitted payout, and a provider refusing our credentials for a while (a key
    # rotated badly): that says nothing about the payout
    refused = ProviderError("invalid API key", provider="sandbox", retryable=False, http_status=http_status)
    paid = PayoutResult(provider_payout_id="batch_7", status=PayoutStatus.PAID, amount_minor=2500, currency="EUR")
    _, wallet, _ = submitted_payout(studio, monkeypatch, refused, paid)

    # when: checked while the key is refused, then once it works again
    first = settle()
    second = settle()

    # then: still submitted (not handed to an operator), then settled by the provider's answer
    assert (first, second) == ({"unavailable": 1}, {"paid": 1})
    [settled] = payouts_of(wallet)
    assert settled.status == Payout.Status.PAID and exact_balance(wallet) == 0


def test_an_answer_for_another_amount_goes_to_review(studio: Organization, monkeypatch: pytest.MonkeyPatch) -> None:
    answer = PayoutResult(provider_payout_id="po_9", status=PayoutStatus.PAID, amount_minor=25000, currency="EUR")
    payout, wallet, _ = pending_payout(studio, monkeypatch, answer)
    with tenant_context(studio.pk):
        payout_submit(payout_id=payout.id)
    [review] = payouts_of(wallet)
    assert review.status == Payout.Status.NEEDS_REVIEW and "25000" in review.last_error


def test_a_submitted_payout_is_not_credited_back_by_hand(studio: Organization, monkeypatch: pytest.MonkeyPatch) -> None:
    payout, wallet, _ = submitted_payout(studio, monkeypatch)
    with system_context("test: operator"), pytest.raises(ValueError, match="still with"):
        payout_resolve(payout_id=payout.id, paid=False, actor=None, actor_label="admin:ops")
    with system_context("test: operator"):
        assert payout_resolve(payout_id=payout.id, paid=True, actor=None, actor_label="admin:ops").status == "paid"
    assert exact_balance(wallet) == 0


def test_a_refusal_answering_an_attempt_whose_claim_lapsed_is_not_taken_as_certain(
    studio: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: attempt A claimed the payout and hung past its claim; attempt B claimed it after
    payout, wallet, _ = pending_payout(studio, monkeypatch, CLOSED)
    with tenant_context(studio.pk):
        attempt_a = services._claim(payout.id)
        with system_context("test"):
            Payout.objects.filter(pk=payout.id).update(claimed_until=timezone.now() - dt.timedelta(seconds=1))
        attempt_b = services._claim(payout.id)
        assert attempt_a is not None and attempt_b is not None
        assert (attempt_a.attempts, attempt_b.attempts) == (1, 2)
        # when: A's first-attempt call comes back refused with a 400
        services._conclude_refused(attempt_a, error=CLOSED, certain=True)
    # then: B may have sent it: review, not a credit back
    [review] = payouts_of(wallet)
    assert review.status == Payout.Status.NEEDS_REVIEW and exact_balance(wallet) == 0


def test_the_payout_claim_must_outlive_the_task_time_limit() -> None:
    from apps.payouts.checks import payout_claim_outlives_the_task

    assert payout_claim_outlives_the_task() == []
    with override_settings(PAYOUT_SUBMIT_CLAIM_SECONDS=60, CELERY_TASK_TIME_LIMIT=90):
        [error] = payout_claim_outlives_the_task()
    assert error.id == "payouts.E001"
