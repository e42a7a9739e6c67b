"""Native range partitions by time: create ahead, list, drop whole partitions past retention.

Conventions (all partitioned tables in Darkroom):
* the parent is `PARTITION BY RANGE (<column>)` on a timestamptz column; Django's model state
  keeps `id` as its primary key while the database key is (id, <column>), because a unique
  constraint on a partitioned table must include the partition key. Uniqueness that must hold
  across partitions therefore needs another guard (see the idempotency and ledger apps).
* partitions are named `<parent>_p<YYYYMMDD>` (daily) or `<parent>_p<YYYYMM>` (monthly) and
  cover [start, next start) in UTC.
* a partition of a parent with a `tenant_id` column gets the same enabled+forced RLS policy,
  so the catalog test holds for partitions too; the runtime role gets no direct privileges
  on partitions (it reaches rows through the parent only).
* DDL runs through the `owner` alias: only the table owner may attach or drop partitions.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

from django.db import connections, transaction

from apps.tenancy.rls import enable_rls_sql

Interval = Literal["day", "month"]
_SUFFIX = {"day": re.compile(r"_p(\d{8})$"), "month": re.compile(r"_p(\d{6})$")}


@dataclass(frozen=True)
class Partition:
    name: str
    start: dt.datetime
    end: dt.datetime


def _floor(moment: dt.datetime | dt.date, interval: Interval) -> dt.datetime:
    day = moment.date() if isinstance(moment, dt.datetime) else moment
    if interval == "month":
        day = day.replace(day=1)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _next(start: dt.datetime, interval: Interval) -> dt.datetime:
    if interval == "day":
        return start + dt.timedelta(days=1)
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start.replace(year=year, month=month)


def partition_name(table: str, start: dt.datetime, interval: Interval) -> str:
    return f"{table}_p{start:%Y%m%d}" if interval == "day" else f"{table}_p{start:%Y%m}"


def _has_tenant_column(cursor: object, table: str) -> bool:
    cursor.execute(  # type: ignore[attr-defined]
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = %s AND column_name = 'tenant_id'",
        [table],
    )
    return cursor.fetchone() is not None  # type: ignore[attr-defined]


def ensure_partitions(
    *, table: str, interval: Interval, around: dt.datetime, back: int = 1, ahead: int = 3, using: str = "owner"
) -> list[str]:
    """Make sure partitions exist from `back` intervals before `around` to `ahead` after it.

    Idempotent and safe to run concurrently (CREATE TABLE IF NOT EXISTS per partition, each in
    its own short transaction). Returns the names it created.
    """
    created: list[str] = []
    start = _floor(around, interval)
    for _ in range(back):
        start = _floor(start - dt.timedelta(days=1), interval)
    existing = {p.name for p in list_partitions(table=table, interval=interval, using=using)}
    for _ in range(back + ahead + 1):
        end = _next(start, interval)
        name = partition_name(table, start, interval)
        if name not in existing:
            with transaction.atomic(using=using), connections[using].cursor() as cursor:
                cursor.execute(
                    f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{table}" '
                    f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                )
                if _has_tenant_column(cursor, table):
                    cursor.execute(
                        "SELECT 1 FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid WHERE c.relname = %s",
                        [name],
                    )
                    if cursor.fetchone() is None:
                        for statement in enable_rls_sql(name):
                            cursor.execute(statement)
            created.append(name)
        start = end
    return created


def list_partitions(*, table: str, interval: Interval, using: str = "default") -> list[Partition]:
    """The parent's partitions that follow the naming convention, oldest first."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
            [table],
        )
        names = [row[0] for row in cursor.fetchall()]
    partitions = []
    for name in names:
        match = _SUFFIX[interval].search(name)
        if not match:
            continue
        fmt = "%Y%m%d" if interval == "day" else "%Y%m"
        start = dt.datetime.strptime(match.group(1), fmt).replace(tzinfo=dt.UTC)
        partitions.append(Partition(name=name, start=start, end=_next(start, interval)))
    return sorted(partitions, key=lambda p: p.start)


def drop_partitions_before(
    *, table: str, interval: Interval, cutoff: dt.datetime, using: str = "owner", keep: set[str] | None = None
) -> list[str]:
    """Detach and drop every partition whose whole range ends at or before `cutoff`.

    O(1) per partition (no row-by-row DELETE). `keep` names partitions a caller must not lose
    (e.g. ones still holding unprojected events). Returns the dropped names.
    """
    dropped: list[str] = []
    for partition in list_partitions(table=table, interval=interval, using=using):
        if partition.end > cutoff or (keep and partition.name in keep):
            continue
        with transaction.atomic(using=using), connections[using].cursor() as cursor:
            cursor.execute(f'ALTER TABLE "{table}" DETACH PARTITION "{partition.name}"')
            cursor.execute(f'DROP TABLE "{partition.name}"')
        dropped.append(partition.name)
    return dropped
