"""The audit log is append-only for everyone: revoked privileges and a trigger."""

import pytest
from django.db import ProgrammingError, connections, transaction

from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from apps.tenancy.services import audit_record

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "owner"])


def test_audit_row_records_who_tenant_action_target_and_request(tenant_a):
    with tenant_context(tenant_a.org.pk):
        row = audit_record(action="thing.done", actor_user=tenant_a.owner, target_type="thing", target_id="7")
    assert (row.tenant_id, row.actor_user_id, row.action, row.target_id) == (
        tenant_a.org.pk,
        tenant_a.owner.pk,
        "thing.done",
        "7",
    )


def test_runtime_role_cannot_update_or_delete(tenant_a):
    with tenant_context(tenant_a.org.pk):
        row = audit_record(action="x")
        with pytest.raises(ProgrammingError, match="permission denied"):
            with transaction.atomic():
                AuditLog.objects.filter(pk=row.pk).update(action="tampered")
        with pytest.raises(ProgrammingError, match="permission denied"):
            with transaction.atomic():
                AuditLog.objects.filter(pk=row.pk).delete()


def test_trigger_refuses_even_the_owner(tenant_a):
    with tenant_context(tenant_a.org.pk):
        row = audit_record(action="x")
    owner = connections["owner"]
    with system_context("test: owner tamper attempt"):
        with pytest.raises(ProgrammingError, match="Cannot update or delete"):
            with transaction.atomic(using="owner"):
                AuditLog.objects.using("owner").filter(pk=row.pk).update(action="tampered")
        with pytest.raises(ProgrammingError, match="Cannot update or delete"):
            with transaction.atomic(using="owner"):
                with owner.cursor() as cursor:
                    cursor.execute("DELETE FROM tenancy_auditlog WHERE id = %s", [row.pk])
        assert AuditLog.objects.get(pk=row.pk).action == "x"


def test_system_context_entry_is_audited():
    with system_context("test: audited reason"):
        rows = list(AuditLog.objects.filter(action="system_context.enter").values_list("data", flat=True))
    assert {"reason": "test: audited reason"} in rows


def test_a_system_context_entry_rolled_back_with_its_transaction_is_audited_at_the_next_use():
    # given: the first use of a reason in this process, inside a transaction that rolls back
    # (its audit row goes with it)
    reason = "test: first use rolled back"

    class Abandoned(Exception):
        pass

    with pytest.raises(Abandoned), transaction.atomic():
        with system_context(reason):
            pass
        raise Abandoned
    # when: the process uses the reason again
    with system_context(reason):
        rows = list(AuditLog.objects.filter(action="system_context.enter", data__reason=reason))
    # then: the audit trail names it: a rolled-back row does not count as the process's entry
    assert len(rows) == 1
