"""Celery tasks of the catalog domain (thin: load by id, call a service)."""
