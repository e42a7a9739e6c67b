"""Postgres backend that carries the tenant context into every transaction (see base.py)."""
