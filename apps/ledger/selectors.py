"""Reads of the ledger: accounts with projected balances, account statements (entries newest first
in keyset pages, or all of them oldest first for an export), and projection state per partition.

Lag of a partition = age of its oldest unapplied event (the event right after the checkpoint;
sequence order is commit order), 0 when the checkpoint has reached the committed head.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.db.models import BigIntegerField, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce

from apps.ledger.models import AccountBalance, LedgerAccount, LedgerEvent, LedgerEventKey
from apps.ledger.partitioning import is_whale, logical_partition, partition_count
from apps.ledger.projection import LEADER_LOCK_NAMESPACE
from apps.tenancy.context import system_context
from apps.tenancy.models import Organization


@dataclass(frozen=True)
class PartitionState:
    partition: int
    head_seq: int
    checkpoint_seq: int
    epoch: int
    leader: str
    leader_alive: bool
    applied_total: int
    lag_seconds: float
    checkpoint_updated_at: datetime | None


# `state` is MATERIALIZED so that the next sequence is a plain column when the event is looked
# up: under row-level security an index condition may not contain a non-leakproof function
# (such as `+`) over a column, and without the index the lookup reads the whole month.
_STATES_SQL = """
WITH parts AS (
    SELECT generate_series(0, %(count)s - 1) AS partition
    UNION SELECT partition FROM ledger_ledgerpartitionhead
    UNION SELECT partition FROM ledger_ledgercheckpoint
), locks AS (
    SELECT l.objid::bigint AS partition, l.pid
      FROM pg_locks l
     WHERE l.locktype = 'advisory' AND l.classid = %(ns)s AND l.objsubid = 2 AND l.granted
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
), state AS MATERIALIZED (
    SELECT p.partition, coalesce(h.seq, 0) AS head, coalesce(c.seq, 0) AS checkpoint,
           coalesce(c.seq, 0) + 1 AS next_seq, coalesce(c.epoch, 0) AS epoch, coalesce(c.leader, '') AS leader,
           (lk.pid IS NOT NULL AND lk.pid = c.leader_backend_pid) AS alive,
           coalesce(c.applied_total, 0) AS applied, c.updated_at
      FROM parts p
      LEFT JOIN ledger_ledgerpartitionhead h ON h.partition = p.partition
      LEFT JOIN ledger_ledgercheckpoint c ON c.partition = p.partition
      LEFT JOIN locks lk ON lk.partition = p.partition
     WHERE %(only)s::int[] IS NULL OR p.partition = ANY(%(only)s::int[])
)
SELECT s.partition, s.head, s.checkpoint, s.epoch, s.leader, s.alive, s.applied,
       CASE WHEN s.head > s.checkpoint THEN greatest(0, extract(epoch FROM clock_timestamp() - (
            SELECT e.created_at FROM ledger_ledgerevent e
             WHERE e.partition = s.partition AND e.seq = s.next_seq LIMIT 1)))
            ELSE 0 END,
       s.updated_at
  FROM state s
 ORDER BY s.partition
"""


def partition_states(*, partitions: Collection[int] | None = None) -> list[PartitionState]:
    """Head, checkpoint, leader and lag of every (or the given) logical partition.

    Reads across tenants (the next unapplied event may belong to anyone) in the audited system
    context; it returns only platform facts, never tenant data.
    """
    only = sorted(partitions) if partitions is not None else None
    with system_context("ledger lag"), transaction.atomic(), connection.cursor() as cursor:
        # Row estimates over the partitioned table are poor; JIT would compile for seconds.
        cursor.execute("SELECT set_config('jit', 'off', true)")
        cursor.execute(_STATES_SQL, {"count": partition_count(), "ns": LEADER_LOCK_NAMESPACE, "only": only})
        rows = cursor.fetchall()
    return [
        PartitionState(
            partition=int(p),
            head_seq=int(head),
            checkpoint_seq=int(seq),
            epoch=int(epoch),
            leader=leader,
            leader_alive=bool(alive),
            applied_total=int(applied),
            lag_seconds=float(lag or 0),
            checkpoint_updated_at=updated,
        )
        for p, head, seq, epoch, leader, alive, applied, lag, updated in rows
    ]


def max_lag_seconds() -> float:
    return max((s.lag_seconds for s in partition_states()), default=0.0)


def _accounts_of(*, tenant_id: int, wallets_of: int | None) -> QuerySet[LedgerAccount]:
    accounts = LedgerAccount.objects.filter(tenant_id=tenant_id)
    if wallets_of is not None:
        accounts = accounts.filter(kind=LedgerAccount.Kind.WALLET, owner_id=wallets_of)
    return accounts


def ledger_account_list(*, tenant_id: int, wallets_of: int | None = None) -> QuerySet[LedgerAccount]:
    """The tenant's accounts, oldest first, each annotated with `balance_minor` (projected).

    `wallets_of` narrows them to the wallets that user owns (what a member without the studio's
    money role may see); None lists every account of the tenant.
    """
    return (
        _accounts_of(tenant_id=tenant_id, wallets_of=wallets_of)
        .annotate(projected_balance=Coalesce(Sum("balances__balance_minor"), Value(0), output_field=BigIntegerField()))
        .order_by("id")
    )


@dataclass(frozen=True)
class AccountProjection:
    account: LedgerAccount
    balance_minor: int
    credits_minor: int
    debits_minor: int
    event_count: int
    partitions: list[PartitionState]

    @property
    def lag_seconds(self) -> float:
        return max((p.lag_seconds for p in self.partitions), default=0.0)


def ledger_account_get(*, tenant: Organization, account_id: int, wallets_of: int | None = None) -> AccountProjection:
    """One account of `tenant` with its projected totals and the partitions they reflect.

    The account's events live in its home partition (or, for a whale tenant, possibly in any
    partition); the projection reflects each of those partitions up to its checkpoint.
    `wallets_of` limits the lookup to that user's wallets, as in `ledger_account_list`.
    Raises LedgerAccount.DoesNotExist (also for another tenant's account: invisible under RLS,
    and for an account outside `wallets_of`).
    """
    account = _accounts_of(tenant_id=tenant.pk, wallets_of=wallets_of).get(pk=account_id)
    rows = list(AccountBalance.objects.filter(account_id=account.pk).order_by("partition"))
    if is_whale(tenant_id=tenant.pk, tenant_slug=tenant.slug):
        wanted: set[int] | None = None
    else:
        home = logical_partition(tenant_id=tenant.pk, tenant_slug=tenant.slug, client_id=account.client_id)
        wanted = {home, *(r.partition for r in rows)}
    states = partition_states(partitions=wanted)
    if wanted is None:
        states = [s for s in states if s.partition < partition_count() or s.partition in {r.partition for r in rows}]
    return AccountProjection(
        account=account,
        balance_minor=sum(r.balance_minor for r in rows),
        credits_minor=sum(r.credits_minor for r in rows),
        debits_minor=sum(r.debits_minor for r in rows),
        event_count=sum(r.event_count for r in rows),
        partitions=states,
    )


# --- account statements ---------------------------------------------------------------------


@dataclass(frozen=True)
class EntriesPage:
    """One page of a statement, newest first; `older_than` is the cursor of the next (older) page,
    None on the last one."""

    entries: list[LedgerEvent]
    older_than: int | None


def _entries_of(*, tenant_id: int, account_ids: Sequence[int]) -> QuerySet[LedgerEvent]:
    return LedgerEvent.objects.filter(tenant_id=tenant_id, account_id__in=list(account_ids))


def account_entries_page(
    *, tenant_id: int, account_ids: Sequence[int], older_than: int | None = None, limit: int = 25
) -> EntriesPage:
    """The entries of `account_ids` newest first (created_at, then id), `limit` at a time.

    Keyset, not OFFSET: `older_than` is the id of the last entry of the previous page, and the
    page continues below its (created_at, id) along the (account, created_at) index, so page
    1,000 costs what page 1 does and an entry appended meanwhile never shifts a page. A cursor
    that names no entry of these accounts starts from the newest.
    """
    if not account_ids:
        return EntriesPage(entries=[], older_than=None)
    entries = _entries_of(tenant_id=tenant_id, account_ids=account_ids)
    if older_than is not None:
        anchor = entries.filter(id=older_than).values_list("created_at", flat=True).first()
        if anchor is not None:
            entries = entries.filter(Q(created_at__lt=anchor) | Q(created_at=anchor, id__lt=older_than))
    rows = list(entries.order_by("-created_at", "-id")[: limit + 1])
    more = len(rows) > limit
    return EntriesPage(entries=rows[:limit], older_than=rows[limit - 1].id if more else None)


def account_entries_oldest_first(
    *, tenant_id: int, account_ids: Sequence[int], chunk_size: int = 2000
) -> Iterator[LedgerEvent]:
    """Every entry of `account_ids`, oldest first, read through a server-side cursor.

    Expects a transaction (and the tenant's context) open around the whole iteration: the cursor
    lives in it, and its one snapshot makes the statement consistent however long it takes to
    send.
    """
    if not account_ids:
        return iter(())
    entries = _entries_of(tenant_id=tenant_id, account_ids=account_ids).order_by("created_at", "id")
    return entries.iterator(chunk_size=chunk_size)


def ledger_key_stored(*, tenant_id: int, account_id: int, idempotency_key: str) -> bool:
    """Whether the account's ledger already holds `idempotency_key` (its debit is being retried).
    Reads under the caller's tenant context, along the keys' unique index."""
    return LedgerEventKey.objects.filter(
        tenant_id=tenant_id, account_id=account_id, idempotency_key=idempotency_key
    ).exists()


def ledger_client_id_stored(*, tenant_id: int, account_id: int, idempotency_key: str, client_id: str) -> bool:
    """Whether `client_id` is one stored for a debit of the account under `idempotency_key`: the
    account's own client id, or the client id of the event the key already names (a retry).
    Reads under the caller's tenant context: the key's unique index, then the event by its id (an
    archived month's event is gone, and with it the second answer)."""
    if LedgerAccount.objects.filter(tenant_id=tenant_id, pk=account_id, client_id=client_id).exists():
        return True
    event_id = (
        LedgerEventKey.objects.filter(tenant_id=tenant_id, account_id=account_id, idempotency_key=idempotency_key)
        .values_list("event_id", flat=True)
        .first()
    )
    return (
        event_id is not None
        and LedgerEvent.objects.filter(
            tenant_id=tenant_id, account_id=account_id, pk=event_id, client_id=client_id
        ).exists()
    )
