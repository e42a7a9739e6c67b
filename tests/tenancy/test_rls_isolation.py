"""Tenant isolation as the runtime role, through the ORM and through raw SQL."""

import psycopg
import pytest
from django.db import IntegrityError, ProgrammingError, transaction

from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import ApiKey, Membership
from tests.factories.tenancy import MembershipFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def two_tenants(tenant_a, tenant_b):
    MembershipFactory(tenant=tenant_a.org, role="photographer")
    return tenant_a, tenant_b


def test_orm_no_tenant_reads_nothing(two_tenants):
    # when: nobody is acting for a tenant
    # then: every tenant table reads as empty
    assert Membership.objects.count() == 0
    assert ApiKey.objects.count() == 0


def test_orm_tenant_reads_only_its_rows(two_tenants):
    a, b = two_tenants
    with tenant_context(a.org.pk):
        assert set(Membership.objects.values_list("tenant_id", flat=True)) == {a.org.pk}
        assert Membership.objects.count() == 2
    with tenant_context(b.org.pk):
        assert Membership.objects.count() == 1
    with system_context("test: cross-tenant read"):
        assert Membership.objects.count() == 3


def test_orm_insert_into_other_tenant_fails_and_writes_nothing(two_tenants):
    a, b = two_tenants
    with tenant_context(a.org.pk):
        with pytest.raises(ProgrammingError, match="row-level security"):
            with transaction.atomic():
                Membership.objects.create(tenant=b.org, user=a.owner, role="staff")
    with system_context("test: verify"):
        assert Membership.objects.filter(tenant=b.org).count() == 1


def test_orm_update_cannot_reach_or_move_rows_across_tenants(two_tenants):
    a, b = two_tenants
    with tenant_context(a.org.pk):
        # B's rows are invisible, so an update touches none of them
        assert Membership.objects.filter(tenant=b.org).update(role="staff") == 0
        # moving A's row into B violates the policy's WITH CHECK
        with pytest.raises(ProgrammingError, match="row-level security"):
            with transaction.atomic():
                Membership.objects.filter(tenant=a.org).update(tenant=b.org)
    with system_context("test: verify"):
        assert Membership.objects.filter(tenant=b.org, role="owner").count() == 1


def test_raw_sql_isolation(two_tenants, runtime_conn: psycopg.Connection):
    a, b = two_tenants
    cur = runtime_conn.cursor()
    # no tenant set: nothing visible
    assert cur.execute("SELECT count(*) FROM tenancy_membership").fetchone()[0] == 0
    runtime_conn.rollback()
    # tenant A set for this transaction: only A's rows
    cur.execute("SELECT set_config('app.tenant_id', %s, true)", [str(a.org.pk)])
    tenants = {r[0] for r in cur.execute("SELECT tenant_id FROM tenancy_membership").fetchall()}
    assert tenants == {a.org.pk}
    # inserting a row for tenant B fails
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        cur.execute(
            "INSERT INTO tenancy_membership (tenant_id, user_id, role, created_at) VALUES (%s, %s, 'staff', now())",
            [b.org.pk, a.owner.pk],
        )
    runtime_conn.rollback()
    # updating B's rows changes nothing (they are invisible)
    cur.execute("SELECT set_config('app.tenant_id', %s, true)", [str(a.org.pk)])
    cur.execute("UPDATE tenancy_membership SET role = 'staff' WHERE tenant_id = %s", [b.org.pk])
    assert cur.rowcount == 0
    runtime_conn.commit()
    # after COMMIT the transaction-local setting is gone: nothing visible again
    assert cur.execute("SELECT current_setting('app.tenant_id', true)").fetchone()[0] == ""
    assert cur.execute("SELECT count(*) FROM tenancy_membership").fetchone()[0] == 0


def test_constraint_refuses_duplicate_membership(tenant_a):
    with tenant_context(tenant_a.org.pk):
        with pytest.raises(IntegrityError):
            with transaction.atomic():
                Membership.objects.create(tenant=tenant_a.org, user=tenant_a.owner, role="staff")
