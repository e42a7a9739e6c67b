# Event slugs are stored lower-case since event_create lower-cases them, and the shop finds an
# event whatever case a link is typed in. This lowers the slugs of events created before that, so
# the shop finds those in any case too (their old links, exact or not, keep working: the lower-case
# fallback finds them). Left as they are: a slug whose lower-case form another event of the studio
# has or shares (which of the two would keep it is the studio's call), and one that would become
# reserved ("Cart"). Runs in the system context (event rows are under forced RLS).

from django.db import migrations

# The reserved slugs when this migration was written (apps.catalog.models.RESERVED_EVENT_SLUGS).
RESERVED = ["cart", "checkouts", "orders"]

LOWER_EVENT_SLUGS_SQL = """
UPDATE catalog_event AS e
   SET slug = lower(e.slug)
 WHERE e.slug <> lower(e.slug)
   AND lower(e.slug) <> ALL (%s)
   AND NOT EXISTS (
       SELECT 1 FROM catalog_event AS o
        WHERE o.tenant_id = e.tenant_id AND o.id <> e.id AND lower(o.slug) = lower(e.slug)
   )
"""


def lower_event_slugs_on(connection) -> int:
    """Lower what can be lowered (see above); returns how many slugs changed. In a transaction."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('app.system_context', 'on', true)")
        cursor.execute(LOWER_EVENT_SLUGS_SQL, [RESERVED])
        changed = cursor.rowcount
        cursor.execute("SELECT set_config('app.system_context', '', true)")
    return changed


def lower_event_slugs(apps, schema_editor):
    lower_event_slugs_on(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0006_photo_withdrawal"),
    ]

    operations = [
        # Not reversible in meaning (the old case is not kept), and nothing needs it back.
        migrations.RunPython(lower_event_slugs, migrations.RunPython.noop),
    ]
