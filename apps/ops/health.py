"""Liveness and readiness checks.

Readiness fails only for what a web process cannot serve without: the database and its
migrations. Redis is reported (`degraded`), never failing: the web serves without it
(`apps.core.redis_guard`), and a load balancer routing by readiness would otherwise take every
web process out at once during a Redis outage.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from apps.core.redis_guard import redis_probe

_migrations_verified = False


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""
    required: bool = True  # a failing check that is not required degrades, it does not fail


def check_database() -> Check:
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT 1")
        return Check("database", True)
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return Check("database", False, f"{type(exc).__name__}: {exc}".strip())


def check_redis() -> Check:
    """Not required: answers within PROBE_TIMEOUT_SECONDS, at once while Redis is skipped."""
    why = redis_probe("health")
    return Check("redis", not why, why, required=False)


def check_migrations() -> Check:
    """All migrations applied. Once true it stays true for the process (code cannot change)."""
    global _migrations_verified
    if _migrations_verified:
        return Check("migrations", True)
    try:
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:  # noqa: BLE001
        return Check("migrations", False, f"{type(exc).__name__}: {exc}".strip())
    if pending:
        names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in pending[:5])
        return Check("migrations", False, f"{len(pending)} unapplied: {names}")
    _migrations_verified = True
    return Check("migrations", True)


def readiness() -> list[Check]:
    database = check_database()
    checks = [database, check_redis()]
    checks.append(check_migrations() if database.ok else Check("migrations", False, "database unreachable"))
    return checks
