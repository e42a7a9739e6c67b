"""Helpers for the ledger tests: accounts, appends, projectors, and totals read as the system."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction

from apps.ledger.models import LedgerAccount
from apps.ledger.projection import Projector
from apps.ledger.services import AppendResult, EntryIn, ledger_debits_append, ledger_entries_append
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import Organization
from tests.factories.ledger import LedgerAccountFactory
from tests.fixtures import backend_pid, subprocess_env

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _small_partition_count(settings: Any) -> None:
    settings.LEDGER_PARTITIONS = 4  # type: ignore[attr-defined]
    settings.LEDGER_WHALE_TENANTS = []  # type: ignore[attr-defined]
    settings.LEDGER_DEGRADED_MODE = "off"  # type: ignore[attr-defined]


def make_account(tenant: Organization, *, currency: str = "EUR", client_id: str = "") -> LedgerAccount:
    return LedgerAccountFactory(tenant=tenant, currency=currency, client_id=client_id)


def debit(
    tenant: Organization,
    account: LedgerAccount,
    amount: int,
    *,
    key: str | None = None,
    client_id: str | None = None,
) -> AppendResult:
    """One debit through the service, in the tenant's context, in its own transaction."""
    entry = EntryIn(
        account_id=account.pk,
        amount_minor=amount,
        currency=account.currency,
        idempotency_key=key or uuid.uuid4().hex,
        client_id=client_id,
    )
    with tenant_context(tenant.pk):
        return ledger_debits_append(tenant=tenant, entries=[entry])


def credit(tenant: Organization, account: LedgerAccount, amount: int, *, key: str | None = None) -> AppendResult:
    entry = EntryIn(
        account_id=account.pk,
        amount_minor=amount,
        currency=account.currency,
        idempotency_key=key or uuid.uuid4().hex,
        kind="credit",
    )
    with tenant_context(tenant.pk):
        return ledger_entries_append(tenant=tenant, entries=[entry])


class UncommittedAppend(threading.Thread):
    """A writer appending in the tenant's context, in a transaction it holds open (uncommitted) until
    `commit()`, on a thread and a connection of its own; `appended` is set once it appended."""

    def __init__(self, tenant: Organization, append: Callable[[], AppendResult]) -> None:
        super().__init__()
        self.tenant, self.append = tenant, append
        self.appended, self.release = threading.Event(), threading.Event()
        self.result: AppendResult | None = None

    def run(self) -> None:
        try:
            with tenant_context(self.tenant.pk), transaction.atomic():
                self.result = self.append()
                self.appended.set()
                self.release.wait(timeout=60)
        finally:
            connection.close()

    def commit(self) -> None:
        self.release.set()
        self.join(timeout=30)


class WaitingAppend(threading.Thread):
    """A writer appending on a thread and a connection of its own; `pids` holds its backend's pid (for
    `wait_until_blocked`), `result` what the append returned, or the `refused` exception it raised."""

    def __init__(
        self, append: Callable[[], AppendResult], *, refused: type[Exception] | tuple[type[Exception], ...] = ()
    ) -> None:
        super().__init__()
        self.append, self.refused = append, refused
        self.pids: list[int] = []
        self.result: AppendResult | Exception | None = None

    def run(self) -> None:
        try:
            self.pids.append(backend_pid())
            self.result = self.append()
        except self.refused as exc:
            self.result = exc
        finally:
            connection.close()


@dataclass(frozen=True)
class Totals:
    event_count: int
    event_balance: int  # credits - debits over the events
    projected_count: int
    projected_balance: int


def totals() -> Totals:
    """Events vs projection over every tenant (read in the system context)."""
    with system_context("test: ledger totals"), connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), coalesce(sum(CASE WHEN kind = 'credit' THEN amount_minor ELSE -amount_minor END), 0) "
            "FROM ledger_ledgerevent"
        )
        event_count, event_balance = cursor.fetchone()
        cursor.execute(
            "SELECT coalesce(sum(event_count), 0), coalesce(sum(balance_minor), 0) FROM ledger_accountbalance"
        )
        projected_count, projected_balance = cursor.fetchone()
    return Totals(int(event_count), int(event_balance), int(projected_count), int(projected_balance))


def balances_by_account() -> dict[int, tuple[int, int, int, int]]:
    """account id -> (credits, debits, balance, event count), summed over partitions."""
    with system_context("test: ledger totals"), connection.cursor() as cursor:
        cursor.execute(
            "SELECT account_id, sum(credits_minor), sum(debits_minor), sum(balance_minor), sum(event_count) "
            "FROM ledger_accountbalance GROUP BY account_id"
        )
        return {int(a): (int(c), int(d), int(b), int(n)) for a, c, d, b, n in cursor.fetchall()}


def heads_and_checkpoints() -> dict[int, tuple[int, int]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT h.partition, h.seq, coalesce(c.seq, 0) FROM ledger_ledgerpartitionhead h "
            "LEFT JOIN ledger_ledgercheckpoint c USING (partition)"
        )
        return {int(p): (int(h), int(c)) for p, h, c in cursor.fetchall()}


def sequences_by_partition() -> dict[int, list[int]]:
    with system_context("test: ledger totals"), connection.cursor() as cursor:
        cursor.execute("SELECT partition, array_agg(seq ORDER BY seq) FROM ledger_ledgerevent GROUP BY partition")
        return {int(p): list(seqs) for p, seqs in cursor.fetchall()}


@pytest.fixture
def make_projector() -> Iterator[Callable[..., Projector]]:
    made: list[Projector] = []

    def make(**kwargs: object) -> Projector:
        kwargs.setdefault("rebalance_seconds", 0.0)
        kwargs.setdefault("poll_seconds", 0.01)
        projector = Projector(**kwargs)  # type: ignore[arg-type]
        made.append(projector)
        return projector

    yield make
    for projector in made:
        projector.close()


def projector_subprocess(*extra: str, batch_size: int = 100) -> subprocess.Popen[bytes]:
    """A real `manage.py run_projector` process against the test database."""
    env = subprocess_env(LEDGER_PARTITIONS=str(settings.LEDGER_PARTITIONS), DARKROOM_LOG_LEVEL="WARNING")
    return subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run_projector",
            "--batch-size",
            str(batch_size),
            "--poll-seconds",
            "0.01",
            *extra,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=tempfile.TemporaryFile(),
    )
