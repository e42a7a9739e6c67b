"""Celery tasks of the ledger domain (thin: load by id, call a service)."""
