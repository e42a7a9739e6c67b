"""acks_late + reject_on_worker_lost: a worker child killed mid-task → redelivery → one effect.

Runs a real `celery worker` (prefork, one child) in a subprocess. The consumer's first execution
writes its effect and SIGKILLs its own process before the transaction commits; the parent sees
the child die, rejects the message back to the queue (task_reject_on_worker_lost), a new child
runs it again, and the inbox plus the rolled-back first attempt leave exactly one effect.
"""

from __future__ import annotations

import signal
import subprocess

import pytest
from django.conf import settings

from apps.outbox.models import InboxEntry
from apps.outbox.relay import OutboxRelay
from apps.tenancy.context import system_context
from tests.fixtures import celery_worker_argv
from tests.outbox.conftest import effects, subprocess_env
from tests.outbox.consumers import EFFECT_TASK, deliveries, redis, rkey
from tests.outbox.test_relay import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_worker_killed_mid_task_redelivers_and_the_effect_happens_once(effect_table, tenant_a, publish):
    # given: a message whose consumer kills its worker process the first time it runs
    [message] = publish(tenant_id=tenant_a.org.pk, payload={"die_once": True})
    with system_context("test"):
        assert OutboxRelay(batch_size=10).run(once=True).published == 1
    # when: a real prefork worker consumes it
    worker = subprocess.Popen(
        celery_worker_argv(
            pool="prefork",
            queues="default",
            hostname=f"outboxtest-{message.id}",
            loglevel="INFO",
            extra=["--concurrency=1", "--include=tests.outbox.consumers"],
        ),
        env=subprocess_env(),
        cwd=settings.BASE_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        applied = wait_until(lambda: len(effects()) >= 1 and deliveries(str(message.id)) >= 2, timeout=180)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            _, stderr = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            _, stderr = worker.communicate()
    log = stderr.decode(errors="replace")
    assert applied, log[-4000:]
    # then: the first child really died mid-task, and the message came back and ran again
    died_pid = redis().get(rkey(f"died:{message.id}"))
    assert died_pid is not None
    assert "WorkerLostError" in log or "SIGKILL" in log
    assert deliveries(str(message.id)) == 2
    # ... and exactly one effect exists, written by a different child than the one that died
    rows = effects()
    assert len(rows) == 1
    assert rows[0][:2] == (str(message.id), tenant_a.org.pk)
    assert rows[0][3] != int(died_pid)
    assert InboxEntry.objects.filter(consumer=EFFECT_TASK, message_id=message.id).count() == 1
