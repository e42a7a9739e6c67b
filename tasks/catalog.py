"""Celery tasks of the catalog domain (thin: load by id, call a service)."""

from celery import shared_task
from django.db import OperationalError

from apps.catalog.services import photo_generate_derivatives


@shared_task(
    name="catalog.generate_derivatives",
    acks_late=True,
    autoretry_for=(OSError, OperationalError),
    retry_backoff=True,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=5,
)
def generate_derivatives(tenant_id: int, photo_id: int) -> str:
    """Render a photo's watermarked preview and thumbnail (idempotent; safe to redeliver).

    Undecodable originals end `failed` without retrying; storage (OSError) and connection
    errors retry with bounded, jittered backoff.
    """
    return photo_generate_derivatives(tenant_id=tenant_id, photo_id=photo_id)
