# An event remembers that its studio chose to sell every photo as a download, so photos uploaded
# later get theirs at upload (apps/catalog/downloads.py). Studios that pressed "Sell every photo as a
# download" before it was remembered made that choice too: each event with a
# `catalog.downloads_offered` audit row (append-only; written only by that action until now) gets
# it on. One UPDATE, in system context (both tables are under forced RLS).

from django.db import migrations, models

REMEMBER_OFFERS = """
UPDATE catalog_event AS event
   SET downloads_for_new_photos = true
 WHERE NOT event.downloads_for_new_photos
   AND EXISTS (
       SELECT 1 FROM tenancy_auditlog AS audit
        WHERE audit.tenant_id = event.tenant_id
          AND audit.action = 'catalog.downloads_offered'
          AND audit.target_type = 'event'
          AND audit.target_id = event.id::text)
"""


def remember_offers_on(connection) -> int:
    """Turn the rule on for every event whose photos were offered as downloads; the count."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('app.system_context', 'on', true)")
        cursor.execute(REMEMBER_OFFERS)
        remembered = cursor.rowcount
        cursor.execute("SELECT set_config('app.system_context', '', true)")
    return remembered


def remember_offers(apps, schema_editor):
    remember_offers_on(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0008_product_sku_unique_whatever_case"),
        ("tenancy", "0005_membership_invitation_typed_email_restored"),
    ]

    operations = [
        migrations.AddField(
            model_name="event",
            name="downloads_for_new_photos",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.RunPython(remember_offers, migrations.RunPython.noop),
    ]
