"""Queue-table autovacuum for the outbox: every row is inserted, updated once (published) and
deleted by the cleanup, and the relay's claim walks the pending-due index (apps/core/db/autovacuum.py)."""

from django.db import migrations

from apps.core.db.autovacuum import queue_table_autovacuum


class Migration(migrations.Migration):
    dependencies = [("outbox", "0001_initial")]

    operations = [queue_table_autovacuum("outbox_outboxmessage")]
