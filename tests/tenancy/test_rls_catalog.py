"""Every table with a tenant_id column has RLS enabled and forced, with a policy.

This walks the live catalog, so a table added by any future migration that forgets
`EnableTenantRLS` fails here.
"""

import pytest
from django.conf import settings
from django.db import connection

pytestmark = pytest.mark.django_db


def test_every_tenant_table_has_enabled_forced_rls_and_a_policy():
    # given: the migrated schema
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
                   (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
            WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
            """
        )
        rows = cursor.fetchall()
    # then: there are tenant tables, and none lacks enabled+forced RLS with a policy
    assert {"tenancy_membership", "tenancy_apikey", "tenancy_auditlog"} <= {r[0] for r in rows}
    offenders = [name for name, enabled, forced, policies in rows if not (enabled and forced and policies)]
    assert offenders == []


def test_runtime_role_is_not_superuser_owner_or_bypassrls():
    runtime = settings.DATABASES["default"]["USER"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        user, superuser, bypass = cursor.fetchone()
        cursor.execute(
            """
            SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = current_schema() AND pg_get_userbyid(c.relowner) = current_user
            """
        )
        owned = cursor.fetchone()[0]
    assert user == runtime
    assert (superuser, bypass, owned) == (False, False, 0)
