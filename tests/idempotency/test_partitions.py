"""Day partitions of the key store: created ahead, dropped whole past retention, constrained.

Maintenance runs here around January 2020, far from the partitions the other tests use, and
every 2020 partition is dropped again afterwards.
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.apps import apps as django_apps
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connection, transaction

from apps.core.partitions import drop_partitions_before, list_partitions
from apps.idempotency.models import TABLE, IdempotencyKey
from apps.idempotency.services import idempotency_partitions_maintain, unique_index_name
from apps.tenancy.context import system_context, tenant_context

pytestmark = pytest.mark.django_db(transaction=True)

BASE = dt.datetime(2020, 1, 10, 12, 0, tzinfo=dt.UTC)
# The day this module was imported: the test database is migrated after it (pytest collects first).
IMPORTED_ON = dt.datetime.now(dt.UTC).date()


def _days(first: dt.date, last: dt.date) -> list[str]:
    names = []
    day = first
    while day <= last:
        names.append(f"{TABLE}_p{day:%Y%m%d}")
        day += dt.timedelta(days=1)
    return names


def _partitions_2020() -> list[str]:
    return [p.name for p in list_partitions(table=TABLE, interval="day") if p.start.year == 2020]


@pytest.fixture
def scratch_2020():
    yield
    drop_partitions_before(table=TABLE, interval="day", cutoff=dt.datetime(2021, 1, 1, tzinfo=dt.UTC))


def _row(tenant, *, at: dt.datetime, key: str | None = None, status: int = 201, caller: str = "user:1"):
    with tenant_context(tenant.pk):
        return IdempotencyKey.objects.create(
            tenant=tenant,
            caller=caller,
            key=key or str(uuid.uuid4()),
            fingerprint="0" * 64,
            method="POST",
            path="/api/v1/x",
            response_status=status,
            response_body=b"{}",
            response_content_type="application/json",
            created_at=at,
        )


def _row_count(partition: str) -> int:
    with system_context("tests: idempotency partition rows"), connection.cursor() as cursor:
        cursor.execute(f'SELECT count(*) FROM "{TABLE}" WHERE tableoid = %s::regclass', [partition])
        return cursor.fetchone()[0]


def test_partitions_are_created_ahead_with_rls_and_unique_index(scratch_2020, settings):
    # given: no partitions around 10 January 2020
    settings.IDEMPOTENCY_PARTITIONS_AHEAD_DAYS = 7
    assert _partitions_2020() == []
    # when: maintenance runs "on" 10 January 2020
    result = idempotency_partitions_maintain(now=BASE)
    # then: yesterday, today and seven days ahead exist, each with RLS and its unique index
    expected = _days(dt.date(2020, 1, 9), dt.date(2020, 1, 17))
    assert result.created == expected
    assert _partitions_2020() == expected
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = ANY(%s)", [expected]
        )
        assert sorted(cursor.fetchall()) == [(name, True, True) for name in expected]
        cursor.execute(
            "SELECT tablename FROM pg_indexes WHERE indexname = ANY(%s)", [[unique_index_name(n) for n in expected]]
        )
        assert sorted(row[0] for row in cursor.fetchall()) == expected
    # and: running it again changes nothing
    again = idempotency_partitions_maintain(now=BASE)
    assert (again.created, again.indexed, again.dropped) == ([], [], [])


def test_whole_partitions_past_retention_are_dropped_and_nothing_else(scratch_2020, tenant_a, settings):
    # given: partitions from 9 to 17 January 2020 and one row on the 9th, 15th and 16th
    settings.IDEMPOTENCY_RETENTION_HOURS = 72
    settings.IDEMPOTENCY_PARTITIONS_AHEAD_DAYS = 7
    idempotency_partitions_maintain(now=BASE)
    for day in (9, 15, 16):
        _row(tenant_a.org, at=dt.datetime(2020, 1, day, 23, 59, 59, tzinfo=dt.UTC))
    # when: maintenance runs on 19 January at 00:30 (retention cut-off: 16 January 00:30)
    result = idempotency_partitions_maintain(now=dt.datetime(2020, 1, 19, 0, 30, tzinfo=dt.UTC))
    # then: exactly the days that ended before the cut-off are dropped, whole
    assert result.dropped == _days(dt.date(2020, 1, 9), dt.date(2020, 1, 15))
    remaining = _partitions_2020()
    assert remaining[0] == f"{TABLE}_p20200116"
    # and: the day straddling the cut-off keeps its row (it may still hold keys within retention)
    assert _row_count(f"{TABLE}_p20200116") == 1
    # and: the current partitions of the real clock are untouched
    today = dt.datetime.now(dt.UTC)
    assert f"{TABLE}_p{today:%Y%m%d}" in [p.name for p in list_partitions(table=TABLE, interval="day")]


def test_retention_below_24_hours_is_refused_before_any_drop(scratch_2020, settings):
    # given: partitions around 10 January 2020, and a retention set below the floor
    idempotency_partitions_maintain(now=BASE)
    before = _partitions_2020()
    settings.IDEMPOTENCY_RETENTION_HOURS = 23
    # when: maintenance runs a month later
    with pytest.raises(ImproperlyConfigured, match="24 h floor"):
        idempotency_partitions_maintain(now=BASE + dt.timedelta(days=30))
    # then: nothing was dropped
    assert _partitions_2020() == before
    # and: the application refuses to start with that setting
    with pytest.raises(ImproperlyConfigured):
        django_apps.get_app_config("idempotency").ready()


def test_retention_of_exactly_24_hours_is_honoured(scratch_2020, settings):
    # given: partitions from 9 to 17 January 2020 and the minimum retention
    settings.IDEMPOTENCY_PARTITIONS_AHEAD_DAYS = 7
    idempotency_partitions_maintain(now=BASE)
    settings.IDEMPOTENCY_RETENTION_HOURS = 24
    # when: maintenance runs on 12 January 00:00 (cut-off: 11 January 00:00)
    result = idempotency_partitions_maintain(now=dt.datetime(2020, 1, 12, tzinfo=dt.UTC))
    # then: the 9th and 10th are gone, the 11th stays
    assert result.dropped == _days(dt.date(2020, 1, 9), dt.date(2020, 1, 10))
    assert _partitions_2020()[0] == f"{TABLE}_p20200111"


def test_partition_unique_index_refuses_a_second_row_for_a_key_on_one_day(tenant_a):
    # given: a key row stored today
    now = dt.datetime.now(dt.UTC)
    _row(tenant_a.org, at=now, key="dup")
    # when / then: a second row for (tenant, caller, key) on the same day is refused by Postgres
    with pytest.raises(IntegrityError), transaction.atomic():
        _row(tenant_a.org, at=now + dt.timedelta(microseconds=1), key="dup")


@pytest.mark.parametrize(("status", "key"), [(400, "k"), (500, "k"), (99, "k"), (201, "")])
def test_check_constraints_refuse_errors_and_empty_keys(tenant_a, status, key):
    # when / then: a 4xx/5xx outcome or an empty key cannot be stored at all
    with pytest.raises(IntegrityError), transaction.atomic():
        with tenant_context(tenant_a.org.pk):
            IdempotencyKey.objects.create(
                tenant=tenant_a.org,
                caller="user:1",
                key=key,
                fingerprint="0" * 64,
                method="POST",
                path="/api/v1/x",
                response_status=status,
                response_body=b"{}",
                response_content_type="application/json",
                created_at=dt.datetime.now(dt.UTC),
            )


def test_a_row_outside_every_partition_is_refused(tenant_a):
    # when / then: there is no catch-all partition; a write far in the future fails closed
    with pytest.raises(IntegrityError), transaction.atomic():
        _row(tenant_a.org, at=dt.datetime(2099, 1, 1, tzinfo=dt.UTC))


def test_fresh_database_has_partitions_for_yesterday_today_and_ahead(settings):
    # given: the test database, just migrated (post_migrate ensured the partitions), on a day
    # between this module's import and now (the same day unless the run crossed midnight)
    today = dt.datetime.now(dt.UTC).date()
    migrated_on = [IMPORTED_ON + dt.timedelta(days=n) for n in range((today - IMPORTED_ON).days + 1)]
    names = {p.name for p in list_partitions(table=TABLE, interval="day")}
    # then: yesterday, today and the configured days ahead are ready, each with its unique index
    ahead = dt.timedelta(days=settings.IDEMPOTENCY_PARTITIONS_AHEAD_DAYS)
    expected = [set(_days(day - dt.timedelta(days=1), day + ahead)) for day in migrated_on]
    assert any(day_expected <= names for day_expected in expected), (expected, names)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_indexes WHERE indexname = ANY(%s)", [[unique_index_name(n) for n in names]]
        )
        assert cursor.fetchone()[0] == len(names)
