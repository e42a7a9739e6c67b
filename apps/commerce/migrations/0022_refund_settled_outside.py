# A refund an operator paid back outside the provider (a bank transfer, say): status `settled`,
# with `settled_outside_at` and the operator's `settled_outside_note`. Two columns that change
# only the catalog (a nullable one; a NOT NULL one with a database default, kept: the release
# before this one inserts refunds without naming it while both run during a deploy). Re-adding
# the status check and adding the settled check scan the refunds (few rows) under an ACCESS
# EXCLUSIVE lock: give up (and retry the deploy) rather than stall webhooks behind a long
# transaction.

from django.db import migrations, models

STATUSES = [
    ("requested", "Requested"),
    ("submitted", "Submitted to the provider"),
    ("failed", "Failed"),
    ("not_needed", "Not needed"),
    ("settled", "Settled outside the provider"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("commerce", "0021_refund_provider_failures"),
    ]

    operations = [
        migrations.RunSQL("SET LOCAL lock_timeout = '5s'", migrations.RunSQL.noop),
        migrations.AddField(
            model_name="refund",
            name="settled_outside_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="refund",
            name="settled_outside_note",
            field=models.TextField(blank=True, db_default="", default=""),
        ),
        migrations.RemoveConstraint(model_name="refund", name="commerce_refund_status_valid"),
        migrations.AlterField(
            model_name="refund",
            name="status",
            field=models.CharField(choices=STATUSES, default="requested", max_length=10),
        ),
        migrations.AddConstraint(
            model_name="refund",
            constraint=models.CheckConstraint(
                condition=models.Q(status__in=[value for value, _ in STATUSES]),
                name="commerce_refund_status_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="refund",
            constraint=models.CheckConstraint(
                condition=models.Q(status="settled", settled_outside_at__isnull=False)
                | (~models.Q(status="settled") & models.Q(settled_outside_at__isnull=True)),
                name="commerce_refund_settled_when",
            ),
        ),
    ]
