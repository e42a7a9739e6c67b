"""Admin lists cost as many queries with 50 rows as with 5 (no query per row).

The audit log and announcements grow without bound, and an operator pages through them during
an incident: a query per row (a nullable foreign key Django does not join by itself, a
derived status computed row by row) made each page a hundred round trips."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.commerce.models import Checkout, Entitlement, Transaction
from apps.ledger.projection import projection_rebuild
from apps.notifications.models import Announcement
from apps.notifications.services import announcement_fanout
from apps.payouts.services import payout_batch_run
from apps.tenancy.context import tenant_context
from apps.tenancy.services import audit_record
from tests.core.test_admin_money_guards import admin_client  # noqa: F401 - a fixture, used by name
from tests.factories.catalog import EventFactory, PhotoFactory
from tests.factories.ledger import LedgerAccountFactory
from tests.factories.tenancy import UserFactory
from tests.notifications.helpers import event_with_attendees, sent_announcement
from tests.payouts.helpers import make_wallet

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


def deliveries(tenant: Any, n: int) -> None:
    """An announcement to `n` more attendees, fanned out: its deliveries (outside a transaction)."""
    event, _ = event_with_attendees(tenant, consenting=n)
    announcement = sent_announcement(tenant, event)
    with tenant_context(tenant.pk):
        announcement_fanout(announcement_id=announcement.pk)


def payouts(tenant: Any, n: int) -> None:
    """A payout batch paying `n` more wallets (outside a transaction)."""
    for _ in range(n):
        make_wallet(tenant, credited=5000)
    projection_rebuild()
    assert len(payout_batch_run(trigger="test").payout_ids) == n


def entitlements(tenant: Any, n: int) -> None:
    """`n` more photo entitlements, each to a photo of its own, of one paid checkout (its rows
    made directly: the list reads nothing else)."""
    with tenant_context(tenant.pk):
        checkout = Checkout.objects.create(
            tenant=tenant,
            email="ann@example.test",
            provider="sandbox",
            status=Checkout.Status.PAID,
            currency="EUR",
            amount_minor=900 * n,
            expires_at=timezone.now() + timedelta(hours=1),
        )
        txn = Transaction.objects.create(
            tenant=tenant, checkout=checkout, provider="sandbox", amount_minor=900 * n, currency="EUR"
        )
        event = EventFactory(tenant=tenant)
        for _ in range(n):
            Entitlement.objects.create(
                tenant=tenant,
                transaction=txn,
                checkout=checkout,
                scope=Entitlement.Scope.PHOTO,
                event=event,
                photo=PhotoFactory(event=event),
                email=checkout.email,
                granted_at=timezone.now(),
            )


# Lists whose rows are made outside a transaction (a fan-out, a payout batch).
COMMITTED = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("url", "make_rows"),
    [
        ("/admin/tenancy/auditlog/", audit_rows),
        ("/admin/ledger/ledgeraccount/", wallets),
        ("/admin/notifications/announcement/", announcements),
        pytest.param("/admin/notifications/announcementdelivery/", deliveries, marks=COMMITTED),
        pytest.param("/admin/payouts/payout/", payouts, marks=COMMITTED),
        ("/admin/commerce/entitlement/", entitlements),
    ],
    ids=["audit log", "ledger accounts", "announcements", "announcement deliveries", "payouts", "entitlements"],
)
def test_an_admin_list_costs_the_same_queries_for_5_and_50_rows(
    tenant_a: Any,
    admin_client: Client,  # noqa: F811
    url: str,
    make_rows: Callable[[Any, int], None],
) -> None:
    # given: 5 rows, then 50
    make_rows(tenant_a.org, 5)
    list_queries(admin_client, url)  # warm: a process's first use of a system context is audited once
    few = list_queries(admin_client, url)
    make_rows(tenant_a.org, 45)
    # when / then: the list page costs as many queries
    assert list_queries(admin_client, url) == few
