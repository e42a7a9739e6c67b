"""Ledger history is append-only for everyone: revoked privileges (runtime) and triggers (owner)."""

from __future__ import annotations

import pytest
from django.db import ProgrammingError, connections, transaction

from apps.core.partitions import list_partitions
from apps.ledger.maintenance import current_partition_name
from apps.ledger.models import EVENT_TABLE
from apps.tenancy.context import system_context, tenant_context
from tests.factories.tenancy import OrganizationFactory
from tests.ledger.conftest import debit, make_account

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "owner"])

TAMPER = {
    "ledger_ledgerevent": ["UPDATE ledger_ledgerevent SET amount_minor = 1", "DELETE FROM ledger_ledgerevent"],
    "ledger_ledgereventkey": [
        "UPDATE ledger_ledgereventkey SET idempotency_key = 'x'",
        "DELETE FROM ledger_ledgereventkey",
    ],
}


@pytest.fixture
def history():
    org = OrganizationFactory()
    account = make_account(org)
    debit(org, account, 42, key="k1")
    return org


@pytest.mark.parametrize(("table", "statement"), [(t, s) for t, ss in TAMPER.items() for s in ss])
def test_runtime_role_may_not_update_or_delete(history, table, statement):
    with tenant_context(history.pk), pytest.raises(ProgrammingError, match="permission denied"):
        with transaction.atomic(), connections["default"].cursor() as cursor:
            cursor.execute(statement)


@pytest.mark.parametrize("table", ["ledger_ledgerevent", "ledger_ledgereventkey", "ledger_ledgerdebitbuffer"])
def test_runtime_role_may_not_truncate(history, table):
    with pytest.raises(ProgrammingError, match="permission denied"):
        with transaction.atomic(), connections["default"].cursor() as cursor:
            cursor.execute(f"TRUNCATE {table}")


@pytest.mark.parametrize(("table", "statement"), [(t, s) for t, ss in TAMPER.items() for s in ss])
def test_trigger_refuses_even_the_owner(history, table, statement):
    with system_context("test: owner tamper attempt"), pytest.raises(ProgrammingError, match="Cannot update or delete"):
        with transaction.atomic(using="owner"), connections["owner"].cursor() as cursor:
            cursor.execute(statement)
    with tenant_context(history.pk), connections["default"].cursor() as cursor:
        cursor.execute("SELECT amount_minor FROM ledger_ledgerevent")
        assert cursor.fetchall() == [(42,)]


def test_trigger_also_guards_the_monthly_partition_itself(history):
    # given: the physical partition that holds this month's event
    name = current_partition_name()
    assert name in {p.name for p in list_partitions(table=EVENT_TABLE, interval="month", using="owner")}
    # when / then: the owner deleting from the partition directly is refused as well
    with system_context("test: owner tamper attempt"), pytest.raises(ProgrammingError, match="Cannot update or delete"):
        with transaction.atomic(using="owner"), connections["owner"].cursor() as cursor:
            cursor.execute(f'DELETE FROM "{name}"')
