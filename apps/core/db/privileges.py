"""Privileges of the runtime role, re-applied after every `migrate` (run as the owner).

The runtime role gets SELECT/INSERT/UPDATE/DELETE on every ordinary and partitioned table
(partitions themselves get nothing: the runtime role reaches them only through their parent,
where RLS applies), sequences and the RLS helper functions. Append-only models (those with
`APPEND_ONLY = True`) then lose UPDATE, DELETE and TRUNCATE, so `pgtrigger.ignore()` in runtime
code still cannot change history.
"""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.db import connections
from psycopg import sql


def runtime_role() -> str:
    return str(settings.DATABASES["default"]["USER"])


def append_only_tables() -> list[str]:
    return sorted(model._meta.db_table for model in apps.get_models() if getattr(model, "APPEND_ONLY", False))


def grant_runtime_privileges(*, using: str) -> None:
    role = sql.Identifier(runtime_role())
    with connections[using].cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
            """
        )
        tables = [row[0] for row in cursor.fetchall()]
        conn = connections[using].connection
        for table in tables:
            cursor.execute(
                sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}")
                .format(sql.Identifier(table), role)
                .as_string(conn)
            )
        cursor.execute(
            sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(role).as_string(conn)
        )
        for table in append_only_tables():
            if table in tables:
                cursor.execute(
                    sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE ON {} FROM {}")
                    .format(sql.Identifier(table), role)
                    .as_string(conn)
                )
