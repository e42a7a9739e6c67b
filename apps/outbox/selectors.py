"""Reads for the outbox: backlog statistics (metrics, bench, operators), relay and requeue counters."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.cache import cache
from django.db import connection

from apps.outbox.models import OutboxMessage


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    oldest_pending_age_seconds: float
    dead: int


def outbox_stats() -> OutboxStats:
    """Backlog (pending messages), age of the oldest pending one (0 when none) and dead letters.

    One query over the (status, created_at) index; the caller acts in the system context for
    platform-wide figures (a tenant context sees its own messages only).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT count(*) FILTER (WHERE status = 'pending'),
                   coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending')), 0),
                   count(*) FILTER (WHERE status = 'dead')
            FROM {OutboxMessage._meta.db_table}
            WHERE status IN ('pending', 'dead')
            """
        )
        pending, age, dead = cursor.fetchone()
    return OutboxStats(pending=int(pending), oldest_pending_age_seconds=max(float(age), 0.0), dead=int(dead))


def counter_key(name: str) -> str:
    """The Redis key of a relay counter, namespaced like the cache (per environment and test run)."""
    return cache.make_key(name)


def relay_counter(name: str) -> int:
    """A monotonically increasing relay counter kept in Redis (0 if Redis forgot it)."""
    from django_redis import get_redis_connection

    value = get_redis_connection("default").get(counter_key(name))
    return int(value) if value is not None else 0


def requeued_counters() -> dict[str, int]:
    """Messages the lost-message sweeps queued again, per flow (`apps.outbox.requeue`), kept in
    Redis ({} if Redis forgot them)."""
    from django_redis import get_redis_connection

    from apps.outbox.requeue import REQUEUED_COUNTER_KEY

    raw = get_redis_connection("default").hgetall(counter_key(REQUEUED_COUNTER_KEY))
    return {flow.decode(): int(value) for flow, value in raw.items()}
