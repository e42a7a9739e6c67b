"""Celery tasks of the catalog domain (thin: load by id, call a service)."""

import dataclasses
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone

from apps.catalog.services import (
    PHOTO_UPLOADED_TOPIC,
    originals_sweep_orphans,
    photo_derivatives_requeue_stale,
    photo_generate_derivatives,
)
from apps.catalog.withdrawal import PHOTO_WITHDRAWN_TOPIC, photo_withdrawn_cleanup
from apps.outbox.routing import outbox_consumer
from apps.outbox.services import consume_once
from apps.tenancy.context import system_context

PHOTO_WITHDRAWN_CONSUMER = "catalog.photo_withdrawn"


# The catalog's consumers work on files, outside the inbox transaction (once=False): storage
# errors (OSError) and dropped connections retry with bounded, jittered backoff.
_FILE_WORK_OPTIONS: dict[str, Any] = {
    "queue": "default",
    "once": False,
    "autoretry_for": (OSError, OperationalError),
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "retry_jitter": True,
}


# once=False: rendering is idempotent (deterministic names, rewritten in place), and it writes
# files, which must not sit inside the inbox transaction.
@outbox_consumer(PHOTO_UPLOADED_TOPIC, name="catalog.generate_derivatives", **_FILE_WORK_OPTIONS, max_retries=5)
def generate_derivatives(*, message_id: str, payload: dict[str, Any]) -> str:
    """Render a photo's watermarked preview and thumbnail (idempotent; safe to redeliver).

    Undecodable originals end `failed` without retrying; storage (OSError) and connection
    errors retry with bounded, jittered backoff.
    """
    return photo_generate_derivatives(tenant_id=int(payload["tenant_id"]), photo_id=int(payload["photo_id"]))


# once=False: every step is idempotent (closes, deletes), and it deletes files outside any transaction.
@outbox_consumer(
    PHOTO_WITHDRAWN_TOPIC,
    name=PHOTO_WITHDRAWN_CONSUMER,
    lost_message_flow="photo_withdrawals",
    **_FILE_WORK_OPTIONS,
    max_retries=10,
)
def photo_withdrawn(*, message_id: str, payload: dict[str, Any]) -> dict[str, int]:
    """Close the open checkouts that would sell a withdrawn photo, and remove its matches,
    notifications, face index and public files."""
    removed = photo_withdrawn_cleanup(tenant_id=int(payload["tenant_id"]), photo_id=int(payload["photo_id"]))
    # Done: the inbox row tells the lost-message sweep (apps/outbox/unconsumed.py) that this
    # withdrawal's cleanup ran to the end. A redelivery still runs it again, harmlessly.
    with consume_once(consumer=PHOTO_WITHDRAWN_CONSUMER, message_id=message_id):
        pass
    return removed


@shared_task(name="catalog.sweep_orphan_originals", acks_late=True)
def sweep_orphan_originals() -> dict[str, int]:
    """Beat (maintenance queue): delete stored originals that no photo names (an upload that
    crashed between storing and committing, or whose own delete failed), once older than
    CATALOG_ORPHAN_GRACE_HOURS. Idempotent: a repeat finds nothing more to delete."""
    cutoff = timezone.now() - timedelta(hours=settings.CATALOG_ORPHAN_GRACE_HOURS)
    return dataclasses.asdict(originals_sweep_orphans(older_than=cutoff))


@shared_task(name="catalog.derivatives_requeue_stale", acks_late=True)
def derivatives_requeue_stale() -> int:
    """Beat: ask again for the derivatives whose message the broker lost. Idempotent: a photo
    asked for again is left alone for another REQUEUE_STALE_AFTER_SECONDS."""
    with system_context("stale derivatives sweep"):
        return len(photo_derivatives_requeue_stale(older_than_seconds=settings.REQUEUE_STALE_AFTER_SECONDS))
