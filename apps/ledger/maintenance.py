"""Physical partitions of the event store: create ahead, archive and drop past retention.

Runs DDL through the `owner` alias (only the table owner may attach or drop partitions); the
owner is held to row-level security too (FORCE), so the work runs in the system context.

Archival never loses an event the projection has not applied: a month is dropped only when,
for every logical partition with events in it, the projector's checkpoint has passed that
month's highest sequence. Its events are first folded into `LedgerArchivedTotal` (so a rebuild
still equals the live projection) and, when `LEDGER_ARCHIVE_DIR` is set, exported as CSV; the
fold and the drop commit together. Archival and `projection_rebuild` exclude each other with an
advisory transaction lock, so a rebuild never sees a month disappear between its two reads.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pgtrigger
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from apps.core.partitions import ensure_partitions, list_partitions, partition_name
from apps.ledger.models import EVENT_TABLE
from apps.tenancy.context import system_context

logger = logging.getLogger("darkroom.ledger.maintenance")

ARCHIVE_LOCK_NAMESPACE = 0x4C415243  # "LARC"; also taken by projection_rebuild
BUFFER_TRIGGER_URI = "ledger.LedgerDebitBuffer:ledger_buffer_append_only"


def ledger_partitions_ensure(
    *, around: dt.datetime | None = None, ahead: int | None = None, using: str = "owner"
) -> list[str]:
    """Create the monthly partitions from last month to `ahead` months after `around` (now)."""
    return ensure_partitions(
        table=EVENT_TABLE,
        interval="month",
        around=around or timezone.now(),
        back=1,
        ahead=int(ahead if ahead is not None else settings.LEDGER_PARTITIONS_AHEAD),
        using=using,
    )


def retention_cutoff(*, now: dt.datetime | None = None) -> dt.datetime | None:
    """Start of the oldest month to keep, or None when retention is off (the default)."""
    months = int(settings.LEDGER_RETENTION_MONTHS)
    if months <= 0:
        return None
    now = now or timezone.now()
    index = now.year * 12 + (now.month - 1) - months
    return dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=dt.UTC)


@dataclass
class ArchiveResult:
    archived: list[str] = field(default_factory=list)
    kept_unprojected: list[str] = field(default_factory=list)
    events: int = 0
    exported: list[str] = field(default_factory=list)


_UNPROJECTED_SQL = """
SELECT count(*) FROM (
    SELECT e.partition, max(e.seq) AS top FROM {table} e GROUP BY e.partition
) m LEFT JOIN ledger_ledgercheckpoint c ON c.partition = m.partition
WHERE m.top > coalesce(c.seq, 0)
"""

_FOLD_SQL = """
INSERT INTO ledger_ledgerarchivedtotal AS a
       (tenant_id, account_id, partition, credits_minor, debits_minor, event_count, last_seq, archived_through)
SELECT e.tenant_id, e.account_id, e.partition,
       coalesce(sum(e.amount_minor) FILTER (WHERE e.kind = 'credit'), 0),
       coalesce(sum(e.amount_minor) FILTER (WHERE e.kind = 'debit'), 0),
       count(*), max(e.seq), %s
  FROM {table} e GROUP BY e.tenant_id, e.account_id, e.partition
    ON CONFLICT (tenant_id, account_id, partition) DO UPDATE
   SET credits_minor = a.credits_minor + EXCLUDED.credits_minor,
       debits_minor = a.debits_minor + EXCLUDED.debits_minor,
       event_count = a.event_count + EXCLUDED.event_count,
       last_seq = GREATEST(a.last_seq, EXCLUDED.last_seq),
       archived_through = GREATEST(a.archived_through, EXCLUDED.archived_through)
"""


def ledger_archive(
    *, cutoff: dt.datetime | None = None, export_dir: str | None = None, using: str = "owner"
) -> ArchiveResult:
    """Archive and drop every monthly partition that ends at or before `cutoff`.

    `cutoff` defaults to the retention setting (nothing happens when retention is off). Each
    month is one transaction: check fully projected (else keep it), export, fold into
    `LedgerArchivedTotal`, detach and drop. Do not call inside a transaction.
    """
    result = ArchiveResult()
    cutoff = cutoff or retention_cutoff()
    if cutoff is None:
        return result
    export_to = export_dir if export_dir is not None else str(settings.LEDGER_ARCHIVE_DIR or "")
    owner = connections[using]
    for part in list_partitions(table=EVENT_TABLE, interval="month", using=using):
        if part.end > cutoff:
            continue
        table = f'"{part.name}"'
        with system_context("ledger archive"), transaction.atomic(using=using), owner.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, 0)", [ARCHIVE_LOCK_NAMESPACE])
            # Freeze the month and the checkpoints we compare it with until COMMIT.
            cursor.execute(f"LOCK TABLE {table} IN SHARE MODE")
            cursor.execute(_UNPROJECTED_SQL.format(table=table))
            if cursor.fetchone()[0]:
                logger.warning("ledger archive keeps %s: it holds events not yet projected", part.name)
                result.kept_unprojected.append(part.name)
                continue
            cursor.execute(f"SELECT count(*) FROM {table}")
            count = int(cursor.fetchone()[0])
            if export_to and count:
                path = Path(export_to) / f"{part.name}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                with (
                    path.open("wb") as out,
                    cursor.cursor.copy(
                        f"COPY (SELECT * FROM {table} ORDER BY partition, seq) TO STDOUT WITH (FORMAT csv, HEADER)"
                    ) as copy,
                ):
                    for chunk in copy:
                        out.write(bytes(chunk))
                result.exported.append(str(path))
            cursor.execute(_FOLD_SQL.format(table=table), [part.end])
            cursor.execute(f'ALTER TABLE "{EVENT_TABLE}" DETACH PARTITION {table}')
            cursor.execute(f"DROP TABLE {table}")
        result.archived.append(part.name)
        result.events += count
        logger.info("ledger archive dropped %s (%d events folded)", part.name, count)
    return result


def ledger_buffer_prune(*, using: str = "owner") -> int:
    """Delete degraded-mode buffer rows the drain has already moved into the ledger.

    Retention only: a row with a drained marker is in the ledger (or was a duplicate); row and
    marker go together, so the drain, which looks only for unmarked rows, is unaffected.
    Runs as the owner with the append-only trigger ignored for this one statement.
    """
    with (
        system_context("ledger archive"),
        pgtrigger.ignore(BUFFER_TRIGGER_URI, databases=[using]),
        transaction.atomic(using=using),
        connections[using].cursor() as cursor,
    ):
        cursor.execute(
            """
            WITH gone AS (
                DELETE FROM ledger_ledgerdebitbuffer b USING ledger_ledgerbufferdrained d
                 WHERE d.buffer_id = b.id
                RETURNING b.id
            ), unmarked AS (
                DELETE FROM ledger_ledgerbufferdrained d USING gone WHERE d.buffer_id = gone.id
            )
            SELECT count(*) FROM gone
            """
        )
        return int(cursor.fetchone()[0])


def current_partition_name(*, now: dt.datetime | None = None) -> str:
    moment = now or timezone.now()
    return partition_name(EVENT_TABLE, dt.datetime(moment.year, moment.month, 1, tzinfo=dt.UTC), "month")
