"""Celery tasks of the commerce domain (thin: load by id, call a service)."""
