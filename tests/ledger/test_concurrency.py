"""Concurrent appenders: commit order equals sequence order, and the projector skips nothing."""

from __future__ import annotations

import random
import threading
import uuid

import pytest
from django.db import connection

from apps.ledger.services import EntryIn, ledger_debits_append
from apps.tenancy.context import tenant_context
from tests.factories.tenancy import OrganizationFactory
from tests.fixtures import wait_until_blocked
from tests.ledger.conftest import (
    UncommittedAppend,
    WaitingAppend,
    balances_by_account,
    debit,
    heads_and_checkpoints,
    make_account,
    sequences_by_partition,
    totals,
)
from tests.ledger.test_projector import expected_from_events, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_later_sequence_cannot_commit_before_an_earlier_one(make_projector):
    # given: writer 1 appended to a partition and has not committed yet
    org = OrganizationFactory()
    account = make_account(org)
    first = UncommittedAppend(org, lambda: debit(org, account, 1))
    first.start()
    assert first.appended.wait(timeout=30)
    # when: writer 2 appends to the same partition
    second = WaitingAppend(lambda: debit(org, account, 2))
    second.start()
    wait_until_blocked(second.pids, second, "writer 2")
    # then: writer 2 waits for writer 1's commit; a projector now sees neither event
    projector = make_projector()
    assert projector.catch_up() == 0
    assert second.is_alive()
    first.commit()
    second.join(timeout=30)
    # and: sequence order is commit order, and both are projected
    seq_1 = first.result.items[0].sequence  # type: ignore[union-attr]
    seq_2 = second.result.items[0].sequence  # type: ignore[union-attr]
    assert (seq_1, seq_2) == (1, 2)
    assert projector.catch_up() == 2
    assert balances_by_account()[account.pk][1] == 3


@pytest.mark.slow
def test_concurrent_writers_with_a_live_projector_are_all_projected_once(make_projector):
    # given: five studios, two accounts each
    orgs = [OrganizationFactory() for _ in range(5)]
    accounts = {org.pk: [make_account(org), make_account(org)] for org in orgs}
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(30):
                org = rng.choice(orgs)
                entries = [
                    EntryIn(
                        account_id=rng.choice(accounts[org.pk]).pk,
                        amount_minor=rng.randint(1, 100),
                        currency="EUR",
                        idempotency_key=uuid.uuid4().hex,
                    )
                    for _ in range(rng.choice([1, 1, 3, 8]))
                ]
                with tenant_context(org.pk):
                    ledger_debits_append(tenant=org, entries=entries)
        except Exception as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
        finally:
            connection.close()

    def project() -> None:
        try:
            make_projector(batch_size=16).run(stop=stop)
        except Exception as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
        finally:
            connection.close()

    # when: six writers append while a projector runs in parallel
    projector_thread = threading.Thread(target=project)
    projector_thread.start()
    writers = [threading.Thread(target=writer, args=(seed,)) for seed in range(6)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    wait_for(lambda: all(h == c for h, c in heads_and_checkpoints().values()), what="the projector to catch up")
    stop.set()
    projector_thread.join(timeout=30)
    # then: no errors, gap-free sequences, and every event applied exactly once
    assert errors == []
    for seqs in sequences_by_partition().values():
        assert seqs == list(range(1, len(seqs) + 1))
    state = totals()
    assert state.projected_count == state.event_count > 0
    assert state.projected_balance == state.event_balance
    assert balances_by_account() == expected_from_events()
