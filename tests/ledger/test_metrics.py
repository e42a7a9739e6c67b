"""Ledger metrics: lag per partition, events applied, the leader of each partition."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.ledger.metrics import collect_ledger_metrics
from apps.ledger.models import LedgerDebitBuffer
from apps.ledger.partitioning import logical_partition
from apps.ledger.services import EntryIn, ledger_buffer_drain, ledger_entries_append
from apps.ops.metrics import render
from apps.tenancy.context import tenant_context
from tests.factories.tenancy import OrganizationFactory
from tests.ledger.conftest import make_account

pytestmark = pytest.mark.django_db(transaction=True)


def _samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in collect_ledger_metrics():
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_lag_applied_and_leader_per_partition(make_projector):
    # given: an event appended 30 seconds ago and not yet projected
    org = OrganizationFactory()
    account = make_account(org)
    entry = EntryIn(account_id=account.pk, amount_minor=5, currency="EUR", idempotency_key="m1")
    with tenant_context(org.pk):
        ledger_entries_append(tenant=org, entries=[entry], created_at=timezone.now() - dt.timedelta(seconds=30))
    partition = str(logical_partition(tenant_id=org.pk, tenant_slug=org.slug, client_id=""))
    before = _samples()
    # then: its partition lags by about that age, others by 0, and nobody leads
    assert before[("darkroom_ledger_projection_lag_seconds", (("partition", partition),))] >= 30
    assert sum(v for (name, _), v in before.items() if name == "darkroom_ledger_projection_lag_seconds") >= 30
    assert before[("darkroom_ledger_projection_leader", (("holder", "none"), ("partition", partition)))] == 1
    # when: a projector leads and catches up
    projector = make_projector(name="proj-test")
    projector.catch_up()
    after = _samples()
    # then: no lag, one event applied, and the leader is named
    assert after[("darkroom_ledger_projection_lag_seconds", (("partition", partition),))] == 0
    assert after[("darkroom_ledger_events_applied_total", (("partition", partition),))] == 1
    assert after[("darkroom_ledger_projection_leader", (("holder", "proj-test"), ("partition", partition)))] == 1


def test_metrics_endpoint_renders_ledger_families():
    text = render().decode()
    assert "darkroom_ledger_projection_lag_seconds" in text
    assert "darkroom_ledger_events_applied_total" in text
    assert "darkroom_ledger_buffer_pending" in text


@pytest.mark.django_db(transaction=True, databases=["default", "owner"])
def test_the_ledger_collector_reports_the_age_of_the_oldest_undrained_buffered_debit() -> None:
    # given: a debit accepted into the degraded-mode buffer 20 minutes ago, not drained
    org = OrganizationFactory()
    account = make_account(org)
    with tenant_context(org.pk):
        LedgerDebitBuffer.objects.create(
            tenant=org,
            account=account,
            amount_minor=5,
            currency=account.currency,
            idempotency_key="old",
            created_at=timezone.now() - dt.timedelta(minutes=20),
        )

    def gauge() -> float:
        [value] = [
            sample.value
            for family in collect_ledger_metrics()
            for sample in family.samples
            if sample.name == "darkroom_ledger_buffer_oldest_age_seconds"
        ]
        return value

    # when: /metrics is scraped
    # then: its age is reported
    assert 20 * 60 <= gauge() < 21 * 60
    # when: the drain moves it into the ledger
    assert ledger_buffer_drain(rate=0).read == 1
    # then: nothing waits
    assert gauge() == 0
