"""Tasks used by tests/ops/test_worker_output.py, loaded into its worker subprocess with
`celery worker --include=tests.ops.worker_output_tasks`.

`reconfigure_then_mark` does in a pool child what `outbox.requeue_unconsumed` does:
`app.loader.import_default_modules()`, which fires Celery's `import_modules` signal, on which
Celery's Django fixup runs `django.setup()` again, and with it `settings.LOGGING`. Two of them
wait for each other, so with `--concurrency=2` each child runs one, and every child has
reconfigured its logging before it writes its marker.
"""

from __future__ import annotations

import logging
import time

from celery import shared_task
from django.core.cache import cache
from django.core.mail import send_mail
from django_redis import get_redis_connection

logger = logging.getLogger("darkroom.tests.worker_output")

BARRIER_TIMEOUT_SECONDS = 60.0


def log_line(marker: str) -> str:
    return f"worker-output log {marker}"


def mail_subject(marker: str) -> str:
    return f"worker-output mail {marker}"


def _write_marker(marker: str) -> None:
    """One log record and one e-mail through the configured backend (console in the test)."""
    logger.info(log_line(marker))
    send_mail(mail_subject(marker), f"body of {marker}", "worker@example.com", ["shopper@example.com"])


@shared_task(name="worker_output.reconfigure_then_mark")
def reconfigure_then_mark(marker: str, *, barrier: str, parties: int) -> None:
    """Reconfigure this child's logging, wait until `parties` tasks have (each in its own child:
    a child runs one task at a time), then write the marker. Raises TimeoutError if the others
    never arrive."""
    from config.celery_app import app

    app.loader.import_default_modules()
    redis = get_redis_connection("default")
    key = cache.make_key(f"worker-output:{barrier}")
    redis.incr(key)
    redis.expire(key, 300)
    deadline = time.monotonic() + BARRIER_TIMEOUT_SECONDS
    while int(redis.get(key) or 0) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError(f"barrier {barrier}: fewer than {parties} tasks arrived")
        time.sleep(0.05)
    _write_marker(marker)


@shared_task(name="worker_output.mark")
def mark(marker: str) -> None:
    _write_marker(marker)
