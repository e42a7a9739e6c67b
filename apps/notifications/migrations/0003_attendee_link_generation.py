# Which of an attendee's signed links is current (`Attendee.link_generation`): every attendee starts
# at 0, the generation of the links already sent (they carry none), so those keep working until
# the attendee or the studio replaces them. `db_default` keeps the column's default in the
# database too: the attendee import's INSERT ... ON CONFLICT names its columns and leaves this one
# out, and so does code of the release before this one while both run during a deploy.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0002_photo_alerts"),
    ]

    operations = [
        # ADD COLUMN waits for an ACCESS EXCLUSIVE lock, and every attendee page, import and
        # fan-out queues behind a waiting ALTER: give up (and retry the deploy) rather than stall
        # them behind a long transaction. A constant default rewrites nothing; the CHECK (>= 0)
        # reads the table once, under that lock.
        migrations.RunSQL("SET LOCAL lock_timeout = '5s'", migrations.RunSQL.noop),
        migrations.AddField(
            model_name="attendee",
            name="link_generation",
            field=models.PositiveIntegerField(db_default=0, default=0),
        ),
    ]
