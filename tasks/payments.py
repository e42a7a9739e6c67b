"""Celery tasks of the payments domain (thin: load by id, call a service)."""
