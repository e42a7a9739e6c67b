# The provider's ids of a refund's earlier attempts that failed at the provider before landing
# (`Refund.failed_provider_refund_ids`), so a failed attempt's late "succeeded" event is known for
# what it is. Adding a NOT NULL column with a constant default ('{}') changes only the catalog
# (no rewrite, no scan); Django then drops the default again. Under lock_timeout: give up (and
# retry the deploy) rather than stall webhooks behind a long transaction.

import django.contrib.postgres.fields
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("commerce", "0021_refund_provider_failed_at"),
    ]

    operations = [
        migrations.RunSQL("SET LOCAL lock_timeout = '5s'", migrations.RunSQL.noop),
        migrations.AddField(
            model_name="refund",
            name="failed_provider_refund_ids",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.CharField(max_length=255), blank=True, default=list, size=None
            ),
        ),
    ]
