"""consume_once and @outbox_consumer: one effect per (consumer, message), atomic with the effect."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.db import connection

from apps.outbox.models import InboxEntry
from apps.outbox.routing import OutboxRouteConflict, register_route, resolve_route
from apps.outbox.services import consume_once
from apps.tenancy.context import tenant_context
from tests.outbox.conftest import effects
from tests.outbox.consumers import EFFECT_TASK, EFFECT_TOPIC, apply_effect

pytestmark = pytest.mark.django_db(transaction=True)


def test_second_delivery_of_a_message_is_not_first():
    message_id = uuid.uuid4()
    # when: the same consumer sees the message twice, and another consumer once
    with consume_once(consumer="a", message_id=message_id) as first:
        assert first is True
    with consume_once(consumer="a", message_id=message_id) as again:
        assert again is False
    with consume_once(consumer="b", message_id=message_id) as other:
        assert other is True
    # then: one inbox row per consumer
    assert sorted(InboxEntry.objects.values_list("consumer", flat=True)) == ["a", "b"]


def test_failed_effect_rolls_back_the_inbox_row_so_a_retry_applies_it():
    message_id = uuid.uuid4()
    # given: a first attempt whose effect fails
    with pytest.raises(RuntimeError), consume_once(consumer="a", message_id=message_id) as first:
        assert first
        raise RuntimeError("effect failed")
    # when / then: the retry is still the first successful one
    with consume_once(consumer="a", message_id=message_id) as retry:
        assert retry is True
    assert InboxEntry.objects.count() == 1


def waiting_on_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return bool(row) and row[0] == "Lock"


def test_concurrent_duplicate_waits_for_the_first_and_then_skips():
    # given: delivery 1 holds its inbox row uncommitted
    message_id = uuid.uuid4()
    inside = threading.Event()
    release = threading.Event()
    outcomes: dict[str, bool] = {}
    backends: dict[str, int] = {}

    def delivery(name: str, hold: bool) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                backends[name] = cursor.fetchone()[0]
            with consume_once(consumer="a", message_id=message_id) as first:
                outcomes[name] = first
                if hold:
                    inside.set()
                    release.wait(60)
        finally:
            connection.close()

    one = threading.Thread(target=delivery, args=("one", True))
    one.start()
    assert inside.wait(60)
    # when: delivery 2 arrives meanwhile (it blocks on the unique index), then 1 commits
    two = threading.Thread(target=delivery, args=("two", False))
    two.start()
    deadline = time.monotonic() + 60
    while not ("two" in backends and waiting_on_lock(backends["two"])):
        assert two.is_alive(), f"delivery 2 finished without waiting: {outcomes}"
        assert time.monotonic() < deadline, "delivery 2 never waited for delivery 1's inbox row"
        time.sleep(0.02)
    assert "two" not in outcomes
    release.set()
    one.join(60)
    two.join(60)
    # then: exactly one delivery applied the message
    assert outcomes == {"one": True, "two": False}


def test_decorated_consumer_applies_a_redelivered_message_once(effect_table, tenant_a):
    message_id = str(uuid.uuid4())
    # when: the consumer task runs twice for one message (eagerly, in this process)
    with tenant_context(tenant_a.org.pk):
        for _ in range(2):
            apply_effect.apply(kwargs={"message_id": message_id, "payload": {}}, task_id=message_id).get()
    # then: one effect and one inbox row
    assert [row[0] for row in effects()] == [message_id]
    assert list(InboxEntry.objects.values_list("consumer", flat=True)) == [EFFECT_TASK]


def test_registry_routes_topics_and_refuses_a_second_consumer(settings):
    assert resolve_route(EFFECT_TOPIC).task_name == EFFECT_TASK
    with pytest.raises(OutboxRouteConflict):
        register_route(EFFECT_TOPIC, "outboxtest.other")
    # settings.OUTBOX_ROUTES overrides the registry
    settings.OUTBOX_ROUTES = {EFFECT_TOPIC: {"task": "outboxtest.other", "queue": "default"}}
    route = resolve_route(EFFECT_TOPIC)
    assert (route.task_name, route.queue) == ("outboxtest.other", "default")
