# Parts of a payment refunded in the provider's own dashboard are recorded (`provider_partial`
# refunds, several per payment), so the unique reason key leaves them out as it leaves out the
# studio's item refunds. The new partial unique index is built CONCURRENTLY under a temporary
# name, the old one dropped CONCURRENTLY, and the new one renamed to the old name: refunds are
# written by webhooks at any time, and no step blocks them.

from django.db import migrations, models

REASONS = [
    ("late_payment", "Paid after the reservation expired"),
    ("not_fulfillable", "Nothing left to deliver"),
    ("amount_mismatch", "Charged amount differs from the checkout"),
    ("studio", "Refunded by the studio"),
    ("photo_withdrawn", "A photo in the order was withdrawn"),
    ("studio_partial", "Items refunded by the studio"),
    ("provider_partial", "Part refunded at the payment provider"),
]

CREATE_NEW = """
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS commerce_refund_unique_reason_new
    ON commerce_refund (tenant_id, transaction_id, reason)
 WHERE NOT (reason IN ('studio_partial', 'provider_partial'))
"""
CREATE_OLD = """
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS commerce_refund_unique_reason
    ON commerce_refund (tenant_id, transaction_id, reason)
 WHERE NOT (reason = 'studio_partial')
"""


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("commerce", "0017_checkout_line_refund_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    CREATE_NEW, "DROP INDEX CONCURRENTLY IF EXISTS commerce_refund_unique_reason_new"
                ),
                migrations.RunSQL(
                    "DROP INDEX CONCURRENTLY IF EXISTS commerce_refund_unique_reason",
                    # Backwards: fails if a payment already has two parts refunded at the provider.
                    CREATE_OLD,
                ),
                migrations.RunSQL(
                    "ALTER INDEX commerce_refund_unique_reason_new RENAME TO commerce_refund_unique_reason",
                    "ALTER INDEX commerce_refund_unique_reason RENAME TO commerce_refund_unique_reason_new",
                ),
            ],
            state_operations=[
                migrations.RemoveConstraint(model_name="refund", name="commerce_refund_unique_reason"),
                migrations.AddConstraint(
                    model_name="refund",
                    constraint=models.UniqueConstraint(
                        condition=~models.Q(reason__in=["studio_partial", "provider_partial"]),
                        fields=("tenant", "transaction", "reason"),
                        name="commerce_refund_unique_reason",
                    ),
                ),
            ],
        ),
        migrations.AlterField(
            model_name="refund", name="reason", field=models.CharField(choices=REASONS, max_length=20)
        ),
    ]
