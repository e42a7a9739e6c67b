# A refund a provider accepted and then could not complete (Stripe `refund.failed`):
# `Refund.provider_failed_at` records when the provider said so, and
# `Refund.failed_provider_refund_ids` the ids of a refund's attempts that failed before landing,
# so a failed attempt's late "succeeded" event is known for what it is. A nullable column and a
# NOT NULL column with a database default ('{}', kept: code of the release before this one,
# running while both do during a deploy, inserts refunds without naming it): both change only
# the catalog (no rewrite, no scan). Under lock_timeout: give up (and retry the deploy) rather
# than stall webhooks behind a long transaction.

import django.contrib.postgres.fields
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("commerce", "0020_refund_superseded_by"),
    ]

    operations = [
        migrations.RunSQL("SET LOCAL lock_timeout = '5s'", migrations.RunSQL.noop),
        migrations.AddField(
            model_name="refund",
            name="provider_failed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="refund",
            name="failed_provider_refund_ids",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.CharField(max_length=255), blank=True, db_default=[], default=list, size=None
            ),
        ),
    ]
