"""Celery tasks of the idempotency domain (thin: call a service)."""

from celery import shared_task

from apps.idempotency.services import idempotency_partitions_maintain


@shared_task(name="idempotency.maintain_partitions", acks_late=True)
def maintain_partitions() -> dict[str, list[str]]:
    """Beat, hourly (queue maintenance, routed by name): create day partitions ahead, drop
    whole partitions past retention."""
    return idempotency_partitions_maintain().as_dict()
