"""Writes of the idempotency key store: record an outcome, maintain the day partitions."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from apps.core.partitions import drop_partitions_before, ensure_partitions, list_partitions
from apps.core.request_context import get_request_id
from apps.idempotency.models import TABLE
from apps.idempotency.sealing import seal
from apps.idempotency.selectors import idempotency_retention

logger = logging.getLogger("darkroom.idempotency")

_RECORD_SQL = (
    f"INSERT INTO {TABLE} (tenant_id, caller, key, fingerprint, method, path, response_status, response_body,"
    " response_content_type, request_id, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def idempotency_key_record(
    *,
    tenant_id: int,
    caller: str,
    key: str,
    fingerprint: str,
    method: str,
    path: str,
    status: int,
    body: bytes,
    content_type: str,
) -> None:
    """Store the outcome of a completed request (status < 400) under (tenant, caller, key).

    Joins the caller's transaction (the one that carries the request's effect) and must run
    inside it while the advisory lock of (tenant, caller, key) is held; refuses to run in
    autocommit, where the key could commit without its effect or the other way round.
    Raises IntegrityError if the partition's unique (tenant, caller, key) index already holds
    the key (only possible if the lock was bypassed).
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError("idempotency_key_record must run in the effect's transaction")
    # Plain SQL: this insert ends every mutating API request.
    with connection.cursor() as cursor:
        cursor.execute(
            _RECORD_SQL,
            [
                tenant_id, caller, key, fingerprint, method, path, status, seal(body), content_type,
                get_request_id() or "", timezone.now(),
            ],
        )  # fmt: skip


@dataclass(frozen=True)
class PartitionMaintenance:
    created: list[str] = field(default_factory=list)
    indexed: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {"created": self.created, "indexed": self.indexed, "dropped": self.dropped}


def unique_index_name(partition: str) -> str:
    return f"{partition}_scope_key"


def idempotency_partitions_maintain(
    *, now: dt.datetime | None = None, drop: bool = True, using: str = "owner"
) -> PartitionMaintenance:
    """Create day partitions from yesterday to IDEMPOTENCY_PARTITIONS_AHEAD_DAYS ahead, give every
    partition its UNIQUE (tenant_id, caller, key) index, and drop whole partitions past retention.

    A partition is dropped only when its whole day ends at or before `now - retention`, so it
    holds no row a lookup could still see (lookups ignore rows older than the retention). No row
    is ever deleted one by one. Runs as the table owner (`using`), each DDL statement in its own
    short transaction, with `lock_timeout` so it gives up instead of queueing API writes behind
    its ACCESS EXCLUSIVE lock; it is idempotent and the next run retries.

    Raises ImproperlyConfigured (before any DDL) when the retention is set below 24 h.
    """
    retention = idempotency_retention()
    now = now or timezone.now()
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('lock_timeout', %s, false)", [f"{settings.IDEMPOTENCY_DDL_LOCK_TIMEOUT_MS}ms"]
        )
    try:
        created = ensure_partitions(
            table=TABLE,
            interval="day",
            around=now,
            back=1,
            ahead=settings.IDEMPOTENCY_PARTITIONS_AHEAD_DAYS,
            using=using,
        )
        indexed = _ensure_unique_indexes(using=using)
        dropped = (
            drop_partitions_before(table=TABLE, interval="day", cutoff=now - retention, using=using) if drop else []
        )
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    result = PartitionMaintenance(created=created, indexed=indexed, dropped=dropped)
    if created or indexed or dropped:
        logger.info(
            "idempotency partitions maintained",
            extra={f"partitions_{name}": names for name, names in result.as_dict().items()},
        )
    return result


def _ensure_unique_indexes(*, using: str) -> list[str]:
    """Add the UNIQUE (tenant_id, caller, key) index to every partition that lacks it.

    Partitions are created ahead of use, so the index is normally built on an empty table.
    """
    partitions = [p.name for p in list_partitions(table=TABLE, interval="day", using=using)]
    if not partitions:
        return []
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND indexname = ANY(%s)",
            [[unique_index_name(name) for name in partitions]],
        )
        present = {row[0] for row in cursor.fetchall()}
    indexed: list[str] = []
    for name in partitions:
        if unique_index_name(name) in present:
            continue
        with transaction.atomic(using=using), connection.cursor() as cursor:
            cursor.execute(
                f'CREATE UNIQUE INDEX IF NOT EXISTS "{unique_index_name(name)}" ON "{name}" (tenant_id, caller, key)'
            )
        indexed.append(name)
    return indexed
