# A webhook event that failed for good can be resolved by an operator (its charge refunded in the
# provider's dashboard, say): status `resolved`, with `resolved_at`, `resolved_by` and the
# operator's `resolution_note`. A nullable column and two NOT NULL ones with a database default
# (kept: the release before this one inserts events without naming them while both run during a
# deploy) change only the catalog.
#
# The ledger holds every delivery ever received, so its checks are not re-added with a scan under
# the ACCESS EXCLUSIVE lock that webhook deliveries queue behind: in one short transaction under
# `lock_timeout` the columns are added and the checks added NOT VALID (new rows are checked at
# once), then, in a second transaction, VALIDATE CONSTRAINT scans the rows under a SHARE UPDATE
# EXCLUSIVE lock, which lets deliveries and processing go on. Every existing row passes both:
# none is resolved, and the statuses allowed before are still allowed. A run cut short (a lock
# timeout) can be run again: each statement tolerates what a previous run left.

from django.db import migrations, models, transaction

LOCK_TIMEOUT = "5s"
TABLE = '"payments_webhookevent"'
STATUS_VALID = "payments_webhook_status_valid"
RESOLVED_WHEN = "payments_webhook_resolved_when"
STATUSES = [
    ("received", "Received"),
    ("processed", "Processed"),
    ("ignored", "Ignored"),
    ("failed", "Failed"),
    ("resolved", "Resolved by an operator"),
]

FORWARD_SQL = [
    f'ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS "resolved_at" timestamp with time zone NULL',
    f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS \"resolved_by\" varchar(150) DEFAULT '' NOT NULL",
    f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS \"resolution_note\" text DEFAULT '' NOT NULL",
    f'ALTER TABLE {TABLE} DROP CONSTRAINT IF EXISTS "{STATUS_VALID}"',
    f'ALTER TABLE {TABLE} ADD CONSTRAINT "{STATUS_VALID}"'
    " CHECK (\"status\" IN ('received', 'processed', 'ignored', 'failed', 'resolved')) NOT VALID",
    f'ALTER TABLE {TABLE} DROP CONSTRAINT IF EXISTS "{RESOLVED_WHEN}"',
    f'ALTER TABLE {TABLE} ADD CONSTRAINT "{RESOLVED_WHEN}"'
    ' CHECK ((("resolved_at" IS NOT NULL AND "status" = \'resolved\' AND NOT ("resolution_note" = \'\'))'
    ' OR (NOT ("status" = \'resolved\') AND "resolved_at" IS NULL))) NOT VALID',
]
FORWARD_VALIDATE_SQL = [
    f'ALTER TABLE {TABLE} VALIDATE CONSTRAINT "{STATUS_VALID}"',
    f'ALTER TABLE {TABLE} VALIDATE CONSTRAINT "{RESOLVED_WHEN}"',
]
# Back to the release before: a resolved event is failed again (its resolution stays in the
# audit log), and the columns go. The events are under forced RLS (the owner too): the update
# sees every one in the system context, transaction-local.
BACKWARD_SQL = [
    "SELECT set_config('app.system_context', 'on', true)",
    f'ALTER TABLE {TABLE} DROP CONSTRAINT IF EXISTS "{RESOLVED_WHEN}"',
    f"UPDATE {TABLE} SET \"status\" = 'failed' WHERE \"status\" = 'resolved'",
    f'ALTER TABLE {TABLE} DROP CONSTRAINT IF EXISTS "{STATUS_VALID}"',
    f'ALTER TABLE {TABLE} ADD CONSTRAINT "{STATUS_VALID}"'
    " CHECK (\"status\" IN ('received', 'processed', 'ignored', 'failed')) NOT VALID",
    f'ALTER TABLE {TABLE} DROP COLUMN IF EXISTS "resolved_at"',
    f'ALTER TABLE {TABLE} DROP COLUMN IF EXISTS "resolved_by"',
    f'ALTER TABLE {TABLE} DROP COLUMN IF EXISTS "resolution_note"',
]
BACKWARD_VALIDATE_SQL = [f'ALTER TABLE {TABLE} VALIDATE CONSTRAINT "{STATUS_VALID}"']


def _run(connection, statements: list[str]) -> None:
    """`statements` in one transaction under LOCK_TIMEOUT: give up (and retry the deploy) rather
    than stall webhook deliveries behind a long transaction."""
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        for statement in statements:
            cursor.execute(statement)


def forwards(apps, schema_editor):
    _run(schema_editor.connection, FORWARD_SQL)
    _run(schema_editor.connection, FORWARD_VALIDATE_SQL)


def backwards(apps, schema_editor):
    _run(schema_editor.connection, BACKWARD_SQL)
    _run(schema_editor.connection, BACKWARD_VALIDATE_SQL)


class Migration(migrations.Migration):
    atomic = False  # the checks are validated in a transaction of their own

    dependencies = [
        ("payments", "0003_webhook_payout_outcome"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forwards, backwards)],
            state_operations=[
                migrations.AddField(
                    model_name="webhookevent",
                    name="resolved_at",
                    field=models.DateTimeField(blank=True, null=True),
                ),
                migrations.AddField(
                    model_name="webhookevent",
                    name="resolved_by",
                    field=models.CharField(blank=True, db_default="", default="", max_length=150),
                ),
                migrations.AddField(
                    model_name="webhookevent",
                    name="resolution_note",
                    field=models.TextField(blank=True, db_default="", default=""),
                ),
                migrations.AlterField(
                    model_name="webhookevent",
                    name="status",
                    field=models.CharField(choices=STATUSES, default="received", max_length=10),
                ),
                migrations.RemoveConstraint(model_name="webhookevent", name=STATUS_VALID),
                migrations.AddConstraint(
                    model_name="webhookevent",
                    constraint=models.CheckConstraint(
                        condition=models.Q(status__in=[value for value, _ in STATUSES]),
                        name=STATUS_VALID,
                    ),
                ),
                migrations.AddConstraint(
                    model_name="webhookevent",
                    constraint=models.CheckConstraint(
                        condition=(
                            models.Q(status="resolved", resolved_at__isnull=False) & ~models.Q(resolution_note="")
                        )
                        | (~models.Q(status="resolved") & models.Q(resolved_at__isnull=True)),
                        name=RESOLVED_WHEN,
                    ),
                ),
            ],
        ),
    ]
