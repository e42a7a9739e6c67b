"""Who the current unit of work acts for: one tenant, the system, or nobody.

The values live in context variables (per thread and per asyncio task) and reach Postgres as
*transaction-local* settings (`set_config(..., true)`), applied by the database backend
(`apps.core.db.base`) at the start of every transaction. Because they are transaction-local
they vanish at COMMIT/ROLLBACK: a pooled connection (CONN_MAX_AGE, psycopg pool, PgBouncer in
transaction mode) can never carry one request's tenant into the next.

`system_context` is the only way to read across tenants. It names a reason, which goes to the
audit log the first time each process uses it (so the audit trail lists every process and
purpose that bypasses tenant isolation without writing a row per query).
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

TENANT_SETTING = "app.tenant_id"
SYSTEM_SETTING = "app.system_context"


@dataclass(frozen=True)
class DbContext:
    """The pair of settings a transaction must carry."""

    tenant_id: int | None = None
    system_reason: str | None = None

    def as_settings(self) -> tuple[str, str]:
        return (
            "" if self.tenant_id is None else str(self.tenant_id),
            "on" if self.system_reason else "",
        )


_EMPTY = DbContext()
_current: contextvars.ContextVar[DbContext] = contextvars.ContextVar("darkroom_db_context", default=_EMPTY)
_audited_reasons: set[str] = set()


def current() -> DbContext:
    return _current.get()


def current_tenant_id() -> int | None:
    return _current.get().tenant_id


@contextmanager
def tenant_context(tenant_id: int | None) -> Iterator[None]:
    """Act for one tenant (or for nobody, with None) until the block ends.

    Opening a tenant context inside an open transaction that already ran queries is allowed:
    the backend re-applies the settings before the next statement.
    """
    token = _current.set(DbContext(tenant_id=None if tenant_id is None else int(tenant_id)))
    try:
        yield
    finally:
        _current.reset(token)


@contextmanager
def system_context(reason: str) -> Iterator[None]:
    """Act across tenants, for a stated reason (relay, projector, payout scan, auth lookup).

    The first use of each reason in a process writes an AuditLog row `system_context.enter`, in
    the caller's transaction (if any); the reason counts as audited once that row commits, so a
    first use whose transaction rolls back is audited again at the next use.
    """
    if not reason:
        raise ValueError("system_context needs a reason")
    token = _current.set(DbContext(system_reason=reason))
    try:
        if reason not in _audited_reasons:
            _audit_system_entry(reason)
        yield
    finally:
        _current.reset(token)


def _audit_system_entry(reason: str) -> None:
    """Write the reason's audit row; remember the reason when the row commits (at once in autocommit)."""
    from django.db import transaction

    from apps.tenancy.services import audit_record

    audit_record(
        action="system_context.enter",
        target_type="process",
        target_id=str(os.getpid()),
        data={"reason": reason},
        actor_label=f"system:{reason}",
    )
    transaction.on_commit(partial(_audited_reasons.add, reason))
