"""Liveness and readiness checks."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

_migrations_verified = False


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


def check_database() -> Check:
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT 1")
        return Check("database", True)
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return Check("database", False, f"{type(exc).__name__}: {exc}".strip())


def check_redis() -> Check:
    try:
        client = cache.client.get_client(write=True)  # type: ignore[attr-defined]
        client.ping()
        return Check("redis", True)
    except Exception as exc:  # noqa: BLE001
        return Check("redis", False, f"{type(exc).__name__}: {exc}".strip())


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
