"""The queue tables carry their autovacuum settings (set by migration, read from the catalog)."""

from __future__ import annotations

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("table", ["outbox_outboxmessage", "commerce_inventoryreservation"])
def test_queue_tables_vacuum_after_one_percent_churn_unthrottled(table):
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [table])
        (options,) = cursor.fetchone()
    assert set(options or []) == {
        "autovacuum_vacuum_scale_factor=0.01",
        "autovacuum_vacuum_threshold=1000",
        "autovacuum_vacuum_cost_delay=0",
        "autovacuum_analyze_scale_factor=0.02",
    }
