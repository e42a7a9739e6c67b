"""The lost-message sweep of the flows without a waiting row (apps/outbox/unconsumed.py)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone
from django_redis import get_redis_connection

from apps.outbox.models import LOST_MESSAGE_TOPICS, InboxEntry, OutboxMessage
from apps.outbox.requeue import REQUEUE_FLOWS, REQUEUED_COUNTER_KEY
from apps.outbox.routing import lost_message_flows
from apps.outbox.selectors import counter_key
from apps.outbox.unconsumed import _FIND_UNCONSUMED, REQUEUES_HEADER, outbox_requeue_unconsumed
from apps.tenancy.context import system_context
from apps.tenancy.models import AuditLog
from config.celery_app import app as celery_app

pytestmark = pytest.mark.django_db(transaction=True)

SHIPPED, SHIPPED_CONSUMER, SHIPPED_FLOW = "checkout.shipped", "commerce.send_shipped_email", "shipping_emails"
HOUR = 3600.0


@pytest.fixture(autouse=True)
def _consumers_registered() -> None:
    celery_app.loader.import_default_modules()  # the consumers declare their flows on import


@pytest.fixture(autouse=True)
def _no_requeue_counters() -> None:
    get_redis_connection("default").delete(counter_key(REQUEUED_COUNTER_KEY))


def lost(
    tenant_id: int | None,
    *,
    topic: str = SHIPPED,
    published_ago: float = HOUR,
    created_ago: float | None = None,
    status: str = "published",
    requeues: int | None = None,
) -> OutboxMessage:
    """A message of `topic` published `published_ago` seconds ago whose consumer never ran."""
    now = timezone.now()
    created = now - dt.timedelta(seconds=created_ago if created_ago is not None else published_ago + 1)
    with system_context("test: a lost message"):
        return OutboxMessage.objects.create(
            tenant_id=tenant_id,
            topic=topic,
            aggregate_type="checkout",
            aggregate_id=str(uuid.uuid4()),
            payload={"checkout_id": str(uuid.uuid4())},
            headers={"request_id": "req-1", **({REQUEUES_HEADER: requeues} if requeues is not None else {})},
            status=status,
            created_at=created,
            next_attempt_at=created,
            published_at=now - dt.timedelta(seconds=published_ago) if status == "published" else None,
        )


def sweep(**overrides: Any) -> dict[str, int]:
    options: dict[str, Any] = {"older_than_seconds": 1800, "max_age_seconds": 24 * HOUR}
    options.update(max_requeues=5, limit=100)
    with system_context("test: lost-message sweep"):
        return outbox_requeue_unconsumed(**{**options, **overrides})


def state(message: OutboxMessage) -> tuple[str, Any]:
    with system_context("test: read"):
        row = OutboxMessage.objects.get(pk=message.pk)
    return row.status, row.headers.get(REQUEUES_HEADER)


def requeue_audits() -> list[tuple[int | None, str, str]]:
    with system_context("test: audit"):
        return list(
            AuditLog.objects.filter(action="outbox.requeue_lost")
            .order_by("id")
            .values_list("tenant_id", "actor_label", "target_id")
        )


def counted(flow: str) -> int:
    return int(get_redis_connection("default").hget(counter_key(REQUEUED_COUNTER_KEY), flow) or 0)


def test_the_flows_without_a_waiting_row_are_declared_indexed_and_reported():
    flows = {flow.flow: (flow.topic, flow.consumer) for flow in lost_message_flows()}
    assert flows == {
        "api_key_revocations": ("tenancy.api_key_revoked", "tenancy.mark_api_key_revoked"),
        "attendee_link_emails": ("attendee.link_replaced", "notifications.send_new_link"),
        "dropin_face_forgets": ("dropin.face_forget", "dropin.forget_face"),
        "member_invitations": ("tenancy.member_invited", "tenancy.send_member_invitation"),
        "order_link_emails": ("orders.links_requested", "commerce.send_order_links"),
        "password_reset_emails": ("tenancy.password_reset_requested", "tenancy.send_password_reset"),
        "photo_withdrawals": ("catalog.photo_withdrawn", "catalog.photo_withdrawn"),
        "refund_emails": ("checkout.refunded", "commerce.send_refunded_email"),
        "refund_failed_emails": ("refund.failed_after_landing", "commerce.send_refund_failed_email"),
        "refund_restocks": ("refund.restock_requested", "commerce.restock_refunded_prints"),
        "shipping_emails": (SHIPPED, SHIPPED_CONSUMER),
    }
    # every declared topic is in the partial index's predicate, and every flow is on /metrics
    assert {topic for topic, _ in flows.values()} <= set(LOST_MESSAGE_TOPICS)
    assert set(flows) <= set(REQUEUE_FLOWS)
    # each consumer is the task that consumes the topic (its name is the inbox row it records)
    assert all(consumer in celery_app.tasks for _, consumer in flows.values())


def test_a_published_message_its_consumer_never_recorded_is_sent_again_once_audited_and_counted(tenant_a):
    # given: a lost shipping e-mail message, and ones the sweep must leave alone
    owed = lost(tenant_a.org.pk)
    handled = lost(tenant_a.org.pk)
    InboxEntry.objects.create(consumer=SHIPPED_CONSUMER, message_id=handled.pk)
    other_consumer_only = lost(tenant_a.org.pk)
    InboxEntry.objects.create(consumer="someone.else", message_id=other_consumer_only.pk)
    recent = lost(tenant_a.org.pk, published_ago=60)
    too_old = lost(tenant_a.org.pk, created_ago=25 * HOUR)
    pending = lost(tenant_a.org.pk, status="pending")
    undeclared = lost(tenant_a.org.pk, topic="outboxtest.effect")
    # when: the sweep runs
    result = sweep()
    # then: the owed ones go back to pending (the relay publishes them under the same id), with
    # their first resend counted in their headers; the request id is kept
    assert result[SHIPPED_FLOW] == 2 and result["exhausted"] == 0
    assert state(owed) == ("pending", 1)
    assert state(other_consumer_only) == ("pending", 1)
    with system_context("test: read"):
        assert OutboxMessage.objects.get(pk=owed.pk).headers["request_id"] == "req-1"
    # and: the others are untouched
    for message in (handled, recent, too_old, undeclared):
        assert state(message) == ("published", None), message.pk
    assert state(pending) == ("pending", None)
    # and: one audit row per resend, in the message's tenant, and the flow's counter
    assert sorted(requeue_audits()) == sorted(
        [(tenant_a.org.pk, f"lost-message sweep: {SHIPPED_FLOW}", str(m.pk)) for m in (owed, other_consumer_only)]
    )
    assert counted(SHIPPED_FLOW) == 2
    # when: the sweep runs again before anything published them
    again = sweep()
    # then: nothing more
    assert again[SHIPPED_FLOW] == 0 and len(requeue_audits()) == 2


def test_a_message_is_sent_again_a_bounded_number_of_times(tenant_a, caplog):
    # given: a lost message already sent again twice, and one sent again as often as allowed
    twice = lost(tenant_a.org.pk, requeues=2)
    used_up = lost(tenant_a.org.pk, requeues=3)
    # when: the sweep allows three resends
    with caplog.at_level(logging.ERROR, logger="darkroom.outbox"):
        result = sweep(max_requeues=3)
    # then: the first goes a third time; the second stays, is counted and logged as an error
    assert (result[SHIPPED_FLOW], result["exhausted"]) == (1, 1)
    assert state(twice) == ("pending", 3)
    assert state(used_up) == ("published", 3)
    [record] = [r for r in caplog.records if "resends used up" in r.getMessage()]
    assert record.message_ids == [str(used_up.pk)]  # type: ignore[attr-defined]


def test_the_sweep_skips_a_message_another_transaction_holds(tenant_a):
    # given: a lost message that another transaction (a concurrent sweep, say) has locked
    message = lost(tenant_a.org.pk)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with system_context("test: holder"), transaction.atomic():
                list(OutboxMessage.objects.select_for_update().filter(pk=message.pk))
                locked.set()
                release.wait(120)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(60)
        # when: the sweep runs meanwhile
        during = sweep()
    finally:
        release.set()
        holder.join(60)
    # then: it did not wait for, or take, the locked message; the next pass does
    assert during[SHIPPED_FLOW] == 0
    assert sweep()[SHIPPED_FLOW] == 1
    assert state(message) == ("pending", 1)


def test_the_sweep_reads_by_its_partial_index():
    # given: a day of other topics' published messages (the sweep must not walk them)
    with system_context("test: traffic"), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO outbox_outboxmessage (id, topic, aggregate_type, aggregate_id, payload, headers, status,
                                              attempts, next_attempt_at, created_at, published_at, last_error)
            SELECT gen_random_uuid(), 'outboxtest.effect', 'test', n::text, '{}', '{}', 'published', 0,
                   now() - n * interval '4 seconds', now() - n * interval '4 seconds',
                   now() - n * interval '4 seconds', ''
              FROM generate_series(1, 20000) AS n
            """
        )
    with connections["owner"].cursor() as cursor:
        cursor.execute("ANALYZE outbox_outboxmessage")
    # when: the sweep's query is planned generically, as a prepared statement may be after five
    # runs (the index predicate is written in the query literally, so the planner can prove it
    # without the parameters' values)
    query = _FIND_UNCONSUMED
    for n, name in enumerate(("header", "topic", "born_after", "published_before", "consumer", "limit"), start=1):
        query = query.replace(f"%({name})s", f"${n}")
    with system_context("test: plan"), connection.cursor() as cursor, transaction.atomic():
        cursor.execute(f"PREPARE lost_message_sweep (text, text, timestamptz, timestamptz, text, int) AS {query}")
        cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(
            "EXPLAIN EXECUTE lost_message_sweep "
            f"('{REQUEUES_HEADER}', '{SHIPPED}', now() - interval '1 day', now(), '{SHIPPED_CONSUMER}', 500)"
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("DEALLOCATE lost_message_sweep")
    # then: it reads by the partial index of the declared topics
    assert "outbox_lost_message_sweep" in plan, plan
