# A refused refund superseded by a later refund of its items names that refund
# (`Refund.superseded_by`), so the sale page and the admin tell it from one made moot by the whole
# payment coming back. A nullable column: no rewrite and no scan; the foreign key is checked
# against no row.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("commerce", "0019_refund_not_needed"),
    ]

    operations = [
        # ALTER TABLE waits for an ACCESS EXCLUSIVE lock, and webhooks queue behind a waiting
        # ALTER: give up (and retry the deploy) rather than stall them behind a long transaction.
        migrations.RunSQL("SET LOCAL lock_timeout = '5s'", migrations.RunSQL.noop),
        migrations.AddField(
            model_name="refund",
            name="superseded_by",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="commerce.refund",
            ),
        ),
    ]
