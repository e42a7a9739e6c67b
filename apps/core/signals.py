"""Carry request id and tenant across the Celery boundary; keep a worker's database connections
healthy between tasks; grant runtime privileges after migrate.

Publish side: every task message gets `request_id` and `tenant_id` headers from the current
context. Worker side: the task runs inside that request id and tenant context, and the
context is reset afterwards so nothing leaks to the next task on the same worker process.
"""

from __future__ import annotations

from typing import Any

from celery import signals as celery_signals
from django.db import connections
from django.db.models.signals import post_migrate
from django.dispatch import receiver

from apps.core.request_context import get_request_id, reset_request_id, set_request_id
from apps.tenancy import context as tenant_ctx

_task_tokens: dict[str, tuple[Any, Any]] = {}


@celery_signals.before_task_publish.connect
def _add_context_headers(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is None:
        return
    headers.setdefault("request_id", get_request_id())
    tenant_id = tenant_ctx.current_tenant_id()
    headers.setdefault("tenant_id", tenant_id)


@celery_signals.task_prerun.connect
def _enter_task_context(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    request = task.request if task is not None else None
    request_id = getattr(request, "request_id", None) or task_id
    tenant_id = getattr(request, "tenant_id", None)
    rid_token = set_request_id(request_id)
    tenant_cm = tenant_ctx.tenant_context(tenant_id)
    tenant_cm.__enter__()
    _task_tokens[task_id or ""] = (rid_token, tenant_cm)


@celery_signals.task_postrun.connect
def _leave_task_context(task_id: str | None = None, **_: Any) -> None:
    tokens = _task_tokens.pop(task_id or "", None)
    if tokens is None:
        return
    rid_token, tenant_cm = tokens
    tenant_cm.__exit__(None, None, None)
    reset_request_id(rid_token)


@celery_signals.task_prerun.connect
@celery_signals.task_postrun.connect
def _close_old_db_connections(task: Any = None, **_: Any) -> None:
    """Around every task, what Django does around every request: close a connection that failed
    (the server restarted, a fatal error) or outlived CONN_MAX_AGE, and arm the health check of
    the next first query. Celery's Django fixup alone keeps a connection for CELERY_DB_REUSE_MAX
    tasks without looking at it, so a connection the server had ended failed every task until
    then. Eager tasks run inside their caller's transaction and are left alone."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


@receiver(post_migrate)
def _grant_runtime_privileges(sender: Any, using: str, **_: Any) -> None:
    # post_migrate fires once per app with models, after *all* migrations ran; act once.
    if getattr(sender, "label", None) != "tenancy":
        return
    from apps.core.db.privileges import grant_runtime_privileges

    grant_runtime_privileges(using=using)
