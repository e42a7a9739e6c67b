"""outbox_publish: inside the caller's transaction only, atomic with it, NOTIFY at commit, RLS."""

from __future__ import annotations

import pytest
from django.db import ProgrammingError, transaction

from apps.core.request_context import reset_request_id, set_request_id
from apps.outbox.models import NOTIFY_CHANNEL, OutboxMessage
from apps.outbox.services import OutboxNotInTransaction, OutboxTenantMismatch, outbox_publish
from apps.tenancy.context import system_context, tenant_context

pytestmark = pytest.mark.django_db(transaction=True)


def _publish(tenant_id: int | None, **overrides: object) -> OutboxMessage:
    fields: dict = {
        "topic": "outboxtest.effect",
        "tenant_id": tenant_id,
        "aggregate_type": "checkout",
        "aggregate_id": 7,
        "payload": {"checkout_id": 7},
        **overrides,
    }
    return outbox_publish(**fields)


def test_publish_outside_a_transaction_is_refused_and_writes_nothing(tenant_a):
    # given: a tenant context but no transaction.atomic block
    with tenant_context(tenant_a.org.pk):
        # when / then: publishing is refused
        with pytest.raises(OutboxNotInTransaction):
            _publish(tenant_a.org.pk)
    with system_context("test"):
        assert OutboxMessage.objects.count() == 0


def test_message_rolls_back_with_the_callers_transaction(tenant_a):
    # given: a caller whose transaction fails after publishing
    with tenant_context(tenant_a.org.pk):
        with pytest.raises(RuntimeError, match="business failure"), transaction.atomic():
            _publish(tenant_a.org.pk)
            raise RuntimeError("business failure")
        # when: another caller commits
        with transaction.atomic():
            kept = _publish(tenant_a.org.pk)
    # then: only the committed message exists
    with system_context("test"):
        assert list(OutboxMessage.objects.values_list("id", flat=True)) == [kept.id]


def test_message_carries_tenant_aggregate_payload_and_request_id(tenant_a):
    # given: a request id in context
    token = set_request_id("req-outbox-1")
    try:
        with tenant_context(tenant_a.org.pk), transaction.atomic():
            message = _publish(tenant_a.org.pk, headers={"causation": "test"})
    finally:
        reset_request_id(token)
    # then: the stored row has everything the consumer needs
    with system_context("test"):
        row = OutboxMessage.objects.get(pk=message.pk)
    assert (row.tenant_id, row.topic, row.aggregate_type, row.aggregate_id) == (
        tenant_a.org.pk,
        "outboxtest.effect",
        "checkout",
        "7",
    )
    assert row.payload == {"checkout_id": 7}
    assert row.headers == {"causation": "test", "request_id": "req-outbox-1"}
    assert (row.status, row.attempts, row.published_at) == ("pending", 0, None)
    assert row.id.version == 7


def test_notify_reaches_listeners_at_commit_not_before(tenant_a, runtime_conn):
    # given: a listener on the outbox channel
    runtime_conn.autocommit = True
    runtime_conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
    with tenant_context(tenant_a.org.pk), transaction.atomic():
        _publish(tenant_a.org.pk)
        # then (before commit): nothing has been delivered
        assert list(runtime_conn.notifies(timeout=0.3)) == []
    # then (after commit): the relay channel got a notification
    received = list(runtime_conn.notifies(timeout=10, stop_after=1))
    assert [n.channel for n in received] == [NOTIFY_CHANNEL]


def test_rolled_back_publish_notifies_nobody(tenant_a, runtime_conn):
    runtime_conn.autocommit = True
    runtime_conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
    with tenant_context(tenant_a.org.pk):
        with pytest.raises(RuntimeError), transaction.atomic():
            _publish(tenant_a.org.pk)
            raise RuntimeError("abort")
    assert list(runtime_conn.notifies(timeout=0.5)) == []


def test_tenant_cannot_publish_for_another_tenant_or_read_its_messages(tenant_a, tenant_b):
    # given: a message of tenant A
    with tenant_context(tenant_a.org.pk), transaction.atomic():
        _publish(tenant_a.org.pk)
    with tenant_context(tenant_b.org.pk):
        # then: tenant B does not see it ...
        assert OutboxMessage.objects.count() == 0
        # ... and may not publish in A's name (service check, and RLS below it)
        with pytest.raises(OutboxTenantMismatch), transaction.atomic():
            _publish(tenant_a.org.pk)
        with pytest.raises(ProgrammingError), transaction.atomic():
            OutboxMessage.objects.create(
                tenant_id=tenant_a.org.pk, topic="t", aggregate_type="x", aggregate_id="1", payload={}
            )
    with tenant_context(tenant_a.org.pk):
        assert OutboxMessage.objects.count() == 1


def test_platform_message_can_be_published_from_any_context_and_read_by_the_system(tenant_a):
    # given: a platform (untenanted) message published while acting for tenant A
    with tenant_context(tenant_a.org.pk), transaction.atomic():
        message = _publish(None)
        # then: the tenant cannot read it back ...
        assert not OutboxMessage.objects.filter(pk=message.pk).exists()
    # ... and the system context (the relay) can
    with system_context("test"):
        assert OutboxMessage.objects.get(pk=message.pk).tenant_id is None


def test_status_constraints_refuse_inconsistent_rows():
    # a published message must have published_at, and an unknown status is refused
    from django.db import IntegrityError

    with system_context("test"):
        with pytest.raises(IntegrityError), transaction.atomic():
            OutboxMessage.objects.create(
                topic="t", aggregate_type="x", aggregate_id="1", payload={}, status="published"
            )
        with pytest.raises(IntegrityError), transaction.atomic():
            OutboxMessage.objects.create(topic="t", aggregate_type="x", aggregate_id="1", payload={}, status="sent")
