"""Degraded mode: debits accepted into the buffer are all drained into the ledger exactly once."""

from __future__ import annotations

import logging
import threading

import pytest
from django.db import connection, transaction

from apps.ledger.maintenance import ledger_buffer_prune
from apps.ledger.models import LedgerDebitBuffer, LedgerEvent
from apps.ledger.services import EntryIn, ledger_buffer_drain, ledger_buffer_state, ledger_debits_append
from apps.tenancy.context import system_context, tenant_context
from tests.factories.tenancy import OrganizationFactory
from tests.ledger.conftest import debit, make_account

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "owner"])


def _events_by_key(tenant_id: int) -> dict[str, list[int]]:
    with tenant_context(tenant_id):
        rows = LedgerEvent.objects.values_list("idempotency_key", "amount_minor")
        out: dict[str, list[int]] = {}
        for key, amount in rows:
            out.setdefault(key, []).append(amount)
        return out


def test_buffered_debits_are_drained_exactly_once_with_duplicates_removed(settings, caplog):
    # given: key k0 already in the ledger, then degraded mode on
    org = OrganizationFactory()
    account = make_account(org)
    debit(org, account, 1000, key="k0")
    settings.LEDGER_DEGRADED_MODE = "on"
    # when: 50 keys are accepted, k10..k19 twice (the second time with another amount, which
    # intake cannot tell from the buffer), and k0 once more
    accepted = []
    for n in range(50):
        accepted.append(debit(org, account, 1000 if n == 0 else n + 1, key=f"k{n}"))
    for n in range(10, 20):
        accepted.append(debit(org, account, 500, key=f"k{n}"))
    # then: every one was accepted into the buffer, none reached the ledger yet
    assert {r.items[0].status for r in accepted} == {"buffered"}
    assert all(r.buffered for r in accepted)
    assert ledger_buffer_state().pending == 60
    assert _events_by_key(org.pk) == {"k0": [1000]}
    # when: the drain runs in small batches
    with caplog.at_level(logging.ERROR, logger="darkroom.ledger"):
        result = ledger_buffer_drain(rate=0, batch=7)
    # then: one event per key (first accepted wins), nothing pending, nothing re-drained; the
    # ten second debits under k10..k19 named other debits: each is logged as dropped
    assert (result.read, result.created, result.duplicates) == (60, 49, 11)
    dropped = [i for r in caplog.records if "buffered debits dropped" in r.getMessage() for i in r.buffer_ids]
    assert len(dropped) == 10
    assert _events_by_key(org.pk) == {"k0": [1000], **{f"k{n}": [n + 1] for n in range(1, 50)}}
    assert ledger_buffer_state().pending == 0
    assert ledger_buffer_drain(rate=0).read == 0


def test_drain_never_skips_a_row_whose_transaction_commits_late(settings):
    # given: writer 1 buffered a debit in a transaction still open; writer 2's commits first
    settings.LEDGER_DEGRADED_MODE = "on"
    org = OrganizationFactory()
    account = make_account(org)
    buffered, release = threading.Event(), threading.Event()

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                debit(org, account, 1, key="late")
                buffered.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert buffered.wait(timeout=30)
    debit(org, account, 2, key="early")
    # when: the drain runs while writer 1 is still open
    try:
        during = ledger_buffer_drain(rate=0)
    finally:
        release.set()
        thread.join(timeout=30)
    # then: the committed debit is drained without waiting; the open one is not lost
    assert (during.read, during.created) == (1, 1)
    assert _events_by_key(org.pk) == {"early": [2]}
    assert ledger_buffer_state().pending == 1
    # when: writer 1 has committed and the drain runs again
    after = ledger_buffer_drain(rate=0)
    # then: its debit is drained too, exactly once
    assert (after.read, after.created) == (1, 1)
    assert _events_by_key(org.pk) == {"late": [1], "early": [2]}
    assert ledger_buffer_drain(rate=0).read == 0


def test_auto_mode_buffers_when_the_partition_lock_is_busy(settings):
    # given: auto mode, and another writer holding the partition head lock
    settings.LEDGER_DEGRADED_MODE = "auto"
    settings.LEDGER_AUTO_DEGRADE_LOCK_TIMEOUT_MS = 100
    org = OrganizationFactory()
    account = make_account(org)
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        try:
            with transaction.atomic():
                debit(org, account, 1, key="holder")
                holding.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    assert holding.wait(timeout=30)
    # when: a debit arrives while the lock is busy
    try:
        busy = debit(org, account, 2, key="busy")
    finally:
        release.set()
        thread.join(timeout=30)
    # then: it is accepted into the buffer; with the lock free, debits go straight in again
    assert busy.buffered and busy.items[0].status == "buffered"
    assert debit(org, account, 3, key="free").items[0].status == "created"
    # and: the drain brings the buffered one in
    assert ledger_buffer_drain(rate=0).created == 1
    assert _events_by_key(org.pk) == {"holder": [1], "busy": [2], "free": [3]}


def test_buffer_refuses_updates_and_prune_removes_only_drained_rows(settings):
    settings.LEDGER_DEGRADED_MODE = "on"
    org = OrganizationFactory()
    account = make_account(org)
    debit(org, account, 1, key="a")
    with tenant_context(org.pk), pytest.raises(Exception, match="permission denied"):
        with transaction.atomic():
            LedgerDebitBuffer.objects.update(amount_minor=2)
    ledger_buffer_drain(rate=0)
    debit(org, account, 5, key="b")
    # when: the owner prunes
    pruned = ledger_buffer_prune()
    # then: only the drained row went; the pending one stays until drained
    assert pruned == 1
    with system_context("test: buffer"):
        assert list(LedgerDebitBuffer.objects.values_list("idempotency_key", flat=True)) == ["b"]
    assert ledger_buffer_state().pending == 1


def test_validation_still_applies_in_degraded_mode(settings):
    settings.LEDGER_DEGRADED_MODE = "on"
    org, other = OrganizationFactory(), OrganizationFactory()
    foreign = make_account(other)
    entry = EntryIn(account_id=foreign.pk, amount_minor=1, currency="EUR", idempotency_key="x")
    with tenant_context(org.pk), pytest.raises(Exception, match="No such account"):
        ledger_debits_append(tenant=org, entries=[entry])
    assert ledger_buffer_state().pending == 0


def test_drain_runs_one_at_a_time(settings):
    # given: a buffered debit, and a drainer holding the drain lock in an open transaction
    settings.LEDGER_DEGRADED_MODE = "on"
    org = OrganizationFactory()
    account = make_account(org)
    debit(org, account, 1, key="only")
    locked, release = threading.Event(), threading.Event()

    def other_drainer() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, 0)", [0x4C445252])
                locked.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    thread = threading.Thread(target=other_drainer)
    thread.start()
    assert locked.wait(timeout=30)
    # when / then: a second drainer does nothing while the first holds the lock
    try:
        assert ledger_buffer_drain(rate=0).read == 0
    finally:
        release.set()
        thread.join(timeout=30)
    assert ledger_buffer_drain(rate=0).read == 1
    assert _events_by_key(org.pk) == {"only": [1]}
