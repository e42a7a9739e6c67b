"""The projector: exactly-once apply, epoch fencing, failover (also by SIGKILL), fair sharing, rebuild."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable

import psycopg
import pytest
from django.db import connection, transaction

from apps.ledger import projection
from apps.ledger.models import LedgerCheckpoint
from apps.ledger.projection import Deposed, projection_apply, projection_rebuild
from apps.tenancy.context import system_context
from tests.factories.tenancy import OrganizationFactory
from tests.fixtures import backend_pid, wait_until_blocked
from tests.ledger.conftest import (
    balances_by_account,
    credit,
    debit,
    heads_and_checkpoints,
    make_account,
    projector_subprocess,
    totals,
)

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(condition: Callable[[], bool], *, timeout: float = 60.0, what: str = "condition") -> None:
    """Poll until `condition()` holds; a bounded wait for another process, not a timing assertion."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _some_history(accounts: int = 3, each: int = 7) -> list:
    made = []
    for n in range(accounts):
        org = OrganizationFactory()
        account = make_account(org)
        credit(org, account, 1000 + n)
        for i in range(each):
            debit(org, account, 10 + i)
        made.append((org, account))
    return made


def expected_from_events() -> dict[int, tuple[int, int, int, int]]:
    with system_context("test: ledger totals"), connection.cursor() as cursor:
        cursor.execute(
            "SELECT account_id, coalesce(sum(amount_minor) FILTER (WHERE kind = 'credit'), 0), "
            "coalesce(sum(amount_minor) FILTER (WHERE kind = 'debit'), 0), count(*) "
            "FROM ledger_ledgerevent GROUP BY account_id"
        )
        return {int(a): (int(c), int(d), int(c) - int(d), int(n)) for a, c, d, n in cursor.fetchall()}


def test_projector_applies_every_event_once(make_projector):
    # given: credits and debits over several tenants
    _some_history()
    # when: a projector catches up, then runs again with nothing new
    projector = make_projector(batch_size=4)
    applied = projector.catch_up()
    again = projector.catch_up()
    # then: balances equal the events, checkpoints reached the heads
    assert (applied, again) == (24, 0)
    assert balances_by_account() == expected_from_events()
    assert all(head == checkpoint for head, checkpoint in heads_and_checkpoints().values())


def test_deposed_leader_cannot_commit(make_projector):
    # given: leader A holds every partition and knows its epochs
    _some_history()
    leader_a = make_projector()
    leader_a.maintain()
    stale_epochs = dict(leader_a.held)
    # when: A's lock session dies unnoticed (a network partition) and B takes over
    assert leader_a._lock_conn is not None
    leader_a._lock_conn.close()
    leader_b = make_projector()
    leader_b.maintain()
    assert set(leader_b.held) == set(stale_epochs)
    # then: A's apply with its old epoch changes nothing and is refused
    partition, (head, _) = next(iter(heads_and_checkpoints().items()))
    with pytest.raises(Deposed), system_context("test: stale leader"), transaction.atomic():
        projection_apply(partition=partition, epoch=stale_epochs[partition], from_seq=0, to_seq=head)
    assert totals().projected_count == 0
    # and B applies everything exactly once
    leader_b.catch_up()
    assert balances_by_account() == expected_from_events()


def test_claim_by_a_new_leader_waits_for_and_then_fences_an_inflight_apply(make_projector):
    # given: leader A is inside an apply transaction (checkpoint row locked, not committed)
    _some_history(accounts=1)
    leader_a = make_projector()
    leader_a.maintain()
    partition, (head, _) = next((p, v) for p, v in heads_and_checkpoints().items() if v[0] > 0)
    epoch_a = leader_a.held[partition]
    claimer_pid: list[int] = []

    def claim() -> None:
        try:
            claimer_pid.append(backend_pid())
            projection.checkpoint_claim(partition=partition, leader="B", backend_pid=None)
        finally:
            connection.close()

    with system_context("test: inflight"), transaction.atomic():
        projection_apply(partition=partition, epoch=epoch_a, from_seq=0, to_seq=head)
        thread = threading.Thread(target=claim)
        thread.start()
        # the claim cannot complete while A's apply holds the checkpoint row: it waits for it
        wait_until_blocked(claimer_pid, thread, "B's claim")
    thread.join(timeout=60)
    assert not thread.is_alive()
    # then: A's apply committed once; B's epoch is newer, so A's next apply is refused
    checkpoint = LedgerCheckpoint.objects.get(partition=partition)
    assert (checkpoint.seq, checkpoint.epoch, checkpoint.leader) == (head, epoch_a + 1, "B")
    with pytest.raises(Deposed), system_context("test: inflight"), transaction.atomic():
        projection_apply(partition=partition, epoch=epoch_a, from_seq=head, to_seq=head + 1)
    assert balances_by_account() == expected_from_events()


def test_crash_before_commit_loses_and_doubles_nothing(make_projector, monkeypatch):
    # given: a projector whose first batch fails after the apply statement, before COMMIT
    _some_history()
    real_apply = projection.projection_apply_many
    calls = {"n": 0}

    def apply_then_crash(*args, **kwargs):
        calls["n"] += 1
        outcome = real_apply(*args, **kwargs)
        if calls["n"] == 1:
            raise RuntimeError("projector died mid-batch")
        return outcome

    monkeypatch.setattr(projection, "projection_apply_many", apply_then_crash)
    crashing = make_projector(batch_size=5)
    crashing.maintain()
    # when: it crashes inside its first batch, then dies (its locks go with its session)
    with pytest.raises(RuntimeError):
        crashing.work()
    assert totals().projected_count == 0
    crashing.close()
    monkeypatch.setattr(projection, "projection_apply_many", real_apply)
    # then: the next leader applies everything exactly once
    make_projector(batch_size=5).catch_up()
    assert balances_by_account() == expected_from_events()


def _blocked_apply_statements() -> list[int]:
    """Backends waiting for a lock inside the projector's apply statement."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND query LIKE %s AND pid <> pg_backend_pid()",
            ["%WITH want AS%"],
        )
        return [row[0] for row in cursor.fetchall()]


def _backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()[0] > 0


@pytest.mark.slow
def test_projector_killed_by_sigkill_mid_batch_loses_and_doubles_nothing(make_projector, runtime_conn):
    # given: an account projected up to 10 events, then 300 more appended
    org = OrganizationFactory()
    account = make_account(org)
    for _ in range(10):
        debit(org, account, 7)
    first = make_projector()
    first.catch_up()
    first.close()
    for _ in range(300):
        debit(org, account, 3)
    # and: the account's balance row is locked by someone else, so the next apply will block
    runtime_conn.execute("SELECT set_config('app.tenant_id', %s, true)", [str(org.pk)])
    runtime_conn.execute("SELECT 1 FROM ledger_accountbalance WHERE account_id = %s FOR UPDATE", [account.pk])
    # when: a projector process starts its first batch (checkpoint moved, not committed) ...
    process = projector_subprocess(batch_size=100)
    try:
        wait_for(lambda: bool(_blocked_apply_statements()), what="projector blocked mid-batch")
        orphan = _blocked_apply_statements()[0]
        # ... and is killed with SIGKILL inside that transaction
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    runtime_conn.rollback()
    wait_for(lambda: not _backend_alive(orphan), what="the killed projector's backend to end")
    # then: nothing of its batch committed, and its epoch is on record
    partition = next(iter(balances_by_account_partitions(account.pk)))
    checkpoint = LedgerCheckpoint.objects.get(partition=partition)
    assert checkpoint.seq == 10
    assert checkpoint.epoch == 2
    assert balances_by_account()[account.pk][3] == 10
    # and: the next leader applies the rest exactly once
    make_projector(batch_size=64).catch_up()
    assert balances_by_account()[account.pk] == (0, 970, -970, 310)
    assert totals().projected_count == totals().event_count == 310


def balances_by_account_partitions(account_id: int) -> set[int]:
    with system_context("test: ledger totals"), connection.cursor() as cursor:
        cursor.execute("SELECT partition FROM ledger_accountbalance WHERE account_id = %s", [account_id])
        return {row[0] for row in cursor.fetchall()}


@pytest.mark.slow
def test_partitions_fail_over_when_a_projector_process_dies():
    # given: two projector processes sharing the partitions
    _some_history(accounts=4, each=5)
    one = projector_subprocess("--name", "one")
    two = projector_subprocess("--name", "two")
    try:
        wait_for(lambda: _leaders() == {"one", "two"}, what="both projectors to lead partitions")
        wait_for(lambda: _caught_up(), what="initial catch-up")
        # when: one of them is killed, and more events arrive
        one.send_signal(signal.SIGKILL)
        one.wait(timeout=30)
        _some_history(accounts=4, each=5)
        # then: the survivor takes every partition over and applies everything exactly once
        wait_for(lambda: _leaders() == {"two"} and _caught_up(), what="failover to the survivor")
    finally:
        for process in (one, two):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    assert balances_by_account() == expected_from_events()


def _leaders() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT c.leader FROM ledger_ledgercheckpoint c JOIN pg_locks l ON l.locktype = 'advisory' "
            "AND l.classid = %s AND l.objid::bigint = c.partition AND l.objsubid = 2 AND l.granted "
            "AND l.pid = c.leader_backend_pid "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [projection.LEADER_LOCK_NAMESPACE],
        )
        return {row[0] for row in cursor.fetchall()}


def _caught_up() -> bool:
    state = heads_and_checkpoints()
    return bool(state) and all(head == checkpoint for head, checkpoint in state.values())


def test_projectors_share_partitions_fairly(make_projector):
    # given: one projector leading every partition
    first = make_projector()
    first.maintain()
    assert len(first.held) == 4
    # when: a second one joins and both rebalance
    second = make_projector()
    second.maintain()
    first.maintain()
    second.maintain()
    # then: each leads half, and no partition has two leaders
    assert (len(first.held), len(second.held)) == (2, 2)
    assert not set(first.held) & set(second.held)


def test_rebuild_equals_the_live_projection(make_projector, settings):
    # given: history over several tenants including a whale spread by client
    settings.LEDGER_WHALE_TENANTS = ["whale"]
    _some_history()
    whale = OrganizationFactory(slug="whale")
    whale_account = make_account(whale)
    for n in range(30):
        debit(whale, whale_account, 5 + n, client_id=f"c{n % 6}")
    make_projector(batch_size=7).catch_up()
    live = balances_by_account()
    live_checkpoints = heads_and_checkpoints()
    # when: the projection is rebuilt from zero (twice, with different batch sizes)
    first = projection_rebuild(batch_size=3)
    after_first = balances_by_account()
    projection_rebuild()
    # then: identical balances and checkpoints every time, equal to the events
    assert first.events == totals().event_count
    assert after_first == live == balances_by_account() == expected_from_events()
    assert heads_and_checkpoints() == live_checkpoints


def test_rebuild_fences_out_a_running_leader_which_then_resumes(make_projector):
    # given: a leader that has applied some history
    orgs = _some_history(accounts=2)
    leader = make_projector()
    leader.catch_up()
    # when: a rebuild runs, then more events arrive
    projection_rebuild()
    org, account = orgs[0]
    debit(org, account, 99)
    # then: the leader notices it was deposed, re-claims, and the projection stays exact
    assert leader.work() == 0
    assert leader.held == {}
    leader.catch_up()
    assert balances_by_account() == expected_from_events()


def test_lock_session_loss_releases_leadership_for_others(make_projector):
    # given: a leader whose lock session is terminated by the server
    leader = make_projector()
    leader.maintain()
    assert leader._lock_conn is not None
    pid = leader._lock_conn.info.backend_pid
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_for(lambda: not _backend_alive(pid), what="terminated session")
    # when: another projector looks for partitions
    other = make_projector()
    other.maintain()
    # then: it leads them all; the old leader, on its next maintenance, holds none
    assert len(other.held) == 4
    with pytest.raises(psycopg.Error):
        leader._lock_conn.execute("SELECT 1")
    leader.maintain()
    assert leader.held == {}
