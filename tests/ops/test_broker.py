"""Broker queue depths: counted by the broker itself, exported on /metrics, and the load test's
refusal to start behind a backlog. Real Redis, in this test worker's own broker namespace."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command

from apps.ops.broker import broker_queue_depths
from apps.tenancy.models import Organization
from config.celery_app import app
from tests.fixtures import purge_queues

pytestmark = pytest.mark.django_db(transaction=True)


def _put(queue: str, count: int) -> None:
    """`count` task messages on `queue` (for a task no worker here knows; nothing consumes them)."""
    for n in range(count):
        app.send_task("ops.test_nobody_runs_this", args=[n], queue=queue)


@pytest.fixture
def clean_queues(settings) -> Iterator[list[str]]:
    names = list(settings.DARKROOM_QUEUES)
    purge_queues(names)
    yield names
    purge_queues(names)


def test_depths_count_the_messages_waiting_in_each_queue() -> None:
    # given: three messages on a fresh queue, and a queue nobody ever used
    used, unused = f"depth-{uuid.uuid4().hex[:8]}", f"unused-{uuid.uuid4().hex[:8]}"
    _put(used, 3)
    try:
        # when / then: the broker answers 3 and 0
        assert broker_queue_depths([used, unused]) == {used: 3, unused: 0}
    finally:
        purge_queues([used])
    assert broker_queue_depths([used]) == {used: 0}


def test_metrics_report_the_depth_of_every_darkroom_queue(client, clean_queues) -> None:
    # given: two messages waiting on `maintenance`
    _put("maintenance", 2)
    # when
    body = client.get("/metrics").content.decode()
    # then: one sample per queue, 2 for maintenance and 0 for the others
    samples = dict(re.findall(r'^darkroom_broker_queue_depth\{queue="([^"]+)"\} (\S+)$', body, re.M))
    assert set(samples) == set(clean_queues)
    assert float(samples["maintenance"]) == 2
    assert all(float(v) == 0 for name, v in samples.items() if name != "maintenance")


def test_loadtest_refuses_to_start_behind_a_backlog_and_creates_nothing(clean_queues) -> None:
    # given: three messages already waiting on `default`
    _put("default", 3)
    # when: the load test may start behind at most two
    with pytest.raises(CommandError) as refused:
        call_command("loadtest", "checkout", "--max-backlog=2", "--seconds=1")
    # then: it names what waits and how to clear it, and made no studio
    message = str(refused.value)
    assert "3 messages already wait" in message and "default 3" in message, message
    assert "celery -A config.celery_app purge" in message
    assert not Organization.objects.filter(slug__startswith="loadtest-").exists()
