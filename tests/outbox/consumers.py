"""Consumers used by the outbox tests.

Imported by the tests (in-process workers) and by worker subprocesses (`celery worker -I
tests.outbox.consumers`). The effect is a row in a plain test table created by the
`effect_table` fixture; deliveries are counted in Redis by a task_prerun hook, before the inbox
check, so a test can tell "delivered twice" from "applied twice".
"""

from __future__ import annotations

import os
import signal
from typing import Any

from celery.signals import task_prerun
from django.core.cache import cache
from django.db import OperationalError, connection
from django_redis import get_redis_connection

from apps.core.request_context import get_request_id
from apps.outbox.routing import outbox_consumer
from apps.tenancy.context import current_tenant_id

EFFECT_TABLE = "outboxtest_effect"
EFFECT_TOPIC = "outboxtest.effect"
EFFECT_TASK = "outboxtest.apply_effect"


def rkey(name: str) -> str:
    return cache.make_key(f"outboxtest:{name}")


def redis() -> Any:
    return get_redis_connection("default")


def deliveries(task_id: str | None = None) -> int:
    value = redis().get(rkey(f"deliveries:{task_id}" if task_id else "deliveries"))
    return int(value or 0)


@task_prerun.connect
def _count_delivery(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task is not None and task.name.startswith("outboxtest."):
        redis().incr(rkey(f"deliveries:{task_id}"))
        redis().incr(rkey("deliveries"))


@outbox_consumer(EFFECT_TOPIC, name=EFFECT_TASK)
def apply_effect(*, message_id: str, payload: dict[str, Any]) -> None:
    if payload.get("fail_once") and redis().set(rkey(f"failed:{message_id}"), os.getpid(), nx=True):
        # What a database restart raises mid-task: the consumer must retry, not lose the effect.
        raise OperationalError("server closed the connection unexpectedly (simulated)")
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {EFFECT_TABLE} (message_id, tenant_ref, request_id, pid) VALUES (%s, %s, %s, %s)",
            [message_id, current_tenant_id(), get_request_id(), os.getpid()],
        )
    if payload.get("die_once") and redis().set(rkey(f"died:{message_id}"), os.getpid(), nx=True):
        # The worker's child process dies with the effect written but not committed.
        os.kill(os.getpid(), signal.SIGKILL)
