"""Writes for the outbox: publish (producer side), consume_once (consumer side), failure
bookkeeping, dead-letter replay and cleanup. The relay itself lives in `apps.outbox.relay`.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from apps.core.request_context import get_request_id
from apps.outbox.models import InboxEntry, OutboxMessage, uuid7
from apps.tenancy.context import current
from apps.tenancy.models import User
from apps.tenancy.services import audit_record

# Every column of OutboxMessage, in field order (what `Model.from_db` expects). A field added to
# the model makes `outbox_publish` fail loudly (KeyError) until it gives the column a value.
_OUTBOX_COLUMNS = tuple(field.attname for field in OutboxMessage._meta.concrete_fields)
_OUTBOX_JSON_COLUMNS = frozenset({"payload", "headers"})
_OUTBOX_INSERT_SQL = (
    f"INSERT INTO {OutboxMessage._meta.db_table} ({', '.join(_OUTBOX_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(_OUTBOX_COLUMNS))})"
)


class OutboxNotInTransaction(RuntimeError):
    """`outbox_publish` was called outside `transaction.atomic`: the message would not be
    atomic with the business rows it describes."""


class OutboxTenantMismatch(ValueError):
    """A tenant context tried to publish a message for another tenant."""


def outbox_publish(
    *,
    topic: str,
    tenant_id: int | None,
    aggregate_type: str,
    aggregate_id: str | int | uuid.UUID,
    payload: dict[str, Any],
    headers: dict[str, Any] | None = None,
) -> OutboxMessage:
    """Append a message to the outbox inside the caller's transaction (joins it, never opens one).

    The row commits or rolls back with the caller's business rows; a trigger NOTIFYs the relays,
    delivered by Postgres at COMMIT. `headers` gain the current `request_id` (unless given), which
    the relay passes to the consumer task together with `tenant_id`.
    `tenant_id=None` is a platform message; in a tenant context only that tenant may publish
    (RLS would refuse the row anyway), in the system context any tenant.

    Raises OutboxNotInTransaction outside `transaction.atomic`, OutboxTenantMismatch for another
    tenant's message, and whatever the insert raises (e.g. a payload JSON cannot encode).
    """
    if not connection.in_atomic_block:
        raise OutboxNotInTransaction("outbox_publish must run inside the caller's transaction.atomic block")
    context = current()
    if context.system_reason is None and context.tenant_id is not None and tenant_id not in (None, context.tenant_id):
        raise OutboxTenantMismatch(f"tenant {context.tenant_id} may not publish for tenant {tenant_id}")
    merged_headers = dict(headers or {})
    merged_headers.setdefault("request_id", get_request_id())
    now = timezone.now()
    values: dict[str, Any] = {
        "id": uuid7(),
        "tenant_id": tenant_id,
        "topic": topic,
        "aggregate_type": aggregate_type,
        "aggregate_id": str(aggregate_id),
        "payload": payload,
        "headers": merged_headers,
        "status": OutboxMessage.Status.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
        "published_at": None,
        "last_error": "",
    }
    row = [values[column] for column in _OUTBOX_COLUMNS]
    params: list[Any] = [
        Jsonb(v) if c in _OUTBOX_JSON_COLUMNS else v for c, v in zip(_OUTBOX_COLUMNS, row, strict=True)
    ]
    # One plain INSERT: this runs in every business transaction (every checkout, every webhook),
    # and the ORM's save machinery costs several times the statement itself.
    with connection.cursor() as cursor:
        cursor.execute(_OUTBOX_INSERT_SQL, params)
    return OutboxMessage.from_db(connection.alias, _OUTBOX_COLUMNS, row)


@contextmanager
def consume_once(*, consumer: str, message_id: str | uuid.UUID) -> Iterator[bool]:
    """One transaction holding the inbox row for (consumer, message_id) and the caller's effect.

        with consume_once(consumer="commerce.on_checkout_created", message_id=message_id) as first:
            if first:
                ...  # the effect; commits together with the inbox row

    Yields True the first time this consumer sees the message and False for a redelivery (the
    block should then do nothing). If the block raises, the inbox row rolls back with the effect,
    so a retry runs it again. A concurrent duplicate blocks on the unique index until the first
    commits (then yields False) or rolls back (then yields True): never two effects.
    Opens `transaction.atomic()` (a savepoint if the caller already has a transaction).
    """
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {InboxEntry._meta.db_table} (consumer, message_id, processed_at) "
                "VALUES (%s, %s, now()) ON CONFLICT (consumer, message_id) DO NOTHING RETURNING id",
                [consumer, str(message_id)],
            )
            first = cursor.fetchone() is not None
        yield first


def retry_delay_seconds(attempts: int) -> float:
    """Backoff before the next publish attempt after `attempts` failures: exponential with a cap,
    "equal jitter" (half fixed, half random) so retries of one burst spread out."""
    base = float(settings.OUTBOX_RETRY_BASE_SECONDS)
    cap = float(settings.OUTBOX_RETRY_MAX_SECONDS)
    ceiling = min(cap, base * 2 ** max(attempts - 1, 0))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not a secret


def outbox_record_failure(*, message: OutboxMessage, error: BaseException) -> bool:
    """Count a failed publish of a claimed message: attempts + 1 and a later next_attempt_at, or
    dead-lettered once attempts reach OUTBOX_MAX_ATTEMPTS. Returns True when dead-lettered.

    Runs in the relay's claim transaction, which holds the row lock (FOR UPDATE SKIP LOCKED).
    """
    attempts = message.attempts + 1
    dead = attempts >= int(settings.OUTBOX_MAX_ATTEMPTS)
    message.attempts = attempts
    message.last_error = f"{type(error).__name__}: {error}"[:2000]
    message.status = OutboxMessage.Status.DEAD if dead else OutboxMessage.Status.PENDING
    message.next_attempt_at = timezone.now() + dt.timedelta(seconds=0 if dead else retry_delay_seconds(attempts))
    message.save(update_fields=["attempts", "last_error", "status", "next_attempt_at"])
    return dead


def outbox_mark_published(*, message_ids: list[uuid.UUID]) -> int:
    """Mark claimed messages published, in the relay's claim transaction (rows locked by it)."""
    if not message_ids:
        return 0
    return OutboxMessage.objects.filter(pk__in=message_ids, status=OutboxMessage.Status.PENDING).update(
        status=OutboxMessage.Status.PUBLISHED, published_at=timezone.now(), last_error=""
    )


@transaction.atomic(durable=True)
def outbox_replay(
    *,
    message_ids: Iterable[uuid.UUID | str] | None = None,
    all_dead: bool = False,
    include_published: bool = False,
    actor: User | None = None,
    actor_label: str = "",
) -> list[uuid.UUID]:
    """Move dead-lettered messages back to pending (attempts reset, due now); audited.

    Outermost transaction. Replays the dead letters among `message_ids`, or every dead letter
    with `all_dead=True`. With `include_published=True`, the named `message_ids` that were
    already published are sent again too: for a message the broker lost (a Redis restart), under
    the same message id, so a consumer that had applied it skips it. Other statuses are left
    alone. Rows are locked FOR UPDATE in id order.
    One AuditLog row `outbox.replay` per message (in the message's tenant), in the same
    transaction. The caller acts in the system context (admin, CLI) or in the tenant context of
    the messages: rows RLS hides are not replayed. A trigger NOTIFYs relays at commit.
    Returns the replayed ids.
    """
    if message_ids is None and not all_dead:
        raise ValueError("name the messages to replay, or pass all_dead=True")
    if include_published and message_ids is None:
        raise ValueError("published messages are sent again only by id")
    statuses = [OutboxMessage.Status.DEAD]
    if include_published:
        statuses.append(OutboxMessage.Status.PUBLISHED)
    queryset = OutboxMessage.objects.filter(status__in=statuses)
    if message_ids is not None:
        queryset = queryset.filter(pk__in=[uuid.UUID(str(m)) for m in message_ids])
    messages = list(queryset.select_for_update().order_by("id"))
    now = timezone.now()
    for message in messages:
        previous = {
            "status": message.status,
            "attempts": message.attempts,
            "last_error": message.last_error,
            "published_at": message.published_at.isoformat() if message.published_at else None,
        }
        message.status = OutboxMessage.Status.PENDING
        message.attempts = 0
        message.next_attempt_at = now
        message.published_at = None
        message.save(update_fields=["status", "attempts", "next_attempt_at", "published_at"])
        audit_record(
            action="outbox.replay",
            tenant_id=message.tenant_id,
            actor_user=actor,
            actor_label=actor_label,
            target_type="outbox_message",
            target_id=str(message.id),
            data={"topic": message.topic, **previous},
        )
    return [m.id for m in messages]


def _delete_in_batches(sql: str, params: list[Any], *, batch_size: int, max_batches: int) -> int:
    # The batch is a MATERIALIZED CTE on purpose: `DELETE ... WHERE id IN (SELECT ... LIMIT n)` may
    # be planned as a semi-join that re-runs the subquery per outer row and deletes far more than n.
    total = 0
    for _ in range(max_batches):
        with transaction.atomic(durable=True), connection.cursor() as cursor:
            cursor.execute(sql, [*params, batch_size])
            deleted = cursor.rowcount
        total += deleted
        if deleted < batch_size:
            break
    return total


def outbox_cleanup(*, published_before: dt.datetime, batch_size: int | None = None, max_batches: int = 1000) -> int:
    """Delete published messages created before `published_before`, at most `batch_size` rows
    per transaction (never one huge DELETE: short locks, bounded WAL bursts, vacuum keeps up).

    Each batch is its own durable transaction. Pending and dead messages are never deleted.
    The caller acts in the system context (else RLS limits it to one tenant). Returns the count.
    """
    table = OutboxMessage._meta.db_table
    sql = (
        f"WITH batch AS MATERIALIZED (SELECT id FROM {table} WHERE status = 'published' AND created_at < %s "
        f"ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED) DELETE FROM {table} t USING batch WHERE t.id = batch.id"
    )
    size = batch_size or int(settings.OUTBOX_CLEANUP_BATCH_SIZE)
    return _delete_in_batches(sql, [published_before], batch_size=size, max_batches=max_batches)


def inbox_cleanup(*, processed_before: dt.datetime, batch_size: int | None = None, max_batches: int = 1000) -> int:
    """Delete inbox entries older than `processed_before`, in bounded batches (as outbox_cleanup).

    The inbox must outlive every possible redelivery of a message (relay re-publish, broker
    visibility timeout, replay): keep OUTBOX_INBOX_RETENTION_HOURS well above those.
    """
    table = InboxEntry._meta.db_table
    sql = (
        f"WITH batch AS MATERIALIZED (SELECT id FROM {table} WHERE processed_at < %s LIMIT %s) "
        f"DELETE FROM {table} t USING batch WHERE t.id = batch.id"
    )
    size = batch_size or int(settings.OUTBOX_CLEANUP_BATCH_SIZE)
    return _delete_in_batches(sql, [processed_before], batch_size=size, max_batches=max_batches)
