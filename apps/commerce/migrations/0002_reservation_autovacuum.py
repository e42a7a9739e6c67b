"""Queue-table autovacuum for inventory reservations: each is inserted pending and updated once
by the SKU's writer, whose claim walks the partial pending index (apps/core/db/autovacuum.py)."""

from django.db import migrations

from apps.core.db.autovacuum import queue_table_autovacuum


class Migration(migrations.Migration):
    dependencies = [("commerce", "0001_initial")]

    operations = [queue_table_autovacuum("commerce_inventoryreservation")]
