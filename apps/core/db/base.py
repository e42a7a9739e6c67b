"""PostgreSQL backend that applies the tenant/system context to every transaction.

Invariant: before any statement runs, the transaction it runs in carries
`app.tenant_id` / `app.system_context` equal to `apps.tenancy.context.current()`, set with
`set_config(..., is_local => true)`, so nothing survives COMMIT or ROLLBACK.

* Inside an atomic block the settings are applied once per transaction (and again if the
  context changes, or after a savepoint rollback that may have undone them).
* Outside one (autocommit), a statement that needs a non-empty context is wrapped in its own
  short transaction; with an empty context it runs as is, and RLS policies see no tenant.
"""

from __future__ import annotations

import select
from typing import Any

from django.db import transaction
from django.db.backends.postgresql import base as pg_base

from apps.tenancy.context import SYSTEM_SETTING, TENANT_SETTING, current

_SET_CONTEXT_SQL = f"SELECT set_config('{TENANT_SETTING}', %s, true), set_config('{SYSTEM_SETTING}', %s, true)"
_EMPTY_SETTINGS = ("", "")


class DatabaseWrapper(pg_base.DatabaseWrapper):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Settings applied in the current transaction; None when no transaction is open.
        self._applied_settings: tuple[str, str] | None = None
        self.execute_wrappers.append(self._apply_context)

    def is_usable(self) -> bool:
        """Django's health check (CONN_HEALTH_CHECKS, at a request's first query), without its
        `SELECT 1` round trip while the socket shows the connection is alive.

        A server that ends a connection (shutdown, restart, `pg_terminate_backend`, an idle
        timeout) sends an error message and closes the socket, and both make it readable. So an
        idle connection with nothing to read is still open on the server's side; anything to read,
        or a connection psycopg already knows is broken, gets the full check. A peer that vanished
        without a word (a cut cable) is found by neither check before the next query's timeout.
        """
        conn = self.connection
        if conn is None or conn.closed or conn.broken:
            return False
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        if not poller.poll(0):
            return True
        return bool(super().is_usable())

    # Every way a transaction ends or a savepoint unwinds forgets what was applied.
    def _set_autocommit(self, autocommit: bool) -> None:
        super()._set_autocommit(autocommit)  # type: ignore[misc]
        self._applied_settings = None

    def _commit(self) -> None:
        try:
            super()._commit()  # type: ignore[misc]
        finally:
            self._applied_settings = None

    def _rollback(self) -> None:
        try:
            super()._rollback()  # type: ignore[misc]
        finally:
            self._applied_settings = None

    def _savepoint_rollback(self, sid: str) -> None:
        super()._savepoint_rollback(sid)  # type: ignore[misc]
        self._applied_settings = None

    def _close(self) -> None:
        self._applied_settings = None
        super()._close()  # type: ignore[misc]

    def _apply_context(self, execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        wanted = current().as_settings()
        if self.get_autocommit():
            if wanted == _EMPTY_SETTINGS:
                return execute(sql, params, many, context)
            with transaction.atomic(using=self.alias):
                self._ensure_settings(wanted)
                return execute(sql, params, many, context)
        if self.needs_rollback:
            return execute(sql, params, many, context)
        self._ensure_settings(wanted)
        return execute(sql, params, many, context)

    def _ensure_settings(self, wanted: tuple[str, str]) -> None:
        if self._applied_settings == wanted:
            return
        if self._applied_settings is None and wanted == _EMPTY_SETTINGS:
            # A fresh transaction starts with both settings empty; nothing to do.
            self._applied_settings = wanted
            return
        with self.connection.cursor() as raw_cursor:
            raw_cursor.execute(_SET_CONTEXT_SQL, wanted)
        self._applied_settings = wanted
