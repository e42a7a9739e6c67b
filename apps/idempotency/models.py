"""The idempotency key store: one row per completed mutating API request, kept for the retention.

Physical layout (created by hand in migration 0001, Django only keeps the model state):
`idempotency_idempotencykey` is `PARTITION BY RANGE (created_at)` with one partition per UTC
day, named `idempotency_idempotencykey_pYYYYMMDD` (see `apps.core.partitions`). The database
primary key is (id, created_at); Django's state keeps `id` as the primary key.

Invariants:
* a row exists only for a request whose effect committed: it is inserted in the very
  transaction that carries the effect (see `apps.idempotency.protocol`), and only for
  responses with status < 400 (a CHECK constraint refuses anything else);
* at most one row per (tenant, caller, key) within retention. Postgres cannot enforce a unique
  index across partitions, so the guard is the transaction-scoped advisory lock on
  (tenant, caller, key) taken before the lookup; every partition also carries a UNIQUE index on
  (tenant_id, caller, key) as a second line of defence within one day;
* rows are never deleted one by one: whole day partitions past the retention are dropped.

The table has `tenant_id` and is under row-level security (parent and every partition).
"""

from __future__ import annotations

from django.db import models

from apps.tenancy.models import Organization, TenantModel

TABLE = "idempotency_idempotencykey"


class IdempotencyKey(TenantModel):
    """The stored outcome of one completed request, replayed byte for byte on a retry."""

    id = models.BigAutoField(primary_key=True)
    # The composite per-partition unique index starts with tenant_id; no separate FK index.
    tenant = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+", db_index=False)
    caller = models.CharField(max_length=64, help_text="api_key:<id> or user:<id>")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="sha256 of method, path and canonical body")
    method = models.CharField(max_length=10)
    path = models.TextField()
    response_status = models.PositiveSmallIntegerField()
    response_body = models.BinaryField()
    response_content_type = models.CharField(max_length=255)
    request_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(response_status__gte=100, response_status__lt=400),
                name="idempotencykey_status_below_400",
            ),
            models.CheckConstraint(
                condition=~models.Q(key=""),
                name="idempotencykey_key_not_empty",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.caller}:{self.key}"
