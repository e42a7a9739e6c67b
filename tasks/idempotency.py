"""Celery tasks of the idempotency domain (thin: load by id, call a service)."""
