"""Celery tasks of the inventory domain: the per-SKU batched writer and reservation expiry."""
