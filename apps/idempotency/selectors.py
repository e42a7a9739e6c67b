"""Reads of the idempotency key store, and the retention it is read with."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.utils import timezone

from apps.idempotency.models import TABLE
from apps.idempotency.sealing import unseal

RETENTION_FLOOR = dt.timedelta(hours=24)


def idempotency_retention() -> dt.timedelta:
    """How long a completed key is replayed (`IDEMPOTENCY_RETENTION_HOURS`, default 72 h).

    Raises ImproperlyConfigured below 24 h: clients retry across a day, and silently raising the
    value would surprise an operator who asked for less. Checked at start-up (AppConfig.ready),
    so a process with such a setting does not start.
    """
    hours = settings.IDEMPOTENCY_RETENTION_HOURS
    retention = dt.timedelta(hours=hours)
    if retention < RETENTION_FLOOR:
        raise ImproperlyConfigured(
            f"IDEMPOTENCY_RETENTION_HOURS={hours} is below the 24 h floor; clients retrying a day-old "
            "request would repeat its effect. Set it to 24 or more."
        )
    return retention


# Plain SQL: this lookup runs at the start of every mutating API request.
_FIND_SQL = f"""
    SELECT fingerprint, response_status, response_body, response_content_type FROM {TABLE}
     WHERE tenant_id = %s AND caller = %s AND key = %s AND created_at >= %s AND created_at < %s
     ORDER BY created_at DESC LIMIT 1
"""


@dataclass(frozen=True)
class StoredOutcome:
    fingerprint: str
    status: int
    body: bytes
    content_type: str


def idempotency_key_find(*, tenant_id: int, caller: str, key: str) -> StoredOutcome | None:
    """The stored outcome of (tenant, caller, key) within retention, or None.

    Rows older than the retention are ignored even while their day partition still exists, so
    partition drop time never changes the answer. Call it while holding the advisory lock of
    (tenant, caller, key) in READ COMMITTED: the lookup is its own statement, so its snapshot
    sees any request of the same key that committed before the lock was granted.
    """
    now = timezone.now()
    since = now - idempotency_retention()
    # The upper bound only prunes the empty partitions created ahead (a day covers clock skew).
    until = now + dt.timedelta(days=1)
    with connection.cursor() as cursor:
        cursor.execute(_FIND_SQL, [tenant_id, caller, key, since, until])
        row = cursor.fetchone()
    if row is None:
        return None
    fingerprint, status, body, content_type = row
    return StoredOutcome(fingerprint=fingerprint, status=status, body=unseal(bytes(body)), content_type=content_type)
