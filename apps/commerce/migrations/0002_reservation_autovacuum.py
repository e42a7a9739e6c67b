"""Queue-table autovacuum for inventory reservations: each is inserted pending and updated once
by the SKU's writer, whose claim walks the partial pending index; dead entries there slow every
batch of a hot SKU. Vacuum after ~1 % of the table changed (default 20 %), unthrottled."""

from django.db import migrations

TABLE = "commerce_inventoryreservation"


class Migration(migrations.Migration):
    dependencies = [("commerce", "0001_initial")]

    operations = [
        migrations.RunSQL(
            f"ALTER TABLE {TABLE} SET (autovacuum_vacuum_scale_factor = 0.01,"
            " autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_cost_delay = 0,"
            " autovacuum_analyze_scale_factor = 0.02)",
            f"ALTER TABLE {TABLE} RESET (autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,"
            " autovacuum_vacuum_cost_delay, autovacuum_analyze_scale_factor)",
        ),
    ]
