# A second charge of a payment already paid is given back (`duplicate_charge` refunds), naming the
# charge (`Refund.payment_id`). A column with a database default (catalog only; kept: the release
# before this one inserts refunds without naming it while both run during a deploy) and a check
# that only a second charge's refund names a charge, which scans the refunds (few rows) under the
# table's lock: give up (and retry the deploy) rather than stall webhooks behind a long
# transaction. The unique keys follow in 0026, built without blocking writes.

from django.db import migrations, models

REASONS = [
    ("late_payment", "Paid after the reservation expired"),
    ("not_fulfillable", "Nothing left to deliver"),
    ("amount_mismatch", "Charged amount differs from the checkout"),
    ("studio", "Refunded by the studio"),
    ("photo_withdrawn", "A photo in the order was withdrawn"),
    ("studio_partial", "Items refunded by the studio"),
    ("provider_partial", "Part refunded at the payment provider"),
    ("duplicate_charge", "Charged twice: the second charge given back"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("commerce", "0024_shipping_postal_code_optional"),
    ]

    operations = [
        migrations.RunSQL("SET LOCAL lock_timeout = '5s'", migrations.RunSQL.noop),
        migrations.AddField(
            model_name="refund",
            name="payment_id",
            field=models.CharField(blank=True, db_default="", default="", max_length=255),
        ),
        migrations.AlterField(
            model_name="refund", name="reason", field=models.CharField(choices=REASONS, max_length=20)
        ),
        migrations.AddConstraint(
            model_name="refund",
            constraint=models.CheckConstraint(
                condition=(models.Q(reason="duplicate_charge") & ~models.Q(payment_id=""))
                | (~models.Q(reason="duplicate_charge") & models.Q(payment_id="")),
                name="commerce_refund_second_charge_named",
            ),
        ),
    ]
