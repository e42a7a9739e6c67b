"""Admin lists cost as many queries with 50 rows as with 5 (no query per row).

The audit log and announcements grow without bound, and an operator pages through them during
an incident: a query per row (a nullable foreign key Django does not join by itself, a
derived status computed row by row) made each page a hundred round trips."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.notifications.models import Announcement
from apps.tenancy.context import tenant_context
from apps.tenancy.services import audit_record
from tests.core.test_admin_money_guards import admin_client  # noqa: F401 - a fixture, used by name
from tests.factories.catalog import EventFactory
from tests.factories.ledger import LedgerAccountFactory
from tests.factories.tenancy import UserFactory

pytestmark = pytest.mark.django_db


def list_queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def audit_rows(tenant: Any, n: int) -> None:
    with tenant_context(tenant.pk):
        for i in range(n):
            audit_record(action="test.row", target_type="test", target_id=str(i))


def wallets(tenant: Any, n: int) -> None:
    for _ in range(n):
        LedgerAccountFactory(tenant=tenant, kind="wallet", owner=UserFactory())


def announcements(tenant: Any, n: int) -> None:
    event = EventFactory(tenant=tenant)
    with tenant_context(tenant.pk):
        for i in range(n):
            Announcement.objects.create(tenant=tenant, event=event, title=f"News {i}", body="Hello")


@pytest.mark.parametrize(
    ("url", "make_rows"),
    [
        ("/admin/tenancy/auditlog/", audit_rows),
        ("/admin/ledger/ledgeraccount/", wallets),
        ("/admin/notifications/announcement/", announcements),
    ],
    ids=["audit log", "ledger accounts", "announcements"],
)
def test_an_admin_list_costs_the_same_queries_for_5_and_50_rows(
    tenant_a: Any,
    admin_client: Client,  # noqa: F811
    url: str,
    make_rows: Callable[[Any, int], None],
) -> None:
    # given: 5 rows, then 50
    make_rows(tenant_a.org, 5)
    few = list_queries(admin_client, url)
    make_rows(tenant_a.org, 45)
    # when / then: the list page costs as many queries
    assert list_queries(admin_client, url) == few
