"""Migration operation: autovacuum settings for queue-like tables.

A queue table sees insert -> one update -> delete per row and is claimed through partial
indexes, so dead tuples pile up where every claim looks. These tables vacuum after ~1 % churn
(default 20 %), unthrottled, and analyze after 2 %.
"""

from django.db import migrations

_SETTINGS = {
    "autovacuum_vacuum_scale_factor": "0.01",
    "autovacuum_vacuum_threshold": "1000",
    "autovacuum_vacuum_cost_delay": "0",
    "autovacuum_analyze_scale_factor": "0.02",
}


def queue_table_autovacuum(table: str) -> migrations.RunSQL:
    """`ALTER TABLE <table> SET (...)` with the queue-table settings; reversible (RESET)."""
    assignments = ", ".join(f"{name} = {value}" for name, value in _SETTINGS.items())
    return migrations.RunSQL(
        f"ALTER TABLE {table} SET ({assignments})",
        f"ALTER TABLE {table} RESET ({', '.join(_SETTINGS)})",
    )
