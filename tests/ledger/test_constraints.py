"""Every ledger constraint and bookkeeping trigger refuses bad data."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import IntegrityError, ProgrammingError, connection, transaction

from apps.ledger.models import LedgerCheckpoint, LedgerPartitionHead
from apps.tenancy.context import tenant_context
from tests.factories.tenancy import OrganizationFactory
from tests.ledger.conftest import balances_by_account, debit, make_account

pytestmark = pytest.mark.django_db(transaction=True)


def _raw(sql: str, params: list | None = None) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params or [])


@pytest.mark.parametrize(
    ("values", "constraint"),
    [(("usage", "eur"), "ledger_account_currency"), (("savings", "EUR"), "ledger_account_kind")],
)
def test_account_checks(values, constraint):
    org = OrganizationFactory()
    with tenant_context(org.pk), pytest.raises(IntegrityError, match=constraint):
        _raw(
            "INSERT INTO ledger_ledgeraccount (tenant_id, kind, currency, client_id, created_at) "
            "VALUES (%s, %s, %s, '', now())",
            [org.pk, *values],
        )


def test_partition_head_never_goes_back_and_is_never_deleted():
    org = OrganizationFactory()
    debit(org, make_account(org), 1)
    head = LedgerPartitionHead.objects.get()
    with pytest.raises(ProgrammingError, match="Cannot update"):
        _raw("UPDATE ledger_ledgerpartitionhead SET seq = seq - 1 WHERE partition = %s", [head.partition])
    with pytest.raises(ProgrammingError, match="Cannot delete"):
        _raw("DELETE FROM ledger_ledgerpartitionhead")
    with pytest.raises(IntegrityError, match="ledger_head_seq"):
        _raw("INSERT INTO ledger_ledgerpartitionhead (partition, seq) VALUES (99, -1)")


def test_checkpoint_epoch_never_goes_back_and_row_is_never_deleted(make_projector):
    make_projector().maintain()
    assert LedgerCheckpoint.objects.filter(epoch=1).count() == 4
    with pytest.raises(ProgrammingError, match="Cannot update"):
        _raw("UPDATE ledger_ledgercheckpoint SET epoch = epoch - 1")
    with pytest.raises(ProgrammingError, match="Cannot delete"):
        _raw("DELETE FROM ledger_ledgercheckpoint")


def test_balance_rows_are_unique_per_account_and_partition(make_projector):
    org = OrganizationFactory()
    account = make_account(org)
    debit(org, account, 1)
    make_projector().catch_up()
    with tenant_context(org.pk), pytest.raises(IntegrityError, match="ledger_balance_unique"):
        _raw(
            "INSERT INTO ledger_accountbalance (tenant_id, account_id, partition, credits_minor, debits_minor, "
            "balance_minor, event_count, last_seq, updated_at) "
            "SELECT tenant_id, account_id, partition, 0, 0, 0, 0, 0, now() FROM ledger_accountbalance"
        )


def test_rebuild_and_drain_commands(make_projector, settings, capsys):
    # given: a projected debit, and one buffered in degraded mode
    org = OrganizationFactory()
    account = make_account(org)
    debit(org, account, 4)
    make_projector().catch_up()
    settings.LEDGER_DEGRADED_MODE = "on"
    debit(org, account, 6, key="buffered")
    # when
    call_command("rebuild_projection")
    call_command("ledger_drain", "--rate", "0")
    out = capsys.readouterr().out
    # then: the rebuild replayed one event; the drain moved the buffered debit in
    assert '"events_replayed": 1' in out and '"created": 1' in out
    assert balances_by_account()[account.pk][3] == 1
