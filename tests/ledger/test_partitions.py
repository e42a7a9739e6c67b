"""Monthly physical partitions: created ahead, archived past retention, never losing unprojected events."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.core.partitions import list_partitions, partition_name
from apps.ledger.maintenance import ledger_archive, ledger_partitions_ensure, retention_cutoff
from apps.ledger.models import EVENT_TABLE, LedgerArchivedTotal
from apps.ledger.projection import projection_rebuild
from apps.ledger.services import EntryIn, ledger_entries_append
from apps.tenancy.context import system_context, tenant_context
from tasks.ledger import partitions_maintain
from tests.factories.tenancy import OrganizationFactory
from tests.ledger.conftest import balances_by_account, make_account, totals
from tests.ledger.test_projector import expected_from_events

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "owner"])

# When this module was imported: before the test database was migrated (pytest collects first).
IMPORTED_AT = timezone.now()


def _month(moment: dt.datetime, delta: int) -> dt.datetime:
    index = moment.year * 12 + moment.month - 1 + delta
    return dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=dt.UTC)


def _names() -> set[str]:
    return {p.name for p in list_partitions(table=EVENT_TABLE, interval="month", using="owner")}


def test_partitions_exist_from_last_month_to_three_months_ahead_after_migrate():
    # The database was migrated after this module was imported; a run that crosses the turn of a
    # month between the two finds the partitions made in the month of the migration.
    now = timezone.now()
    months = (
        [_month(IMPORTED_AT, 0)]
        if _month(now, 0) == _month(IMPORTED_AT, 0)
        else [_month(IMPORTED_AT, 0), _month(now, 0)]
    )
    names = _names()
    wanted = [
        {partition_name(EVENT_TABLE, _month(month, delta), "month") for delta in range(-1, 4)} for month in months
    ]
    assert any(month_wanted <= names for month_wanted in wanted), (wanted, names)


def test_beat_task_creates_partitions_further_ahead(settings):
    settings.LEDGER_PARTITIONS_AHEAD = 5
    partitions_maintain()
    assert partition_name(EVENT_TABLE, _month(timezone.now(), 5), "month") in _names()


def test_retention_cutoff_is_off_by_default_and_counts_whole_months(settings):
    assert retention_cutoff() is None
    settings.LEDGER_RETENTION_MONTHS = 12
    assert retention_cutoff(now=dt.datetime(2026, 3, 15, tzinfo=dt.UTC)) == dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


def _append_at(org, account, amount: int, when: dt.datetime, key: str, kind: str = "debit") -> None:
    entry = EntryIn(account_id=account.pk, amount_minor=amount, currency="EUR", idempotency_key=key, kind=kind)  # type: ignore[arg-type]
    with tenant_context(org.pk):
        ledger_entries_append(tenant=org, entries=[entry], created_at=when)


def test_archive_drops_only_fully_projected_months_and_rebuild_still_matches(make_projector, tmp_path):
    # given: two old months; month A's events are projected, month B's are not (yet)
    now = timezone.now()
    month_a, month_b = _month(now, -15), _month(now, -14)
    ledger_partitions_ensure(around=month_a, ahead=1)
    org = OrganizationFactory()
    account = make_account(org)
    _append_at(org, account, 500, month_a + dt.timedelta(days=2), "a-credit", kind="credit")
    for n in range(4):
        _append_at(org, account, 10 + n, month_a + dt.timedelta(days=3), f"a{n}")
    projector = make_projector()
    projector.catch_up()
    for n in range(3):
        _append_at(org, account, 100 + n, month_b + dt.timedelta(days=1), f"b{n}")
    _append_at(org, account, 7, now, "current")
    name_a = partition_name(EVENT_TABLE, month_a, "month")
    name_b = partition_name(EVENT_TABLE, month_b, "month")
    # when: archival runs with a cutoff after both months
    first = ledger_archive(cutoff=_month(now, -13), export_dir=str(tmp_path))
    # then: month A is folded, exported and dropped; month B, with unprojected events, is kept
    assert name_a in first.archived and name_b in first.kept_unprojected
    assert name_a not in _names() and name_b in _names()
    assert (tmp_path / f"{name_a}.csv").read_text().count("\n") == 1 + 5
    with system_context("test: archive"):
        archived = LedgerArchivedTotal.objects.get(account_id=account.pk)
    assert (archived.credits_minor, archived.debits_minor, archived.event_count) == (500, 46, 5)
    # when: the projector catches up and archival runs again
    projector.catch_up()
    second = ledger_archive(cutoff=_month(now, -13))
    # then: month B goes too; the live balance still counts every event ever appended
    assert name_b in second.archived and name_b not in _names()
    live = balances_by_account()
    assert live[account.pk] == (500, 46 + 303 + 7, 500 - 356, 9)
    # and: a rebuild from archived totals plus the remaining events gives the same balances
    projection_rebuild()
    assert balances_by_account() == live
    assert totals().event_count == 1
    assert expected_from_events()[account.pk][3] == 1
