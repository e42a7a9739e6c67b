# A second charge's refund (`duplicate_charge`) the provider reported failed after it had landed
# was kept `submitted` and landed, owed as an order's refund is: the shopper's order page then read
# a refunded order's items as a refund that did not reach them, and an operator could not retry
# it. Such a refund is `failed` now (`refund_apply_provider_failure`): no longer landed, its
# attempt's id with the failed ones, alerting and retried or settled as a refused refund is. This
# turns the ones recorded before into that (they leave `darkroom_refunds_failed_after_landing_total`
# for `darkroom_refunds{status="failed"}`). A handful of rows at most: one UPDATE, in system context
# (forced RLS), under lock_timeout (webhooks write refunds at any time). Nothing to undo.

from django.db import migrations

FAIL_OWED_SECOND_CHARGE_REFUNDS = """
UPDATE commerce_refund
   SET status = 'failed',
       landed_at = NULL,
       failed_provider_refund_ids = CASE
           WHEN provider_refund_id IS NULL THEN failed_provider_refund_ids
           ELSE array_append(failed_provider_refund_ids, provider_refund_id)
       END,
       provider_refund_id = NULL
 WHERE reason = 'duplicate_charge'
   AND status IN ('requested', 'submitted')
   AND landed_at IS NOT NULL
   AND provider_failed_at > landed_at
"""


def fail_owed_second_charge_refunds_on(connection) -> int:
    """Turn every second charge's refund still owed after it failed at the provider into a failed
    one; the count."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('app.system_context', 'on', true)")
        cursor.execute(FAIL_OWED_SECOND_CHARGE_REFUNDS)
        failed = cursor.rowcount
        cursor.execute("SELECT set_config('app.system_context', '', true)")
    return failed


def fail_owed_second_charge_refunds(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = '5s'")
    fail_owed_second_charge_refunds_on(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("commerce", "0026_refund_second_charge_unique"),
    ]

    operations = [
        migrations.RunPython(fail_owed_second_charge_refunds, migrations.RunPython.noop),
    ]
