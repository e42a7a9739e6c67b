"""The relay, for real: Postgres claims, a Redis broker, a Celery worker, killed processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from celery.signals import before_task_publish
from django.conf import settings
from django.db import connection

from apps.core import polling
from apps.core.request_context import reset_request_id, set_request_id
from apps.outbox.models import InboxEntry, OutboxMessage
from apps.outbox.relay import OutboxRelay, relay_batch
from apps.tenancy.context import system_context
from config.celery_app import app as celery_app
from tests.outbox.conftest import effects, subprocess_env
from tests.outbox.consumers import EFFECT_TASK, deliveries

pytestmark = pytest.mark.django_db(transaction=True)


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    return polling.wait_until(predicate, timeout=timeout)


def queue_length(queue: str) -> int:
    with celery_app.connection_for_write() as conn:
        return int(conn.default_channel.client.llen(queue))


def statuses() -> dict[str, str]:
    with system_context("test"):
        return {str(m.id): m.status for m in OutboxMessage.objects.all()}


@pytest.fixture
def worker() -> Iterator[None]:
    with start_worker(
        celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=60, queues=["default"], loglevel="WARNING"
    ):
        yield
    connection.close()


@pytest.fixture
def published_task_ids() -> Iterator[list[tuple[str, str]]]:
    """(publishing thread, task id) for every task message sent while the test runs."""
    seen: list[tuple[str, str]] = []

    def record(headers: dict | None = None, **_: object) -> None:
        if headers and str(headers.get("task", "")).startswith("outboxtest."):
            seen.append((threading.current_thread().name, headers["id"]))

    before_task_publish.connect(record, weak=False)
    yield seen
    before_task_publish.disconnect(record)


def test_relay_delivers_to_the_consumer_in_the_messages_tenant_and_request(
    effect_table, tenant_a, publish, worker, published_task_ids
):
    # given: a committed message, published during request "req-77" of tenant A
    token = set_request_id("req-77")
    try:
        [message] = publish(tenant_id=tenant_a.org.pk)
    finally:
        reset_request_id(token)
    # when: the relay runs (system context) and a real worker consumes
    totals = OutboxRelay(batch_size=10).run(once=True)
    assert (totals.claimed, totals.published) == (1, 1)
    # then: the task id is the message id, and the effect ran for tenant A under "req-77"
    assert [task_id for _, task_id in published_task_ids] == [str(message.id)]
    assert wait_until(lambda: len(effects()) == 1)
    assert effects()[0][:3] == (str(message.id), tenant_a.org.pk, "req-77")
    assert statuses() == {str(message.id): "published"}


def test_a_consumer_retries_a_transient_database_error_and_applies_the_effect_once(
    effect_table, tenant_a, publish, worker
):
    # given: a message whose first delivery meets a database error (a restart, a failover)
    [message] = publish(tenant_id=tenant_a.org.pk, payload={"fail_once": True})
    # when: the relay publishes it and a real worker consumes
    assert OutboxRelay(batch_size=10).run(once=True).published == 1
    # then: the task ran again after a backoff, and the effect happened exactly once
    assert wait_until(lambda: len(effects()) == 1, timeout=120)
    assert deliveries(str(message.id)) == 2
    assert [row[0] for row in effects()] == [str(message.id)]


KILL_AFTER_PUBLISH = """
import os, signal, django
django.setup()
import tests.outbox.consumers  # registers the test topic, as tasks/*.py do in production
from apps.outbox import relay
def die(message_ids):
    os.kill(os.getpid(), signal.SIGKILL)  # after publishing, before marking and committing
relay.mark_published = die
from django.core.management import call_command
call_command("outbox_relay", "--once", "--batch-size", "50")
"""


def test_relay_killed_between_publish_and_mark_republishes_and_the_effect_happens_once(effect_table, tenant_a, publish):
    # given: five committed messages
    messages = publish(tenant_id=tenant_a.org.pk, count=5)
    ids = {str(m.id) for m in messages}
    # when: a relay process publishes them all and is SIGKILLed before it marks them
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_PUBLISH],
        env=subprocess_env(),
        cwd=settings.BASE_DIR,
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    assert queue_length("default") == 5
    # then: its transaction died with it: every message is still pending (and unlocked) ...
    assert set(statuses().values()) == {"pending"}
    # ... so the next relay publishes them again
    totals = OutboxRelay(batch_size=50).run(once=True)
    assert totals.published == 5
    assert set(statuses().values()) == {"published"}
    # when: a worker consumes both deliveries of every message
    with start_worker(
        celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=60, queues=["default"], loglevel="WARNING"
    ):
        assert wait_until(lambda: deliveries() == 10)
    connection.close()
    # then: each message was delivered twice and applied once
    assert all(deliveries(message_id) == 2 for message_id in ids)
    assert sorted(row[0] for row in effects()) == sorted(ids)
    assert InboxEntry.objects.filter(consumer=EFFECT_TASK).count() == 5


def test_two_relays_at_once_never_publish_a_claimed_message_twice(tenant_a, publish, published_task_ids):
    # given: 40 due messages
    messages = publish(tenant_id=tenant_a.org.pk, count=40)
    a_holding, b_published = threading.Event(), threading.Event()
    a_waited: list[bool] = []

    def hold_a_until_b_publishes(headers: dict | None = None, **_: object) -> None:
        # Relay A keeps its first claimed batch locked until relay B has claimed and published.
        name = threading.current_thread().name
        if name == "relay-b":
            b_published.set()
        elif name == "relay-a" and not a_waited:
            a_holding.set()
            a_waited.append(b_published.wait(60))

    before_task_publish.connect(hold_a_until_b_publishes, weak=False)
    errors: list[BaseException] = []

    def run_relay() -> None:
        try:
            OutboxRelay(batch_size=10).run(once=True)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    try:
        # when: two relays with their own connections run at the same time
        threads = [threading.Thread(target=run_relay, name=name) for name in ("relay-a", "relay-b")]
        threads[0].start()
        # B starts once A has claimed its first batch and holds it (publishing its first message)
        assert a_holding.wait(60) or errors, "relay A never published"
        threads[1].start()
        for thread in threads:
            thread.join(120)
    finally:
        before_task_publish.disconnect(hold_a_until_b_publishes)
    assert errors == []
    # then: B worked while A held its batch, and every message was published exactly once
    assert a_waited == [True]
    published = [task_id for _, task_id in published_task_ids]
    assert sorted(published) == sorted(str(m.id) for m in messages)
    assert {name for name, _ in published_task_ids} == {"relay-a", "relay-b"}
    assert set(statuses().values()) == {"published"}


def test_broker_outage_leaves_messages_pending_without_spending_attempts(tenant_a, publish):
    # given: committed messages and a broker that refuses connections
    publish(tenant_id=tenant_a.org.pk, count=3)
    down = Celery("broker-down", broker="redis://127.0.0.1:1/0", set_as_current=False)
    down.conf.task_publish_retry_policy = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1}
    # when: a relay batch tries to publish
    with system_context("outbox relay"):
        result = relay_batch(batch_size=10, app=down)
    # then: the batch stopped on the broker error and no message was charged an attempt
    assert result.broker_error and result.published == 0 and result.failed == 0
    with system_context("test"):
        rows = list(OutboxMessage.objects.values_list("status", "attempts"))
    assert rows == [("pending", 0)] * 3


def test_relay_batch_refuses_to_run_outside_the_system_context():
    with pytest.raises(RuntimeError, match="system_context"):
        relay_batch(batch_size=1)


def test_notify_wakes_a_waiting_relay_long_before_its_poll(tenant_a, publish, published_task_ids):
    # given: a relay loop that would poll only every ten minutes, waiting for work (it LISTENs
    # before its first batch, found nothing, and now waits)
    relay = OutboxRelay(batch_size=10, poll_interval=600)
    waiting = threading.Event()
    wait_for_work = relay._wait_for_work

    def wait_for_work_noted() -> None:
        waiting.set()
        wait_for_work()

    relay._wait_for_work = wait_for_work_noted  # type: ignore[method-assign]

    def run() -> None:
        try:
            relay.run()
        finally:
            connection.close()

    thread = threading.Thread(target=run, name="relay-loop")
    thread.start()
    try:
        assert waiting.wait(60), "the relay never reached its wait"
        # when: a message commits
        [message] = publish(tenant_id=tenant_a.org.pk)
        # then: the relay published it, woken by the NOTIFY sent at commit (far sooner than its poll)
        assert wait_until(lambda: statuses() == {str(message.id): "published"}, timeout=120)
    finally:
        relay.stop()
        thread.join(60)
    # and stop() ended the loop (without waiting for the poll)
    assert not thread.is_alive()


def test_relay_command_exits_cleanly_on_sigterm():
    # given: a running relay process (its "started" log line comes after its signal handlers)
    process = subprocess.Popen(
        [sys.executable, "manage.py", "outbox_relay", "--poll-interval", "0.2"],
        env=subprocess_env(),
        cwd=settings.BASE_DIR,
        stderr=subprocess.PIPE,
    )
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, b"")), daemon=True)
    reader.start()
    try:
        assert wait_until(lambda: any(b"outbox relay started" in line for line in lines), timeout=120)
        # when: it gets SIGTERM
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        reader.join(30)
    finally:
        if process.poll() is None:
            process.kill()
    # then: it finished its loop and exited 0, logging that it stopped
    log = b"".join(lines).decode(errors="replace")
    assert process.returncode == 0, log[-2000:]
    assert "outbox relay stopped" in log


def test_an_idle_relay_writes_no_progress_lines(tenant_a, publish, caplog):
    # given: two committed messages
    publish(tenant_id=tenant_a.org.pk, count=2)
    # when: a relay publishes them, then another finds nothing due (both logging at every chance)
    with caplog.at_level("INFO", logger="darkroom.outbox.relay"):
        OutboxRelay(log_interval=0, app=celery_app).run(once=True)
        busy = [r.__dict__.get("claimed") for r in caplog.records if r.getMessage() == "outbox relay progress"]
        caplog.clear()
        OutboxRelay(log_interval=0, app=celery_app).run(once=True)
        idle = [r.getMessage() for r in caplog.records]
    # then: the busy one told its progress, the idle one only that it started and stopped
    assert busy == [2]
    assert idle == ["outbox relay started", "outbox relay stopped"]
