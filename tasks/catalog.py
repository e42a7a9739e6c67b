"""Celery tasks of the catalog domain (thin: load by id, call a service)."""

from typing import Any

from django.db import OperationalError

from apps.catalog.services import PHOTO_UPLOADED_TOPIC, photo_generate_derivatives
from apps.outbox.routing import outbox_consumer


# once=False: rendering is idempotent (deterministic names, rewritten in place), and it writes
# files, which must not sit inside the inbox transaction.
@outbox_consumer(
    PHOTO_UPLOADED_TOPIC,
    name="catalog.generate_derivatives",
    queue="default",
    once=False,
    autoretry_for=(OSError, OperationalError),
    retry_backoff=True,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=5,
)
def generate_derivatives(*, message_id: str, payload: dict[str, Any]) -> str:
    """Render a photo's watermarked preview and thumbnail (idempotent; safe to redeliver).

    Undecodable originals end `failed` without retrying; storage (OSError) and connection
    errors retry with bounded, jittered backoff.
    """
    return photo_generate_derivatives(tenant_id=int(payload["tenant_id"]), photo_id=int(payload["photo_id"]))
