"""Create the database roles and the database (idempotent), through the admin URL.

Roles:
* owner (from DATABASE_OWNER_URL): owns the tables and runs migrations. Not superuser, no
  BYPASSRLS (and RLS is FORCED, so it is held to the policies too).
* runtime (from DATABASE_URL): what web, workers, relay and projector connect as. Not superuser,
  not owner, no BYPASSRLS, no CREATEDB: row-level security always applies to it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand
from psycopg import sql


def _role(alias: str) -> tuple[str, str]:
    db = settings.DATABASES[alias]
    return str(db["USER"]), str(db.get("PASSWORD") or "")


class Command(BaseCommand):
    help = "Create the owner and runtime roles and the database, using DATABASE_ADMIN_URL."

    def handle(self, *args: Any, **options: Any) -> None:
        owner, owner_password = _role("owner")
        runtime, runtime_password = _role("default")
        database = str(settings.DATABASES["default"]["NAME"])
        admin_url = settings.DATABASE_ADMIN_URL
        with psycopg.connect(admin_url, autocommit=True) as conn:
            self._ensure_role(conn, owner, owner_password, "NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE")
            self._ensure_role(conn, runtime, runtime_password, "NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE")
            # Row estimates over RLS-filtered partitioned tables are poor, and JIT then spends
            # seconds compiling short OLTP queries (seen on the ledger lag query): keep it off.
            for role in (owner, runtime):
                conn.execute(sql.SQL("ALTER ROLE {} SET jit = off").format(sql.Identifier(role)))
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
            if not exists:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(owner))
                )
                self.stdout.write(f"created database {database} owned by {owner}")
        admin_db_url = urlsplit(admin_url)._replace(path=f"/{database}").geturl()
        with psycopg.connect(admin_db_url, autocommit=True) as conn:
            # pg_stat_statements is optional (needs shared_preload_libraries); use it if present.
            available = conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements'"
            ).fetchone()
            preloaded = conn.execute("SHOW shared_preload_libraries").fetchone()
            if available and preloaded and "pg_stat_statements" in str(preloaded[0]):
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        self.stdout.write(f"roles ok: owner={owner} runtime={runtime}; database ok: {database}")

    def _ensure_role(self, conn: psycopg.Connection, name: str, password: str, attributes: str) -> None:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone()
        verb = "ALTER" if exists else "CREATE"
        statement = sql.SQL(f"{verb} ROLE {{}} LOGIN {attributes}").format(sql.Identifier(name))
        if password:
            statement = sql.SQL("{} PASSWORD {}").format(statement, sql.Literal(password))
        conn.execute(statement)
