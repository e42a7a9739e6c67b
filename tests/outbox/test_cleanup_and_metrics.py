"""Batched cleanup of published messages and old inbox rows; Prometheus outbox metrics."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from django.db import connection, transaction
from django.utils import timezone

from apps.outbox.models import InboxEntry, OutboxMessage
from apps.outbox.relay import OutboxRelay
from apps.outbox.requeue import REQUEUE_FLOWS
from apps.tenancy.context import system_context
from tasks.outbox import cleanup

pytestmark = pytest.mark.django_db(transaction=True)


def _message(status: str, age: dt.timedelta, tenant_id: int | None = None) -> OutboxMessage:
    created = timezone.now() - age
    return OutboxMessage.objects.create(
        tenant_id=tenant_id,
        topic="outboxtest.effect",
        aggregate_type="test",
        aggregate_id="1",
        payload={},
        status=status,
        created_at=created,
        next_attempt_at=created,
        published_at=created if status == "published" else None,
    )


def test_cleanup_deletes_old_published_messages_in_bounded_batches(settings, tenant_a):
    settings.OUTBOX_RETENTION_HOURS = 24
    settings.OUTBOX_CLEANUP_BATCH_SIZE = 2
    # given: old published rows (two tenants' worth), and rows cleanup must keep
    with system_context("test"):
        old = [_message("published", dt.timedelta(hours=30), tenant_a.org.pk) for _ in range(5)]
        old.append(_message("published", dt.timedelta(hours=30)))
        keep = [
            _message("published", dt.timedelta(hours=1), tenant_a.org.pk),
            _message("pending", dt.timedelta(hours=48), tenant_a.org.pk),
            _message("dead", dt.timedelta(hours=48)),
        ]
    deletes: list[str] = []

    def count_deletes(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if "DELETE FROM outbox_outboxmessage" in sql:
            deletes.append(sql)
        return execute(sql, params, many, context)

    # when: the beat task runs
    with connection.execute_wrapper(count_deletes):
        result = cleanup.apply().get()
    # then: only old published rows are gone, at most two rows per DELETE
    assert result["messages"] == len(old)
    assert len(deletes) == 4  # 2 + 2 + 2 + a final empty batch
    with system_context("test"):
        assert set(OutboxMessage.objects.values_list("id", flat=True)) == {m.id for m in keep}


def test_cleanup_deletes_inbox_entries_past_their_retention(settings):
    settings.OUTBOX_INBOX_RETENTION_HOURS = 48
    now = timezone.now()
    old = InboxEntry.objects.create(consumer="c", message_id=uuid.uuid4(), processed_at=now - dt.timedelta(hours=49))
    recent = InboxEntry.objects.create(consumer="c", message_id=uuid.uuid4(), processed_at=now - dt.timedelta(hours=47))
    assert cleanup.apply().get()["inbox"] == 1
    assert list(InboxEntry.objects.values_list("id", flat=True)) == [recent.id]
    assert old.id != recent.id


def _metric(body: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", body, re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


def test_metrics_report_backlog_oldest_age_dead_letters_and_published_total(client, tenant_a, tenant_b, publish):
    # given: pending messages of two tenants (the oldest ten minutes old), a dead letter and
    # three messages published by the relay
    before = _metric(client.get("/metrics").content.decode(), "darkroom_outbox_published_total")
    publish(tenant_id=tenant_a.org.pk, count=3)
    with system_context("outbox relay"):
        assert OutboxRelay(batch_size=10).run(once=True).published == 3
        _message("pending", dt.timedelta(minutes=10), tenant_a.org.pk)
        _message("pending", dt.timedelta(minutes=1), tenant_b.org.pk)
        _message("dead", dt.timedelta(minutes=1))
        # future retry: still part of the backlog
        OutboxMessage.objects.filter(status="pending").update(next_attempt_at=timezone.now() + dt.timedelta(hours=1))
    # when: Prometheus scrapes
    response = client.get("/metrics")
    # then: figures span all tenants (system context), the age is that of the oldest pending row
    assert response.status_code == 200
    body = response.content.decode()
    assert _metric(body, "darkroom_outbox_backlog") == 2
    assert 600 <= _metric(body, "darkroom_outbox_oldest_pending_age_seconds") < 3600
    assert _metric(body, "darkroom_outbox_dead_letters") == 1
    assert _metric(body, "darkroom_outbox_published_total") == before + 3


def test_metrics_report_zero_age_without_backlog(client):
    body = client.get("/metrics").content.decode()
    assert _metric(body, "darkroom_outbox_backlog") == 0
    assert _metric(body, "darkroom_outbox_oldest_pending_age_seconds") == 0


def test_a_requeue_sweep_counts_only_what_it_committed():
    from apps.outbox.requeue import requeue_stale
    from apps.outbox.selectors import requeued_counters

    # given: an old dead letter, which a sweep over dead letters would pick
    _message("dead", dt.timedelta(hours=1))
    before = requeued_counters().get("test_flow", 0)
    sweep = dict(queued_field="next_attempt_at", fallback_field="created_at", older_than_seconds=60, limit=10)
    # when: a sweep picks it but its transaction rolls back
    with system_context("test sweep"), pytest.raises(RuntimeError), transaction.atomic():
        rows = requeue_stale(
            OutboxMessage.objects.filter(status="dead"), requeue=lambda m: None, flow="test_flow", **sweep
        )
        assert len(rows) == 1
        raise RuntimeError("rolled back")
    # then: nothing was counted; a sweep that commits is counted
    assert requeued_counters().get("test_flow", 0) == before
    with system_context("test sweep"), transaction.atomic():
        requeue_stale(OutboxMessage.objects.filter(status="dead"), requeue=lambda m: None, flow="test_flow", **sweep)
    assert requeued_counters()["test_flow"] == before + 1


def test_a_requeue_that_fails_for_one_row_still_requeues_the_others(caplog):
    from apps.outbox.requeue import requeue_stale

    # given: two old dead letters; queueing the first one again fails
    first, second = _message("dead", dt.timedelta(hours=2)), _message("dead", dt.timedelta(hours=1))

    def requeue(message: OutboxMessage) -> None:
        OutboxMessage.objects.filter(pk=message.pk).update(last_error="touched")
        if message.pk == first.pk:
            raise RuntimeError("cannot queue this one")

    # when: the sweep runs
    with system_context("test sweep"), transaction.atomic():
        rows = requeue_stale(
            OutboxMessage.objects.filter(status="dead"),
            queued_field="next_attempt_at",
            fallback_field="created_at",
            older_than_seconds=60,
            limit=10,
            requeue=requeue,
            flow="test_flow",
        )
    # then: the second is requeued and stamped; the first's partial work is rolled back, it is
    # left for the next pass, and the failure is logged
    assert [row.pk for row in rows] == [second.pk]
    with system_context("test"):
        after = {m.pk: m for m in OutboxMessage.objects.filter(pk__in=[first.pk, second.pk])}
    assert (after[first.pk].last_error, after[first.pk].next_attempt_at) == ("", first.next_attempt_at)
    assert after[second.pk].last_error == "touched" and after[second.pk].next_attempt_at > second.next_attempt_at
    assert "lost message could not be asked for again" in caplog.text


def test_metrics_report_every_requeue_flow_even_before_it_counted(client):
    body = client.get("/metrics").content.decode()
    for flow in REQUEUE_FLOWS:
        assert re.search(rf'^darkroom_outbox_requeued_total\{{flow="{flow}"\}} \d', body, re.MULTILINE), flow
