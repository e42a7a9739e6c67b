"""VACUUM (ANALYZE) before a benchmark measures, so runs start from comparable tables.

The queue tables (outbox, inbox, reservations) churn: every row is updated or deleted soon after
it is written. Autovacuum normally keeps up (the queue tables vacuum after 1 % churn), but a
machine may run with `autovacuum = off` (this CI box does), and then every run inherits the dead
tuples of the runs before it and measures slower. VACUUM needs the table owner, so it runs on
the `owner` alias, outside any transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.db import connections
from psycopg import sql


def autovacuum_enabled() -> bool:
    with connections["owner"].cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        row = cursor.fetchone()
    return bool(row and row[0] == "on")


def vacuum_analyze(tables: Iterable[str], *, log: Callable[[str], None] | None = None) -> None:
    """VACUUM (ANALYZE) each table as its owner. Must run outside any transaction."""
    owner = connections["owner"]
    owner.ensure_connection()
    raw = owner.connection
    previous = raw.autocommit
    raw.autocommit = True
    try:
        with raw.cursor() as cursor:
            for table in tables:
                cursor.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
                if log is not None:
                    log(f"vacuumed {table}")
    finally:
        raw.autocommit = previous
        owner.close()
