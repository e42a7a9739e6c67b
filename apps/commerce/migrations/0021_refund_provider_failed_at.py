# When a provider reports that a refund it had accepted did not complete (Stripe `refund.failed`),
# `Refund.provider_failed_at` records it. A nullable column: no rewrite, no scan. Under
# lock_timeout: give up (and retry the deploy) rather than stall webhooks behind a long
# transaction.

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
    ]
