"""Queue-table autovacuum: every outbox row is inserted, updated once (published) and deleted by
the cleanup, so dead tuples pile up in the pending-due index the relay's claim walks. Vacuum after
~1 % of the table changed (default 20 %), without cost-based throttling delays."""

from django.db import migrations

TABLE = "outbox_outboxmessage"


class Migration(migrations.Migration):
    dependencies = [("outbox", "0001_initial")]

    operations = [
        migrations.RunSQL(
            f"ALTER TABLE {TABLE} SET (autovacuum_vacuum_scale_factor = 0.01,"
            " autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0,"
            " autovacuum_analyze_scale_factor = 0.02)",
            f"ALTER TABLE {TABLE} RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,"
            " autovacuum_vacuum_cost_delay, autovacuum_analyze_scale_factor)",
        ),
    ]
