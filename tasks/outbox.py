"""Celery tasks of the outbox domain (thin: load by id, call a service)."""
