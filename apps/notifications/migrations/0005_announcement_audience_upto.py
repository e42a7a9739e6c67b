# The audience of an announcement is fixed when it is sent: the event's attendees up to this id.
# Announcements sent before it existed keep NULL (no bound), as their fan-outs ran so far.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0004_attendee_names_cleaned"),
    ]

    operations = [
        # ADD COLUMN waits for an ACCESS EXCLUSIVE lock, and the announcement pages and fan-outs
        # queue behind a waiting ALTER: give up (and retry the deploy) rather than stall them. A
        # nullable column without a default rewrites nothing.
        migrations.RunSQL("SET LOCAL lock_timeout = '5s'", migrations.RunSQL.noop),
        migrations.AddField(
            model_name="announcement",
            name="audience_upto",
            field=models.BigIntegerField(blank=True, null=True),
        ),
    ]
