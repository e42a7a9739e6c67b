"""The balance projection: leadership per logical partition, fenced batch apply, rebuild.

Leadership: a projector process holds `pg_try_advisory_lock(LEADER_LOCK_NAMESPACE, partition)`
on a dedicated session connection. The lock is the claim and dies with the session, so the
partitions of a crashed or killed process become free at once. On gaining a partition the new
leader bumps the checkpoint's `epoch` (`checkpoint_claim`) and remembers it.

Apply (`projection_apply_many`, one statement in the caller's transaction, for every partition
the process leads at once): move each checkpoint from `from_seq` to `to_seq` *only*
`WHERE epoch = <mine> AND seq = from_seq`, and add those partitions' events (from_seq, to_seq]
to `AccountBalance` with one set-based `INSERT ... SELECT ... GROUP BY account ON CONFLICT DO
UPDATE`. Checkpoints and balances move in one transaction: the effect is applied exactly once.
A deposed leader (its session lock lost, a new leader bumped the epoch) matches no checkpoint
row for that partition, so nothing of that partition is written and it is reported deposed
(`projection_apply`, the one-partition form, raises `Deposed`).

Reading never runs past the committed partition head: the head row and the events that it
counts commit together, and appenders of a partition commit in sequence order (see
`apps.ledger.services`), so (checkpoint, head] is always fully visible and gap-free. The apply
still checks that it read exactly `to_seq - from_seq` events and refuses (`SequenceGap`)
otherwise, rather than ever advancing past an event it did not see.

Load sharing: each process also holds one "member" advisory lock; a process leads at most
ceil(partitions / members) partitions and releases the excess, so N processes share the work
and a dead one's partitions are taken over within about `rebalance_seconds`.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass

import psycopg
from django.conf import settings
from django.db import DatabaseError, DataError, connection, transaction

from apps.ledger.maintenance import ARCHIVE_LOCK_NAMESPACE
from apps.ledger.partitioning import partition_count
from apps.tenancy.context import system_context

logger = logging.getLogger("darkroom.ledger.projector")

LEADER_LOCK_NAMESPACE = 0x4C454447  # "LEDG"
MEMBER_LOCK_NAMESPACE = 0x4C454D42  # "LEMB"
MAX_MEMBERS = 1024
PROJECTOR_REASON = "ledger projector"
# A partition whose events cannot be applied (a DataError: its totals would leave bigint) is
# retried after this long, alone; the other partitions of its projector are applied meanwhile.
FAILED_PARTITION_RETRY_SECONDS = 5.0


class Deposed(Exception):
    """The checkpoint's epoch is no longer ours: another leader (or a rebuild) took over."""


class SequenceGap(Exception):
    """Fewer events were visible than the committed head promised (an invariant breach)."""


@dataclass(frozen=True)
class Claim:
    partition: int
    epoch: int
    seq: int


def known_partitions() -> list[int]:
    """range(P) plus every partition that ever got a head or checkpoint row (old layouts)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT partition FROM ledger_ledgerpartitionhead UNION SELECT partition FROM ledger_ledgercheckpoint"
        )
        seen = {int(row[0]) for row in cursor.fetchall()}
    return sorted(seen | set(range(partition_count())))


@transaction.atomic(durable=True)
def checkpoint_claim(*, partition: int, leader: str, backend_pid: int | None) -> Claim:
    """Record a new leader of `partition` and bump its epoch (own transaction; system context).

    Call only while holding the partition's advisory lock. Waits for an in-flight apply of the
    previous leader (it holds the checkpoint row) and so fences it: its next apply fails.
    """
    with system_context(PROJECTOR_REASON), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO ledger_ledgercheckpoint AS c
                   (partition, seq, epoch, leader, leader_backend_pid, leader_since, applied_total, updated_at)
            VALUES (%s, 0, 1, %s, %s, clock_timestamp(), 0, clock_timestamp())
                ON CONFLICT (partition) DO UPDATE
               SET epoch = c.epoch + 1, leader = EXCLUDED.leader,
                   leader_backend_pid = EXCLUDED.leader_backend_pid, leader_since = EXCLUDED.leader_since
            RETURNING epoch, seq
            """,
            [partition, leader, backend_pid],
        )
        epoch, seq = cursor.fetchone()
    return Claim(partition=partition, epoch=int(epoch), seq=int(seq))


# Per apply transaction: no JIT (its compile time, up to seconds for these plans, would be the
# lag) and no synchronous commit: the projection is derived data, and its balances and
# checkpoint move in one transaction, so a crash can only lose the last applied batches
# *together with* their checkpoint moves; they are then applied again.
_APPLY_SETTINGS_SQL = "SELECT set_config('jit', 'off', true), set_config('synchronous_commit', 'off', true)"

_APPLY_SQL = """
WITH want AS (
    SELECT * FROM unnest(%(p)s::int[], %(epoch)s::bigint[], %(from)s::bigint[], %(to)s::bigint[])
        AS w(partition, epoch, from_seq, to_seq)
), locked AS (
    SELECT c.partition FROM ledger_ledgercheckpoint c
     WHERE c.partition = ANY(%(p)s::int[]) ORDER BY c.partition FOR UPDATE
), ck AS (
    UPDATE ledger_ledgercheckpoint c
       SET seq = w.to_seq, applied_total = c.applied_total + (w.to_seq - w.from_seq),
           updated_at = clock_timestamp()
      FROM want w JOIN locked l ON l.partition = w.partition
     WHERE c.partition = w.partition AND c.epoch = w.epoch AND c.seq = w.from_seq
    RETURNING c.partition, w.from_seq, w.to_seq
), batch AS (
    SELECT e.tenant_id, e.account_id, e.partition, e.kind, e.amount_minor, e.seq
      FROM ck JOIN LATERAL (
            SELECT * FROM ledger_ledgerevent e
             WHERE e.partition = ck.partition AND e.seq > ck.from_seq AND e.seq <= ck.to_seq
           ) e ON true
), agg AS (
    SELECT tenant_id, account_id, partition,
           coalesce(sum(amount_minor) FILTER (WHERE kind = 'credit'), 0) AS credits,
           coalesce(sum(amount_minor) FILTER (WHERE kind = 'debit'), 0) AS debits,
           count(*) AS n, max(seq) AS last_seq
      FROM batch GROUP BY tenant_id, account_id, partition
), up AS (
    INSERT INTO ledger_accountbalance AS b
           (tenant_id, account_id, partition, credits_minor, debits_minor, balance_minor, event_count,
            last_seq, updated_at)
    SELECT tenant_id, account_id, partition, credits, debits, credits - debits, n, last_seq, clock_timestamp()
      FROM agg ORDER BY partition, account_id
        ON CONFLICT (tenant_id, account_id, partition) DO UPDATE
       SET credits_minor = b.credits_minor + EXCLUDED.credits_minor,
           debits_minor = b.debits_minor + EXCLUDED.debits_minor,
           balance_minor = b.balance_minor + EXCLUDED.balance_minor,
           event_count = b.event_count + EXCLUDED.event_count,
           last_seq = GREATEST(b.last_seq, EXCLUDED.last_seq),
           updated_at = EXCLUDED.updated_at
    RETURNING 1
), counts AS (
    SELECT partition, count(*) AS n FROM batch GROUP BY partition
)
SELECT ck.partition, ck.from_seq, ck.to_seq, coalesce(counts.n, 0), (SELECT count(*) FROM up)
  FROM ck LEFT JOIN counts ON counts.partition = ck.partition
"""


@dataclass(frozen=True)
class ApplyRange:
    partition: int
    epoch: int
    from_seq: int
    to_seq: int


@dataclass
class ApplyOutcome:
    applied: dict[int, int]  # partition -> events applied
    deposed: list[int]


def projection_apply_many(ranges: list[ApplyRange], *, dense: bool = True) -> ApplyOutcome:
    """Apply each partition's events (from_seq, to_seq] and move its checkpoint, in one statement.

    Runs in the caller's transaction (asserted), in the system context. Checkpoint rows are
    locked in partition order. A range whose checkpoint is not at (epoch, from_seq) is not
    applied and is reported in `deposed`; the others are. Raises SequenceGap when `dense` and
    a partition yielded fewer than to_seq - from_seq events: the caller must then roll back
    (raising out of its atomic block does), because the other ranges were already written.
    """
    assert connection.in_atomic_block, "projection_apply_many needs the caller's transaction"
    ranges = [r for r in ranges if r.to_seq > r.from_seq]
    if not ranges:
        return ApplyOutcome(applied={}, deposed=[])
    params = {
        "p": [r.partition for r in ranges],
        "epoch": [r.epoch for r in ranges],
        "from": [r.from_seq for r in ranges],
        "to": [r.to_seq for r in ranges],
    }
    with connection.cursor() as cursor:
        cursor.execute(_APPLY_SETTINGS_SQL)
        cursor.execute(_APPLY_SQL, params)
        rows = cursor.fetchall()
    applied = {int(p): int(n) for p, _, _, n, _ in rows}
    if dense:
        gaps = [int(p) for p, f, t, n, _ in rows if n != t - f]
        if gaps:
            raise SequenceGap(f"partitions {gaps}: fewer events visible than their heads promise")
    return ApplyOutcome(applied=applied, deposed=[r.partition for r in ranges if r.partition not in applied])


def projection_apply(*, partition: int, epoch: int, from_seq: int, to_seq: int, dense: bool = True) -> int:
    """Apply events (from_seq, to_seq] of one partition and move its checkpoint to `to_seq`.

    Same contract as `projection_apply_many`; raises Deposed when the checkpoint is not at
    (epoch, from_seq). Returns the number of events applied.
    """
    if to_seq <= from_seq:
        return 0
    outcome = projection_apply_many([ApplyRange(partition, epoch, from_seq, to_seq)], dense=dense)
    if outcome.deposed:
        raise Deposed(f"partition {partition}: checkpoint is not at epoch {epoch}, seq {from_seq}")
    return outcome.applied[partition]


@dataclass
class RebuildResult:
    partitions: int
    events: int


def projection_rebuild(*, batch_size: int = 50_000) -> RebuildResult:
    """Recompute every balance from zero: archived totals plus a replay of all events.

    One durable transaction in the system context. It first bumps the epoch of every
    checkpoint (taking their row locks until COMMIT): live leaders are fenced out and wait,
    then resume from the rebuilt checkpoints. Deterministic: the result depends only on the
    events up to each partition's committed head, never on batch boundaries or timing.
    """
    with system_context("ledger rebuild"), transaction.atomic(durable=True), connection.cursor() as cursor:
        # Archival must not drop a month between reading archived totals and replaying events.
        cursor.execute("SELECT pg_advisory_xact_lock(%s, 0)", [ARCHIVE_LOCK_NAMESPACE])
        partitions = known_partitions()
        cursor.execute(
            "INSERT INTO ledger_ledgercheckpoint (partition, seq, epoch, leader, applied_total, updated_at) "
            "SELECT p, 0, 0, '', 0, clock_timestamp() FROM unnest(%s::int[]) AS p ORDER BY p "
            "ON CONFLICT (partition) DO NOTHING",
            [partitions],
        )
        cursor.execute(
            """
            UPDATE ledger_ledgercheckpoint c
               SET epoch = c.epoch + 1, seq = 0, leader = 'rebuild', leader_backend_pid = pg_backend_pid(),
                   leader_since = clock_timestamp()
              FROM (SELECT partition FROM ledger_ledgercheckpoint WHERE partition = ANY(%s)
                     ORDER BY partition FOR UPDATE) AS locked
             WHERE c.partition = locked.partition
            RETURNING c.partition, c.epoch
            """,
            [partitions],
        )
        epochs = dict(cursor.fetchall())
        cursor.execute("DELETE FROM ledger_accountbalance")
        cursor.execute(
            """
            INSERT INTO ledger_accountbalance
                   (tenant_id, account_id, partition, credits_minor, debits_minor, balance_minor, event_count,
                    last_seq, updated_at)
            SELECT tenant_id, account_id, partition, credits_minor, debits_minor, credits_minor - debits_minor,
                   event_count, last_seq, clock_timestamp()
              FROM ledger_ledgerarchivedtotal
            """
        )
        cursor.execute("SELECT partition, seq FROM ledger_ledgerpartitionhead WHERE partition = ANY(%s)", [partitions])
        heads = dict(cursor.fetchall())
        events = 0
        for partition in partitions:
            head = int(heads.get(partition, 0))
            position = 0
            while position < head:
                upto = min(head, position + batch_size)
                # Archived (dropped) months leave holes below the checkpoints: not dense.
                events += projection_apply(
                    partition=partition, epoch=epochs[partition], from_seq=position, to_seq=upto, dense=False
                )
                position = upto
        cursor.execute(
            "UPDATE ledger_ledgercheckpoint SET leader = '', leader_backend_pid = NULL WHERE partition = ANY(%s)",
            [partitions],
        )
    return RebuildResult(partitions=len(partitions), events=events)


def _session_connection(application_name: str) -> psycopg.Connection:
    """A raw autocommit session as the runtime role, for session-level advisory locks."""
    params = connection.settings_dict
    return psycopg.connect(
        dbname=params["NAME"],
        user=params["USER"],
        password=params.get("PASSWORD") or None,
        host=params.get("HOST") or None,
        port=params.get("PORT") or None,
        autocommit=True,
        application_name=application_name,
    )


class Projector:
    """One projector process's loop: keep leadership of a fair share of partitions, apply.

    Not thread-safe; one instance per thread. `run()` loops until `stop` is set; `catch_up()`
    (tests, rebuild checks) works until no partition it leads has anything left to apply.
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        batch_size: int | None = None,
        poll_seconds: float | None = None,
        rebalance_seconds: float | None = None,
        max_partitions: int | None = None,
        batches_per_pass: int = 4,
    ) -> None:
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.batch_size = int(batch_size or settings.LEDGER_PROJECTOR_BATCH)
        self.poll_seconds = float(poll_seconds if poll_seconds is not None else settings.LEDGER_PROJECTOR_POLL_SECONDS)
        self.rebalance_seconds = float(
            rebalance_seconds if rebalance_seconds is not None else settings.LEDGER_PROJECTOR_REBALANCE_SECONDS
        )
        self.max_partitions = max_partitions
        self.batches_per_pass = batches_per_pass
        self.held: dict[int, int] = {}  # partition -> epoch
        self.failed_until: dict[int, float] = {}  # partition -> monotonic time of its next try
        self.applied_total = 0
        self._lock_conn: psycopg.Connection | None = None
        self._member_slot: int | None = None
        self._last_maintain = -math.inf

    # --- leadership ------------------------------------------------------------------------

    def _locks(self) -> psycopg.Connection:
        conn = self._lock_conn
        if conn is not None and not conn.closed:
            try:
                conn.execute("SELECT 1")
                return conn
            except psycopg.Error:
                logger.warning("projector %s lost its lock session; giving up all partitions", self.name)
        self._drop_session()
        conn = _session_connection(f"darkroom-projector {self.name}"[:63])
        self._lock_conn = conn
        return conn

    def _drop_session(self) -> None:
        if self._lock_conn is not None:
            try:
                self._lock_conn.close()
            except psycopg.Error:
                pass
        self._lock_conn = None
        self._member_slot = None
        self.held.clear()

    def _ensure_member(self, conn: psycopg.Connection) -> None:
        if self._member_slot is not None:
            return
        for slot in range(MAX_MEMBERS):
            row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (MEMBER_LOCK_NAMESPACE, slot)).fetchone()
            if row and row[0]:
                self._member_slot = slot
                return
        raise RuntimeError("no free projector member slot")

    def _members(self, conn: psycopg.Connection) -> int:
        row = conn.execute(
            """
            SELECT count(*) FROM pg_locks
             WHERE locktype = 'advisory' AND classid = %s AND objsubid = 2 AND granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
            """,
            (MEMBER_LOCK_NAMESPACE,),
        ).fetchone()
        return max(1, int(row[0]) if row else 1)

    def release(self, partition: int) -> None:
        self.held.pop(partition, None)
        conn = self._lock_conn
        if conn is not None and not conn.closed:
            try:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LEADER_LOCK_NAMESPACE, partition))
            except psycopg.Error:
                self._drop_session()

    def maintain(self) -> None:
        """Check the lock session, then lead up to a fair share of the known partitions."""
        self._last_maintain = time.monotonic()
        conn = self._locks()
        self._ensure_member(conn)
        partitions = known_partitions()
        target = self.max_partitions or math.ceil(len(partitions) / self._members(conn))
        for partition in sorted(self.held, reverse=True)[: max(0, len(self.held) - target)]:
            logger.info("projector %s hands partition %s over (fair share %s)", self.name, partition, target)
            self.release(partition)
        # Start at a member-specific offset so that joining processes rarely race for one lock.
        offset = ((self._member_slot or 0) * len(partitions)) // max(1, self._members(conn))
        for partition in partitions[offset:] + partitions[:offset]:
            if len(self.held) >= target:
                break
            if partition in self.held:
                continue
            row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LEADER_LOCK_NAMESPACE, partition)).fetchone()
            if not (row and row[0]):
                continue
            try:
                claim = checkpoint_claim(partition=partition, leader=self.name, backend_pid=conn.info.backend_pid)
            except DatabaseError:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LEADER_LOCK_NAMESPACE, partition))
                raise
            self.held[partition] = claim.epoch
            logger.info("projector %s leads partition %s (epoch %s)", self.name, partition, claim.epoch)

    # --- work ------------------------------------------------------------------------------

    def _positions(self) -> list[tuple[int, int, int, int]]:
        """(partition, checkpoint seq, checkpoint epoch, head seq) of the partitions we lead."""
        if not self.held:
            return []
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.partition, c.seq, c.epoch, coalesce(h.seq, 0) FROM ledger_ledgercheckpoint c "
                "LEFT JOIN ledger_ledgerpartitionhead h ON h.partition = c.partition WHERE c.partition = ANY(%s)",
                [sorted(self.held)],
            )
            return [(int(p), int(s), int(e), int(h)) for p, s, e, h in cursor.fetchall()]

    def work(self) -> int:
        """One pass: apply what is new in every partition we lead, all in one transaction per round.

        Up to `batches_per_pass` rounds; each round takes at most `batch_size` events per
        partition. Partitions whose epoch moved on are released (we were deposed).
        """
        applied = 0
        positions = {p: (seq, epoch, head) for p, seq, epoch, head in self._positions()}
        for partition, (_, epoch, _) in positions.items():
            if self.held.get(partition) != epoch:
                logger.warning("projector %s was deposed from partition %s", self.name, partition)
                self.release(partition)
        cursor = {p: seq for p, (seq, epoch, head) in positions.items() if p in self.held}
        heads = {p: head for p, (_, _, head) in positions.items()}
        now = time.monotonic()
        skip: set[int] = {p for p, until in self.failed_until.items() if until > now}
        for _ in range(self.batches_per_pass):
            ranges = [
                ApplyRange(p, self.held[p], seq, min(heads[p], seq + self.batch_size))
                for p, seq in sorted(cursor.items())
                if seq < heads[p] and p in self.held and p not in skip
            ]
            if not ranges:
                break
            try:
                with system_context(PROJECTOR_REASON), transaction.atomic(durable=True):
                    outcome = projection_apply_many(ranges)
            except (SequenceGap, DataError):
                # A gap is never expected (heads commit with their events); a DataError is one
                # partition's totals leaving bigint. Either way, apply partitions one by one to
                # isolate it, and leave it alone until the next pass (a DataError for longer).
                logger.exception("projector %s: a partition cannot be applied; isolating", self.name)
                gapped, done = self._apply_each(ranges, cursor)
                skip |= gapped
                applied += done
                continue
            for partition in outcome.deposed:
                logger.warning("projector %s deposed from partition %s by epoch", self.name, partition)
                self.release(partition)
                cursor.pop(partition, None)
            for r in ranges:
                if r.partition in outcome.applied:
                    cursor[r.partition] = r.to_seq
            applied += sum(outcome.applied.values())
        self.applied_total += applied
        return applied

    def _apply_each(self, ranges: list[ApplyRange], cursor: dict[int, int]) -> tuple[set[int], int]:
        """Apply ranges one transaction each; returns (partitions still showing a gap, events applied)."""
        gapped: set[int] = set()
        done = 0
        for r in ranges:
            try:
                with system_context(PROJECTOR_REASON), transaction.atomic(durable=True):
                    outcome = projection_apply_many([r])
            except SequenceGap:
                logger.error("projector %s: sequence gap in partition %s; will retry", self.name, r.partition)
                gapped.add(r.partition)
                continue
            except DataError:
                logger.exception(
                    "projector %s: partition %s cannot be applied (events %s..%s); retrying it in %ss",
                    self.name, r.partition, r.from_seq + 1, r.to_seq, FAILED_PARTITION_RETRY_SECONDS,
                )  # fmt: skip
                self.failed_until[r.partition] = time.monotonic() + FAILED_PARTITION_RETRY_SECONDS
                gapped.add(r.partition)
                continue
            self.failed_until.pop(r.partition, None)
            if r.partition in outcome.applied:
                cursor[r.partition] = r.to_seq
                done += outcome.applied[r.partition]
            else:
                self.release(r.partition)
        return gapped, done

    def step(self) -> int:
        if time.monotonic() - self._last_maintain >= self.rebalance_seconds:
            self.maintain()
        return self.work()

    def run(self, *, stop: threading.Event) -> None:
        """Loop until `stop` is set; survives database errors (logs, reconnects, retries)."""
        while not stop.is_set():
            try:
                applied = self.step()
            except (DatabaseError, psycopg.Error):
                logger.exception("projector %s: database error; retrying", self.name)
                connection.close()
                self._last_maintain = -math.inf
                stop.wait(min(1.0, self.rebalance_seconds))
                continue
            if applied == 0:
                stop.wait(self.poll_seconds)
        self.close()

    def catch_up(self, *, max_passes: int = 100_000) -> int:
        """Lead what we can and apply until a pass finds nothing to do; returns events applied."""
        self.maintain()
        total = 0
        for _ in range(max_passes):
            applied = self.work()
            total += applied
            if applied == 0:
                break
        return total

    def close(self) -> None:
        """Give up every partition (closing the session releases its advisory locks)."""
        self._drop_session()
