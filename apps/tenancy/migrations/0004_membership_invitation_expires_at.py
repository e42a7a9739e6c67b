# Invitations expire (`MembershipInvitation.expires_at`, STUDIO_INVITATION_TTL_DAYS after they were
# last sent). The column's database default, now() + 14 days (the default TTL), serves writers
# that do not name it (the release before this one, during a deploy); STATEMENT_TIMESTAMP() is
# stable, so ADD COLUMN stores it once as the missing value and rewrites nothing. Existing
# invitations then get created_at + 14 days, the default TTL (system context: the table is under
# forced RLS): those sent more than 14 days ago are expired from now on.

import datetime

import django.db.models.expressions
import django.db.models.functions.datetime
from django.db import migrations, models

DEFAULT_TTL_DAYS = 14


def expire_from_creation(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT set_config('app.system_context', 'on', true)")
        cursor.execute(
            "UPDATE tenancy_membershipinvitation SET expires_at = created_at + make_interval(days => %s)",
            [DEFAULT_TTL_DAYS],
        )
        cursor.execute("SELECT set_config('app.system_context', '', true)")


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0003_membership_invitation_email"),
    ]

    operations = [
        # ALTER TABLE waits for an ACCESS EXCLUSIVE lock, and every members page, invitation and
        # answer queues behind a waiting ALTER: give up (and retry the deploy) rather than stall
        # them behind a long transaction. Invitations are a few rows per studio, so the backfill
        # and the plain CREATE INDEX (no CONCURRENTLY) hold that lock only briefly.
        migrations.RunSQL("SET LOCAL lock_timeout = '5s'", migrations.RunSQL.noop),
        migrations.AddField(
            model_name="membershipinvitation",
            name="expires_at",
            field=models.DateTimeField(
                db_default=django.db.models.expressions.CombinedExpression(
                    django.db.models.functions.datetime.Now(),
                    "+",
                    models.Value(datetime.timedelta(days=DEFAULT_TTL_DAYS)),
                )
            ),
        ),
        migrations.RunPython(expire_from_creation, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="membershipinvitation",
            index=models.Index(fields=["expires_at"], name="membership_invitation_expires"),
        ),
    ]
