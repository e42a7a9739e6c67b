# When a provider reports that a refund it had accepted did not complete (Stripe `refund.failed`),
# `Refund.provider_failed_at` records it. A nullable column: no rewrite, no scan. The partial index
# of the refunds that landed and then failed (counted at every metrics scrape) is built
# CONCURRENTLY: refunds keep being written by webhooks meanwhile.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("commerce", "0020_refund_superseded_by"),
    ]

    operations = [
        migrations.AddField(
            model_name="refund",
            name="provider_failed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        AddIndexConcurrently(
            model_name="refund",
            index=models.Index(
                condition=models.Q(("landed_at__isnull", False), ("provider_failed_at__isnull", False)),
                fields=["provider_failed_at"],
                name="commerce_refund_failed_landed",
            ),
        ),
    ]
