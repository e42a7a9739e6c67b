# Studio refunds of some items of an order: a line names the refund that gives its money back
# (`CheckoutLine.refund`), several `studio_partial` refunds may exist per payment (the unique
# reason key leaves them out), and a refund records when it landed (`Refund.landed_at`).
# Refunds (not refused ones) of payments already refunded get their transaction's refund time
# (system context: refund rows are under forced RLS).

import django.db.models.deletion
from django.db import migrations, models

BACKFILL_LANDED_SQL = """
UPDATE commerce_refund AS r
   SET landed_at = t.refunded_at
  FROM commerce_transaction AS t
 WHERE t.id = r.transaction_id AND t.refunded_at IS NOT NULL AND r.landed_at IS NULL
   AND r.status <> 'failed'
"""


def backfill_landed(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT set_config('app.system_context', 'on', true)")
        cursor.execute(BACKFILL_LANDED_SQL)
        cursor.execute("SELECT set_config('app.system_context', '', true)")


REASONS = [
    ("late_payment", "Paid after the reservation expired"),
    ("not_fulfillable", "Nothing left to deliver"),
    ("amount_mismatch", "Charged amount differs from the checkout"),
    ("studio", "Refunded by the studio"),
    ("photo_withdrawn", "A photo in the order was withdrawn"),
    ("studio_partial", "Items refunded by the studio"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("commerce", "0014_transaction_payment_id_index"),
    ]

    operations = [
        # ALTER TABLE on the checkout lines waits for an ACCESS EXCLUSIVE lock, and every
        # checkout queues behind a waiting ALTER: give up (and retry the deploy) rather than
        # stall the shop behind a long transaction. Nothing here scans a table; the lines'
        # index is built concurrently (0017).
        migrations.RunSQL("SET LOCAL lock_timeout = '5s'", migrations.RunSQL.noop),
        migrations.RemoveConstraint(model_name="refund", name="commerce_refund_unique_reason"),
        migrations.AddConstraint(
            model_name="refund",
            constraint=models.UniqueConstraint(
                condition=~models.Q(reason="studio_partial"),
                fields=("tenant", "transaction", "reason"),
                name="commerce_refund_unique_reason",
            ),
        ),
        migrations.AlterField(
            model_name="refund", name="reason", field=models.CharField(choices=REASONS, max_length=20)
        ),
        migrations.AddField(model_name="refund", name="landed_at", field=models.DateTimeField(blank=True, null=True)),
        migrations.AddField(
            model_name="checkoutline",
            name="refund",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="lines",
                to="commerce.refund",
            ),
        ),
        migrations.RunPython(backfill_landed, migrations.RunPython.noop),
    ]
