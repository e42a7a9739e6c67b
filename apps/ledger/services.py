"""Writes of the ledger: accounts, event appends (normal and degraded), and the buffer drain.

Append protocol (`_append_rows`, one transaction, the caller's):
1. insert the idempotency keys, sorted, `ON CONFLICT DO NOTHING RETURNING` (see
   `LedgerEventKey`): keys that come back are new, the others are duplicates;
2. in one statement, bump the head counter of every touched logical partition (an upsert per
   partition, in partition order, so concurrent multi-partition batches cannot deadlock) and
   insert the new events with the sequence numbers the heads handed out.
The head row locks are held until COMMIT: appenders of one partition commit in sequence order,
so the projector, which never reads past the committed head, can never skip a late commit.
Locks are always taken in the same order (keys sorted, then heads sorted), which keeps
concurrent appends deadlock-free; a caller that appends twice in one transaction should touch
partitions in ascending order (or Postgres may abort one of two crossing transactions).
Throughput note: a partition's head is held through COMMIT (one WAL flush), so one partition
takes a few hundred transactions per second; high-volume integrators should use the batch
endpoint (up to 1,000 debits share one transaction and one head bump per partition).

Degraded mode (`LEDGER_DEGRADED_MODE`): `on` sends debits to `LedgerDebitBuffer` (a plain
append-only insert: no unique check, no partition lock); `auto` tries the normal append with a
short `lock_timeout` on the partition heads and falls back to the buffer when it expires;
`off` (default) never buffers. `ledger_buffer_drain` moves buffered debits into the ledger at a
controlled rate, through the same append protocol, so duplicates are removed by the key guard.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import psycopg.errors
from django.conf import settings
from django.db import OperationalError, connection, transaction

from apps.core.problems import DomainError
from apps.ledger.models import EVENT_TABLE, LedgerAccount, LedgerDebitBuffer
from apps.ledger.partitioning import logical_partition
from apps.tenancy.context import system_context
from apps.tenancy.models import Organization, User

logger = logging.getLogger("darkroom.ledger")

MAX_BATCH_ITEMS = 1000
MAX_AMOUNT_MINOR = 10**12
# The most an account may be debited through the API, in all: 8 million debits of
# MAX_AMOUNT_MINOR. The projection keeps totals in bigint (9.22e18): an account past it would
# make every apply of its partition fail, so no other studio's balance there would move either.
# The room left above it covers appends racing in other partitions (a whale studio's clients).
MAX_ACCOUNT_DEBITS_MINOR = 8 * 10**18
DRAIN_CURSOR = "buffer"
DRAIN_LOCK_NAMESPACE = 0x4C445252  # "LDRR": one drainer at a time (advisory xact lock)
DegradedMode = Literal["off", "on", "auto"]


class UnknownAccount(DomainError):
    """A debit names an account this studio does not have (another studio's accounts are
    answered the same way); `items` lists the positions of those debits in the request, from 0.
    Nothing of the request was written."""

    status_code = 422
    slug = "ledger-unknown-account"
    title = "Unknown ledger account"
    what_to_do = "Check each debit's account id: GET /api/v1/ledger/accounts lists the studio's accounts."


class CurrencyMismatch(DomainError):
    """A debit's currency is not its account's; `items` lists the positions of those debits in
    the request, from 0. Nothing of the request was written."""

    status_code = 422
    slug = "ledger-currency-mismatch"
    title = "Currency does not match the account"
    what_to_do = "Send each debit in its account's currency: GET /api/v1/ledger/accounts shows it."


class WalletNotDebitable(DomainError):
    """Wallets move only with sales, refunds and payouts (the platform's own appends): a debit
    posted through the ledger API would race the payout that reads the wallet's balance."""

    status_code = 422
    slug = "ledger-wallet-not-debitable"
    title = "A photographer's wallet cannot be debited through the ledger API"
    when_it_happens = (
        "A debit names a photographer's wallet: wallets change only with sales, refunds and payouts, never "
        "with debits sent through the API. `items` lists the positions of those debits in the request, "
        "from 0. Nothing of the request was written."
    )
    what_to_do = "Debit a usage account instead (POST /api/v1/ledger/accounts opens one)."


class AccountReserved(DomainError):
    """The account is one the platform keeps for its own charges (client id `darkroom:...`, e.g.
    drop-in's face searches): only the platform appends to it."""

    status_code = 422
    slug = "ledger-account-reserved"
    title = "This account is kept for the platform's own charges"
    when_it_happens = (
        "A debit names an account Darkroom keeps for its own charges to the studio (face matching, for "
        "one): only Darkroom records charges on it. `items` lists the positions of those debits in the "
        "request, from 0. Nothing of the request was written."
    )
    what_to_do = "Debit one of the studio's own usage accounts instead."


# Client ids of the accounts the platform bills into (drop-in usage): the API neither creates
# nor debits them, so a studio can neither duplicate them nor pre-empt a charge's idempotency key.
RESERVED_CLIENT_PREFIX = "darkroom:"


class KeyReused(DomainError):
    """An idempotency key of the account already names another debit (amount, reference or
    client), earlier in the ledger or earlier in the same batch. Answering it as a duplicate would
    drop the new debit without a word; the HTTP Idempotency-Key's own 422 covers only its caller
    and its retention, the ledger's key covers every caller of the studio, for good."""

    status_code = 422
    slug = "ledger-idempotency-key-reused"
    title = "Idempotency key reused for another debit"
    when_it_happens = (
        "A debit's key (the Idempotency-Key header of a single debit, each item's own key in a batch) "
        "already names another debit of the account, with another amount, reference or client id, sent "
        "before or earlier in the same batch. A key names one debit for good, whoever sends it and however "
        "late. `items` lists the positions of those debits in the request, from 0. Nothing of the request "
        "was written."
    )
    what_to_do = (
        "Use a new key for a new debit. To retry a debit, send it exactly as before with its key: the "
        "answer is then the first debit's."
    )


class AccountLimitReached(DomainError):
    """The debits would take the account past the most one account may be debited in all;
    `items` lists the positions of those debits in the request, from 0. Nothing of the request
    was written."""

    status_code = 422
    slug = "ledger-account-limit-reached"
    title = "The account cannot be debited any further"
    what_to_do = "Open another usage account (POST /api/v1/ledger/accounts) and debit that one."


class InvalidAmount(DomainError):
    """A debit's amount is not a whole number from 1 to the most one debit may be, counted in the
    currency's smallest unit (cents, for EUR); `items` lists the positions of those debits in the
    request, from 0. Nothing of the request was written."""

    status_code = 400
    slug = "ledger-invalid-amount"
    title = "Amount must be a positive integer of minor units"
    what_to_do = "Send each amount as a whole number of the currency's smallest unit, within the limit `detail` gives."


class BatchTooLarge(DomainError):
    """A batch of debits with more items than one batch takes. Nothing of it was written."""

    status_code = 400
    slug = "ledger-batch-too-large"
    title = "Too many items in one batch"
    what_to_do = f"Send at most {MAX_BATCH_ITEMS:,} debits in one batch; split a longer list into several."


@dataclass(frozen=True)
class EntryIn:
    """One credit or debit to append (amount in integer minor units, > 0)."""

    account_id: int
    amount_minor: int
    currency: str
    idempotency_key: str
    kind: Literal["credit", "debit"] = "debit"
    client_id: str | None = None
    reference: str = ""


@dataclass(frozen=True)
class EntryResult:
    index: int
    account_id: int
    idempotency_key: str
    status: Literal["created", "duplicate", "buffered"]
    event_id: int | None = None
    partition: int | None = None
    sequence: int | None = None
    buffer_id: int | None = None


@dataclass
class AppendResult:
    items: list[EntryResult] = field(default_factory=list)
    buffered: bool = False

    @property
    def created(self) -> int:
        return sum(1 for i in self.items if i.status == "created")

    @property
    def duplicates(self) -> int:
        return sum(1 for i in self.items if i.status == "duplicate")


@dataclass(frozen=True)
class _Row:
    """An entry resolved to its tenant, logical partition and client (internal)."""

    index: int
    tenant_id: int
    account_id: int
    kind: str
    amount_minor: int
    currency: str
    client_id: str
    reference: str
    idempotency_key: str
    partition: int


# --- accounts -------------------------------------------------------------------------------


@transaction.atomic
def ledger_account_create(
    *,
    tenant: Organization,
    kind: str,
    currency: str,
    client_id: str = "",
    owner: User | None = None,
) -> LedgerAccount:
    """Create an account of `tenant` (joins the caller's transaction, e.g. the API's)."""
    return LedgerAccount.objects.create(
        tenant=tenant, kind=kind, currency=currency.upper(), client_id=client_id, owner=owner
    )


# --- appends --------------------------------------------------------------------------------


def _degraded_mode() -> DegradedMode:
    mode = str(getattr(settings, "LEDGER_DEGRADED_MODE", "off")).lower()
    if mode in ("1", "true", "yes"):
        return "on"
    return mode if mode in ("off", "on", "auto") else "off"  # type: ignore[return-value]


def _validate(
    *, tenant: Organization, entries: Sequence[EntryIn], wallets: bool = True, reserved: bool = True
) -> list[_Row]:
    """Resolve entries to rows, or raise before anything is written.

    Accounts are read under the caller's tenant context, so another tenant's account is
    invisible (RLS) and reported exactly like a missing one. With `wallets=False` an entry on a
    wallet is refused, with `reserved=False` one on a platform-reserved account. Raises
    BatchTooLarge, InvalidAmount, UnknownAccount, CurrencyMismatch, WalletNotDebitable,
    AccountReserved.
    """
    if len(entries) > MAX_BATCH_ITEMS:
        raise BatchTooLarge(f"A batch holds at most {MAX_BATCH_ITEMS} items; got {len(entries)}.")
    bad_amounts = [i for i, e in enumerate(entries) if not (0 < int(e.amount_minor) <= MAX_AMOUNT_MINOR)]
    if bad_amounts:
        raise InvalidAmount(f"amount_minor must be between 1 and {MAX_AMOUNT_MINOR}.", extra={"items": bad_amounts})
    accounts = {
        pk: (currency, client_id, kind)
        for pk, currency, client_id, kind in LedgerAccount.objects.filter(
            pk__in={e.account_id for e in entries}, tenant_id=tenant.pk
        ).values_list("pk", "currency", "client_id", "kind")
    }
    unknown = [i for i, e in enumerate(entries) if e.account_id not in accounts]
    if unknown:
        raise UnknownAccount("No such account in this studio.", extra={"items": unknown})
    on_wallets = [i for i, e in enumerate(entries) if accounts[e.account_id][2] == LedgerAccount.Kind.WALLET]
    if on_wallets and not wallets:
        raise WalletNotDebitable(
            "Wallets move only with sales, refunds and payouts; debit a usage account.", extra={"items": on_wallets}
        )
    on_reserved = [i for i, e in enumerate(entries) if accounts[e.account_id][1].startswith(RESERVED_CLIENT_PREFIX)]
    if on_reserved and not reserved:
        raise AccountReserved("Only the platform appends to this account.", extra={"items": on_reserved})
    mismatched = [i for i, e in enumerate(entries) if accounts[e.account_id][0] != e.currency.upper()]
    if mismatched:
        raise CurrencyMismatch("The currency differs from the account's currency.", extra={"items": mismatched})
    rows = []
    for index, e in enumerate(entries):
        client_id = e.client_id if e.client_id is not None else accounts[e.account_id][1]
        rows.append(
            _Row(
                index=index,
                tenant_id=tenant.pk,
                account_id=e.account_id,
                kind=e.kind,
                amount_minor=int(e.amount_minor),
                currency=e.currency.upper(),
                client_id=client_id,
                reference=e.reference,
                idempotency_key=e.idempotency_key,
                partition=logical_partition(tenant_id=tenant.pk, tenant_slug=tenant.slug, client_id=client_id),
            )
        )
    return rows


def _int_array(values: Sequence[int]) -> str:
    """A Postgres array literal of integers, cast in SQL (`%s::bigint[]`).

    Django's psycopg cursor binds parameters client-side; quoting one literal string is far
    cheaper than adapting a Python list element by element (measurable at 1,000-row batches).
    """
    return "{" + ",".join(str(int(v)) for v in values) + "}"


def _text_array(values: Sequence[str]) -> str:
    """A Postgres array literal of strings: every element double-quoted, `\\` and `"` escaped."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def _key_arrays(rows: Sequence[_Row]) -> list[str]:
    """The rows' (tenant, account, idempotency key) triples as three array literals, the
    parameters of an `unnest(%s::bigint[], %s::bigint[], %s::text[])` of keys."""
    return [
        _int_array([r.tenant_id for r in rows]),
        _int_array([r.account_id for r in rows]),
        _text_array([r.idempotency_key for r in rows]),
    ]


def _entry_of(row: _Row) -> tuple[str, int, str, str, str]:
    """What a key names: kind, amount, currency, client id and reference (the account is in the key)."""
    return (row.kind, row.amount_minor, row.currency, row.client_id, row.reference)


# The events that the (tenant, account, key) triples name, where still stored (an archived
# month's events are gone; their keys stay and still make a retry a duplicate).
_STORED_ENTRIES_SQL = f"""
SELECT k.tenant_id, k.account_id, k.idempotency_key, e.kind, e.amount_minor, e.currency, e.client_id, e.reference
  FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS w(tenant_id, account_id, idempotency_key)
  JOIN ledger_ledgereventkey k
    ON k.tenant_id = w.tenant_id AND k.account_id = w.account_id AND k.idempotency_key = w.idempotency_key
  JOIN {EVENT_TABLE} e ON e.id = k.event_id AND e.tenant_id = k.tenant_id AND e.account_id = k.account_id
"""


def _reused_keys(rows: Sequence[_Row], *, check_ledger: Sequence[_Row]) -> list[int]:
    """Indexes of the rows whose key already names another entry: an earlier row of `rows` with
    the same (tenant, account, key), or, for the rows of `check_ledger`, the stored event.

    Read after the append (in its transaction), so a concurrent append of the same key has
    committed or rolled back by then (the key insert waited for it): its event is seen.
    """
    first: dict[tuple[int, int, str], _Row] = {}
    reused = []
    for row in rows:
        earlier = first.setdefault((row.tenant_id, row.account_id, row.idempotency_key), row)
        if _entry_of(earlier) != _entry_of(row):
            reused.append(row.index)
    if check_ledger:
        with connection.cursor() as cursor:
            cursor.execute(
                _STORED_ENTRIES_SQL,
                _key_arrays(check_ledger),
            )
            stored = {(t, a, k): tuple(rest) for t, a, k, *rest in cursor.fetchall()}
        for row in check_ledger:
            entry = stored.get((row.tenant_id, row.account_id, row.idempotency_key))
            if entry is not None and entry != _entry_of(row):
                reused.append(row.index)
    return sorted(set(reused))


# An upper bound of what the accounts were debited, read in one statement (one snapshot): the
# projected totals, plus every event past any checkpoint counted at MAX_AMOUNT_MINOR (the
# projection and its checkpoints move together, so nothing falls between the two).
_DEBITED_BOUND_SQL = """
SELECT a.id,
       coalesce((SELECT sum(b.debits_minor) FROM ledger_accountbalance b WHERE b.account_id = a.id), 0),
       (SELECT coalesce(sum(greatest(h.seq - coalesce(c.seq, 0), 0)), 0)
          FROM ledger_ledgerpartitionhead h LEFT JOIN ledger_ledgercheckpoint c ON c.partition = h.partition)
  FROM unnest(%s::bigint[]) AS a(id)
"""

# What the accounts were debited, exactly: the projected totals plus their debits among the
# events not yet projected (read along the (partition, seq) index, as the projector does).
_DEBITED_EXACT_SQL = f"""
WITH pending AS (
    SELECT h.partition, coalesce(c.seq, 0) AS from_seq, h.seq AS to_seq
      FROM ledger_ledgerpartitionhead h LEFT JOIN ledger_ledgercheckpoint c ON c.partition = h.partition
     WHERE h.seq > coalesce(c.seq, 0)
)
SELECT a.id,
       coalesce((SELECT sum(b.debits_minor) FROM ledger_accountbalance b WHERE b.account_id = a.id), 0)
     + coalesce((SELECT sum(e.amount_minor) FROM pending p JOIN LATERAL (
            SELECT e.amount_minor FROM {EVENT_TABLE} e
             WHERE e.partition = p.partition AND e.seq > p.from_seq AND e.seq <= p.to_seq
               AND e.account_id = a.id AND e.kind = 'debit'
        ) e ON true), 0)
  FROM unnest(%s::bigint[]) AS a(id)
"""


def _accounts_past_limit(rows: Sequence[_Row], items: Sequence[EntryResult]) -> list[int]:
    """Indexes of the new (created or buffered) items on accounts now debited past
    MAX_ACCOUNT_DEBITS_MINOR. Read after the append, in its transaction: the created events are
    counted among the events not yet projected, buffered ones are added here; while the
    partition head is held no other append of the account's partition can commit in between.

    The exact count reads every event not yet projected, so it is kept for accounts already
    debited past half the limit (only an attacker's: 4 million maximal debits). An account below
    that fails the bound only when the projector is millions of events behind; it is let through
    rather than every debit of the platform scanning that backlog (to overflow, the backlog would
    have to hold 5 million of its own debits; a projector then isolates the one partition).
    """
    new = [item for item in items if item.status in ("created", "buffered")]
    if not new:
        return []
    added: dict[int, int] = defaultdict(int)  # this request's debits, per account
    buffered: dict[int, int] = defaultdict(int)  # those of them not in the ledger
    for item in new:
        added[item.account_id] += rows[item.index].amount_minor
        if item.status == "buffered":
            buffered[item.account_id] += rows[item.index].amount_minor
    accounts = sorted(added)
    with connection.cursor() as cursor:
        cursor.execute(_DEBITED_BOUND_SQL, [_int_array(accounts)])
        doubtful = []
        for account, projected, pending in cursor.fetchall():
            account, projected = int(account), int(projected)
            if projected + int(pending) * MAX_AMOUNT_MINOR + buffered[account] <= MAX_ACCOUNT_DEBITS_MINOR:
                continue
            if projected + added[account] > MAX_ACCOUNT_DEBITS_MINOR // 2:
                doubtful.append(account)
        if not doubtful:
            return []
        cursor.execute(_DEBITED_EXACT_SQL, [_int_array(doubtful)])
        over = {
            int(account)
            for account, debited in cursor.fetchall()
            if int(debited) + buffered[int(account)] > MAX_ACCOUNT_DEBITS_MINOR
        }
    return [item.index for item in new if item.account_id in over]


_INSERT_KEYS_SQL = """
INSERT INTO ledger_ledgereventkey (tenant_id, account_id, idempotency_key, created_at)
SELECT k.tenant_id, k.account_id, k.idempotency_key, now()
  FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS k(tenant_id, account_id, idempotency_key)
 ORDER BY k.tenant_id, k.account_id, k.idempotency_key
    ON CONFLICT (tenant_id, account_id, idempotency_key) DO NOTHING
RETURNING tenant_id, account_id, idempotency_key, event_id
"""

_EXISTING_KEYS_SQL = """
SELECT k.tenant_id, k.account_id, k.idempotency_key, k.event_id
  FROM ledger_ledgereventkey k
  JOIN unnest(%s::bigint[], %s::bigint[], %s::text[]) AS w(tenant_id, account_id, idempotency_key)
    ON k.tenant_id = w.tenant_id AND k.account_id = w.account_id AND k.idempotency_key = w.idempotency_key
"""

_INSERT_EVENTS_SQL = f"""
WITH heads AS (
    INSERT INTO ledger_ledgerpartitionhead AS h (partition, seq)
    SELECT c.partition, c.n FROM unnest(%s::int[], %s::bigint[]) AS c(partition, n) ORDER BY c.partition
        ON CONFLICT (partition) DO UPDATE SET seq = h.seq + EXCLUDED.seq
    RETURNING h.partition, h.seq
), r AS (
    SELECT * FROM unnest(
        %s::bigint[], %s::bigint[], %s::bigint[], %s::text[], %s::bigint[], %s::text[], %s::text[],
        %s::text[], %s::text[], %s::int[], %s::bigint[]
    ) AS r(id, tenant_id, account_id, kind, amount_minor, currency, client_id, reference,
           idempotency_key, partition, back)
)
INSERT INTO {EVENT_TABLE} (id, tenant_id, account_id, kind, amount_minor, currency, client_id, reference,
                           idempotency_key, partition, seq, created_at)
SELECT r.id, r.tenant_id, r.account_id, r.kind, r.amount_minor, r.currency, r.client_id, r.reference,
       r.idempotency_key, r.partition, heads.seq - r.back, COALESCE(%s::timestamptz, now())
  FROM r JOIN heads ON heads.partition = r.partition
RETURNING id, partition, seq
"""


def _append_rows(rows: Sequence[_Row], *, created_at: datetime | None = None) -> list[EntryResult]:
    """Append rows exactly once per (tenant, account, idempotency key). Needs a transaction.

    Joins the caller's transaction (asserted). Results are in the rows' order; within the
    rows, a repeated key is a duplicate of its first occurrence. `created_at` overrides the
    physical timestamp (imports of historical events, tests); it must fall in an existing
    monthly partition.
    """
    assert connection.in_atomic_block, "_append_rows needs the caller's transaction"
    first: dict[tuple[int, int, str], _Row] = {}
    for row in rows:
        first.setdefault((row.tenant_id, row.account_id, row.idempotency_key), row)
    unique_rows = list(first.values())
    if not unique_rows:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_KEYS_SQL,
            _key_arrays(unique_rows),
        )
        event_ids = {(t, a, k): eid for t, a, k, eid in cursor.fetchall()}
        new_rows = [r for r in unique_rows if (r.tenant_id, r.account_id, r.idempotency_key) in event_ids]
        placed: dict[int, tuple[int, int]] = {}
        if new_rows:
            per_partition: dict[int, list[_Row]] = defaultdict(list)
            for r in new_rows:
                per_partition[r.partition].append(r)
            # `back` = how many of the partition's new rows follow this one; seq = new head - back.
            back = {r.index: len(group) - 1 - pos for group in per_partition.values() for pos, r in enumerate(group)}
            partitions = sorted(per_partition)
            cursor.execute(
                _INSERT_EVENTS_SQL,
                [
                    _int_array(partitions),
                    _int_array([len(per_partition[p]) for p in partitions]),
                    _int_array([event_ids[(r.tenant_id, r.account_id, r.idempotency_key)] for r in new_rows]),
                    _int_array([r.tenant_id for r in new_rows]),
                    _int_array([r.account_id for r in new_rows]),
                    _text_array([r.kind for r in new_rows]),
                    _int_array([r.amount_minor for r in new_rows]),
                    _text_array([r.currency for r in new_rows]),
                    _text_array([r.client_id for r in new_rows]),
                    _text_array([r.reference for r in new_rows]),
                    _text_array([r.idempotency_key for r in new_rows]),
                    _int_array([r.partition for r in new_rows]),
                    _int_array([back[r.index] for r in new_rows]),
                    created_at,
                ],
            )
            placed = {eid: (p, s) for eid, p, s in cursor.fetchall()}
        missing = [r for r in unique_rows if (r.tenant_id, r.account_id, r.idempotency_key) not in event_ids]
        if missing:
            cursor.execute(
                _EXISTING_KEYS_SQL,
                _key_arrays(missing),
            )
            existing = {(t, a, k): eid for t, a, k, eid in cursor.fetchall()}
        else:
            existing = {}
    results = []
    for row in rows:
        ident = (row.tenant_id, row.account_id, row.idempotency_key)
        is_first = first[ident] is row
        if is_first and ident in event_ids:
            eid = event_ids[ident]
            partition, seq = placed[eid]
            results.append(EntryResult(row.index, row.account_id, row.idempotency_key, "created", eid, partition, seq))
        else:
            eid = event_ids.get(ident) or existing.get(ident)
            results.append(EntryResult(row.index, row.account_id, row.idempotency_key, "duplicate", eid))
    return results


def _buffer_rows(rows: Sequence[_Row]) -> list[EntryResult]:
    """Accept debits into the degraded-mode buffer (joins the caller's transaction)."""
    created = LedgerDebitBuffer.objects.bulk_create(
        [
            LedgerDebitBuffer(
                tenant_id=r.tenant_id,
                account_id=r.account_id,
                amount_minor=r.amount_minor,
                currency=r.currency,
                client_id=r.client_id,
                reference=r.reference,
                idempotency_key=r.idempotency_key,
            )
            for r in rows
        ]
    )
    return [
        EntryResult(r.index, r.account_id, r.idempotency_key, "buffered", buffer_id=b.pk)
        for r, b in zip(rows, created, strict=True)
    ]


def _is_lock_timeout(exc: BaseException) -> bool:
    return isinstance(exc.__cause__, psycopg.errors.LockNotAvailable)


def _append_or_buffer(rows: list[_Row]) -> AppendResult:
    mode = _degraded_mode()
    if mode == "on":
        return AppendResult(items=_buffer_rows(rows), buffered=True)
    if mode == "off":
        return AppendResult(items=_append_rows(rows))
    timeout_ms = int(settings.LEDGER_AUTO_DEGRADE_LOCK_TIMEOUT_MS)
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('lock_timeout')")
        previous = cursor.fetchone()[0]
    try:
        with transaction.atomic():  # a savepoint: a lock timeout undoes only this attempt
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{timeout_ms}ms"])
            items = _append_rows(rows)
    except OperationalError as exc:
        if not _is_lock_timeout(exc):
            raise
        logger.warning("ledger append under lock pressure; buffering %d debits", len(rows))
        return AppendResult(items=_buffer_rows(rows), buffered=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])
    return AppendResult(items=items)


# savepoint=False: inside the API's transaction a savepoint would cost two round trips per
# request for nothing; an error here rolls the whole request back anyway.
@transaction.atomic(savepoint=False)
def ledger_debits_append(*, tenant: Organization, entries: Sequence[EntryIn]) -> AppendResult:
    """Append up to 1,000 debits of `tenant`, each once per (account, idempotency key).

    Joins the caller's transaction (the API's Idempotency-Key protocol opens it); opens its
    own when called alone. All-or-nothing: any invalid entry raises before anything is
    written. Duplicates (within `entries` or already in the ledger) add no event; their
    result says `duplicate` and names the original event. A key that names another debit
    (another amount, reference or client id, earlier in `entries` or in the ledger) raises
    KeyReused and nothing is written. In degraded mode the debits are buffered instead
    (`buffered`), to be drained later; the key check then covers the ledger and `entries`, not
    other debits still in the buffer (the drain keeps the first and logs the others). Locks:
    the idempotency keys, then the touched partition heads (until the caller's COMMIT). Raises
    BatchTooLarge, InvalidAmount, UnknownAccount, CurrencyMismatch, AccountReserved,
    WalletNotDebitable (wallets move only with sales, refunds and payouts, which `apps.payouts`
    relies on when it reads a wallet's exact balance), KeyReused, AccountLimitReached (the
    account's debits would pass MAX_ACCOUNT_DEBITS_MINOR; buffered debits not yet drained are
    not counted).
    """
    rows = _validate(tenant=tenant, entries=[replace(e, kind="debit") for e in entries], wallets=False, reserved=False)
    result = _append_or_buffer(rows)
    # A key's stored event is compared only where the append did not just create it (a
    # duplicate), or could not tell (buffered): debits with new keys cost no extra read.
    by_index = {row.index: row for row in rows}
    unchecked = [by_index[item.index] for item in result.items if item.status != "created"]
    reused = _reused_keys(rows, check_ledger=unchecked)
    # Both raised after the append: the transaction (the request's) rolls back with it.
    if reused:
        raise KeyReused(
            "This idempotency key already names another debit of the account (another amount, reference or "
            "client id); use a new key for a new debit.",
            extra={"items": reused},
        )
    past_limit = _accounts_past_limit(rows, result.items)
    if past_limit:
        raise AccountLimitReached(
            f"These debits would take the account past {MAX_ACCOUNT_DEBITS_MINOR} minor units debited in all, "
            "the most one account may hold; open another account.",
            extra={"items": past_limit},
        )
    return result


@transaction.atomic
def ledger_entries_append(
    *, tenant: Organization, entries: Sequence[EntryIn], created_at: datetime | None = None
) -> AppendResult:
    """Append credits and/or debits of `tenant` (sales credits, payout debits), never buffered.

    Joins the caller's transaction, so a business row and its ledger entry commit together.
    Same validation, idempotency and locks as `ledger_debits_append`.
    """
    rows = _validate(tenant=tenant, entries=entries)
    return AppendResult(items=_append_rows(rows, created_at=created_at))


# --- degraded-mode drain --------------------------------------------------------------------
#
# Which buffered rows are drained is recorded per row (`LedgerBufferDrained`, written in the
# transaction that appends them), so a row whose transaction commits late is simply drained
# when it becomes visible: nothing is skipped and nothing waits for other transactions. The
# cursor only bounds the scan: it advances over rows that are drained *and* settled (their xid
# is below the snapshot's xmin, so no transaction still running can add a row before them).

_CLAIM_BUFFER_SQL = """
SELECT b.id, b.tenant_id, b.account_id, b.amount_minor, b.currency, b.client_id, b.reference, b.idempotency_key
  FROM ledger_ledgerdebitbuffer b
 WHERE (b.xid, b.id) > (%s::text::xid8, %s)
   AND NOT EXISTS (SELECT 1 FROM ledger_ledgerbufferdrained d WHERE d.buffer_id = b.id)
 ORDER BY b.xid, b.id
 LIMIT %s
"""

_SETTLED_SQL = """
SELECT b.xid::text::bigint, b.id, EXISTS (SELECT 1 FROM ledger_ledgerbufferdrained d WHERE d.buffer_id = b.id)
  FROM ledger_ledgerdebitbuffer b
 WHERE (b.xid, b.id) > (%s::text::xid8, %s)
   AND b.xid < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY b.xid, b.id
 LIMIT %s
"""

_MARK_DRAINED_SQL = """
INSERT INTO ledger_ledgerbufferdrained (buffer_id, event_id, drained_at)
SELECT m.buffer_id, m.event_id, now() FROM unnest(%s::bigint[], %s::bigint[]) AS m(buffer_id, event_id)
"""


@dataclass
class DrainResult:
    read: int = 0
    created: int = 0
    duplicates: int = 0
    batches: int = 0


def _advance_cursor(cursor: Any, last_xid: int, last_id: int, drained: int) -> None:
    """Move the cursor over the leading run of drained, settled rows (same transaction)."""
    cursor.execute(_SETTLED_SQL, [str(last_xid), last_id, 10 * MAX_BATCH_ITEMS])
    for xid, row_id, done in cursor.fetchall():
        if not done:
            break
        last_xid, last_id = xid, row_id
    cursor.execute(
        "UPDATE ledger_ledgerdraincursor SET last_xid = %s, last_id = %s, "
        "drained_total = drained_total + %s, updated_at = now() WHERE name = %s",
        [last_xid, last_id, drained, DRAIN_CURSOR],
    )


def _drain_batch(*, batch: int) -> DrainResult | None:
    """Move one batch from the buffer into the ledger. Runs in its own transaction.

    Returns None when another drainer holds the drain lock. Visible rows not yet drained are
    read in (xid, id) order (roughly acceptance order, so the first accepted duplicate wins),
    appended through the ledger's key guard, and marked drained in the same transaction:
    a crash re-drains the batch, and the key guard turns the replays into duplicates.
    """
    result = DrainResult()
    with system_context("ledger drain"), transaction.atomic(durable=True), connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, 0)", [DRAIN_LOCK_NAMESPACE])
        if not cursor.fetchone()[0]:
            return None
        cursor.execute(
            "INSERT INTO ledger_ledgerdraincursor (name, last_xid, last_id, drained_total, updated_at) "
            "VALUES (%s, 0, 0, 0, now()) ON CONFLICT (name) DO NOTHING",
            [DRAIN_CURSOR],
        )
        cursor.execute(
            "SELECT last_xid, last_id FROM ledger_ledgerdraincursor WHERE name = %s FOR UPDATE", [DRAIN_CURSOR]
        )
        last_xid, last_id = cursor.fetchone()
        cursor.execute(_CLAIM_BUFFER_SQL, [str(last_xid), last_id, batch])
        buffered = cursor.fetchall()
        items: list[EntryResult] = []
        if buffered:
            slugs = dict(Organization.objects.filter(pk__in={b[1] for b in buffered}).values_list("pk", "slug"))
            rows = [
                _Row(
                    index=i,
                    tenant_id=tenant_id,
                    account_id=account_id,
                    kind="debit",
                    amount_minor=amount,
                    currency=currency,
                    client_id=client_id,
                    reference=reference,
                    idempotency_key=key,
                    partition=logical_partition(tenant_id=tenant_id, tenant_slug=slugs[tenant_id], client_id=client_id),
                )
                for i, (_, tenant_id, account_id, amount, currency, client_id, reference, key) in enumerate(buffered)
            ]
            items = _append_rows(rows)
            dropped = _reused_keys(rows, check_ledger=[rows[i.index] for i in items if i.status != "created"])
            if dropped:
                # Buffered by requests that could not see each other (the buffer has no unique
                # check): the first accepted stays, the others name another debit under its key.
                logger.error(
                    "ledger drain: buffered debits dropped, their idempotency key names another debit",
                    extra={"buffer_ids": [buffered[i][0] for i in dropped]},
                )
            cursor.execute(_MARK_DRAINED_SQL, [[b[0] for b in buffered], [item.event_id for item in items]])
        _advance_cursor(cursor, last_xid, last_id, len(buffered))
    result.read = len(buffered)
    result.created = sum(1 for i in items if i.status == "created")
    result.duplicates = len(items) - result.created
    result.batches = 1 if buffered else 0
    return result


def ledger_buffer_drain(
    *, rate: float | None = None, batch: int | None = None, max_seconds: float | None = None
) -> DrainResult:
    """Drain the degraded-mode buffer at no more than `rate` events/s, until empty or timed out.

    Each batch is its own durable transaction (do not call inside a transaction). Only one
    drainer works at a time; a concurrent call returns at once having drained nothing.
    """
    rate = float(rate if rate is not None else settings.LEDGER_DRAIN_RATE)
    batch = int(batch if batch is not None else settings.LEDGER_DRAIN_BATCH)
    batch = max(1, min(batch, MAX_BATCH_ITEMS))
    started = time.monotonic()
    total = DrainResult()
    while True:
        one = _drain_batch(batch=batch)
        if one is None or one.read == 0:
            return total
        total.read += one.read
        total.created += one.created
        total.duplicates += one.duplicates
        total.batches += 1
        if rate > 0:
            ahead = total.read / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        if max_seconds is not None and time.monotonic() - started >= max_seconds:
            return total


@dataclass(frozen=True)
class BufferState:
    pending: int  # buffered debits not yet drained
    oldest_age_seconds: float  # how long the oldest of them has waited (0 when none)


def ledger_buffer_state() -> BufferState:
    """The degraded-mode buffer's undrained debits and the age of the oldest (system context;
    for metrics and operators). Under steady degraded-mode traffic the buffer is rarely empty
    (debits arrive between the drain's runs), so only the age tells a working drain from a
    stuck one."""
    with system_context("ledger drain"), connection.cursor() as cursor:
        cursor.execute(
            """
            WITH c AS (
                SELECT coalesce(max(last_xid), 0) AS last_xid, coalesce(max(last_id), 0) AS last_id
                  FROM ledger_ledgerdraincursor WHERE name = %s
            )
            SELECT count(*), coalesce(extract(epoch FROM now() - min(b.created_at)), 0)
              FROM ledger_ledgerdebitbuffer b, c
             WHERE (b.xid, b.id) > (c.last_xid::text::xid8, c.last_id)
               AND NOT EXISTS (SELECT 1 FROM ledger_ledgerbufferdrained d WHERE d.buffer_id = b.id)
            """,
            [DRAIN_CURSOR],
        )
        pending, oldest = cursor.fetchone()  # type: ignore[misc]
        return BufferState(pending=int(pending), oldest_age_seconds=max(0.0, float(oldest)))
