# Invitations made before `MembershipInvitation.email` was kept (0003) have it blank, and the
# studio's lists show the account's current address for them: an address the account changed to
# since, which is not the studio's to see. The address the studio typed is in the invitation's
# audit row (`membership.invite`, `data.email`, normalised as the column is, `pending` true for an
# invitation), which is append-only: each blank invitation takes the address of its newest one.
# An invitation without such a row keeps the fallback. Invitations are a few rows per studio: one
# UPDATE, in system context (both tables are under forced RLS).

from django.db import migrations

RESTORE_TYPED_EMAIL = """
UPDATE tenancy_membershipinvitation AS invitation
   SET email = typed.email
  FROM (
        SELECT DISTINCT ON (audit.tenant_id, audit.target_id)
               audit.tenant_id, audit.target_id, audit.data ->> 'email' AS email
          FROM tenancy_auditlog AS audit
         WHERE audit.action = 'membership.invite'
           AND audit.target_type = 'user'
           AND audit.data ->> 'pending' = 'true'
           AND coalesce(audit.data ->> 'email', '') <> ''
           AND length(audit.data ->> 'email') <= 254
         ORDER BY audit.tenant_id, audit.target_id, audit.created_at DESC, audit.id DESC
       ) AS typed
 WHERE invitation.email = ''
   AND typed.tenant_id = invitation.tenant_id
   AND typed.target_id = invitation.user_id::text
"""


def restore_typed_email_on(connection) -> int:
    """Fill every blank invitation address from its newest invitation audit row; the count."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('app.system_context', 'on', true)")
        cursor.execute(RESTORE_TYPED_EMAIL)
        restored = cursor.rowcount
        cursor.execute("SELECT set_config('app.system_context', '', true)")
    return restored


def restore_typed_email(apps, schema_editor):
    restore_typed_email_on(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0004_membership_invitation_expires_at"),
    ]

    operations = [
        migrations.RunPython(restore_typed_email, migrations.RunPython.noop),
    ]
