"""Celery tasks of the outbox domain (thin: call a service).

* `outbox.cleanup` (beat, maintenance queue): delete published messages past
  OUTBOX_RETENTION_HOURS and inbox entries past OUTBOX_INBOX_RETENTION_HOURS, in bounded batches.
* `outbox.requeue_unconsumed` (beat, maintenance queue): send again the published messages of the
  flows declared with `lost_message_flow=` whose consumer never recorded its inbox row
  (apps/outbox/unconsumed.py).
* `outbox.bench_probe`: the consumer of the `outbox.bench` topic used by `manage.py outbox_bench`;
  it records when it started (Redis) so the bench can measure commit → task start. It listens on
  its own queue, `outbox.bench`, which only the bench's worker consumes.
"""

from __future__ import annotations

import datetime as dt
import importlib
import time
from typing import Any

from celery import shared_task
from django.conf import settings
from django.utils import timezone
from django_redis import get_redis_connection

from apps.outbox.routing import outbox_consumer
from apps.outbox.services import consume_once, inbox_cleanup, outbox_cleanup
from apps.outbox.unconsumed import outbox_requeue_unconsumed
from apps.tenancy.context import system_context

BENCH_TOPIC = "outbox.bench"
BENCH_TASK = "outbox.bench_probe"
BENCH_QUEUE = "outbox.bench"


@shared_task(name="outbox.cleanup", acks_late=True)
def cleanup() -> dict[str, int]:
    """Idempotent: deleting what is already gone deletes nothing."""
    now = timezone.now()
    with system_context("outbox cleanup"):
        messages = outbox_cleanup(published_before=now - dt.timedelta(hours=settings.OUTBOX_RETENTION_HOURS))
        inbox = inbox_cleanup(processed_before=now - dt.timedelta(hours=settings.OUTBOX_INBOX_RETENTION_HOURS))
    return {"messages": messages, "inbox": inbox}


@shared_task(name="outbox.requeue_unconsumed", acks_late=True)
def requeue_unconsumed() -> dict[str, int]:
    """Idempotent: a message sent again is published afresh, so the next pass leaves it alone
    for another OUTBOX_LOST_MESSAGE_AFTER_SECONDS."""
    # The consumers declare their flows on import (a worker has imported them already). Plain
    # imports: Celery's `import_default_modules` would also run `django.setup()` again.
    for module in settings.CELERY_IMPORTS:
        importlib.import_module(module)
    with system_context("outbox lost-message sweep"):
        return outbox_requeue_unconsumed(
            older_than_seconds=settings.OUTBOX_LOST_MESSAGE_AFTER_SECONDS,
            max_age_seconds=settings.OUTBOX_RETENTION_HOURS * 3600,
            max_requeues=settings.OUTBOX_LOST_MESSAGE_MAX_REQUEUES,
            limit=settings.OUTBOX_LOST_MESSAGE_BATCH_SIZE,
        )


@outbox_consumer(BENCH_TOPIC, name=BENCH_TASK, queue=BENCH_QUEUE, once=False)
def bench_probe(*, message_id: str, payload: dict[str, Any]) -> None:
    """Record the start time first, then do what a real consumer does (inbox row, one transaction)."""
    started = time.time()
    get_redis_connection("default").rpush(payload["key"], f"{message_id} {started:.6f}")
    with consume_once(consumer=BENCH_TASK, message_id=message_id):
        pass
