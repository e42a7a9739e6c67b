"""`outbox_bench` refuses to measure behind a backlog: its relay would publish the old messages
too. The refusal is a failed run, reported as JSON, with nothing started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction

from apps.outbox.models import OutboxMessage
from apps.outbox.services import outbox_publish
from apps.tenancy.context import system_context
from apps.tenancy.models import Organization

pytestmark = pytest.mark.django_db(transaction=True)


def test_outbox_bench_refuses_to_run_behind_more_than_max_backlog(tmp_path: Path) -> None:
    # given: three pending messages nobody relayed
    with system_context("test"), transaction.atomic():
        for n in range(3):
            outbox_publish(topic="outboxtest.effect", tenant_id=None, aggregate_type="t", aggregate_id=n, payload={})
    out = tmp_path / "outbox.json"
    # when: the bench may start behind at most two
    with pytest.raises(SystemExit) as exited:
        call_command("outbox_bench", "--smoke", "--max-backlog=2", "--json-out", str(out))
    # then: a failed run that says why, and nothing was started or published
    assert exited.value.code == 1
    result = json.loads(out.read_text())
    assert result["pass"] is False and "3 outbox messages are pending" in result["summary"], result
    with system_context("test"):
        assert OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING).count() == 3
    assert not Organization.objects.filter(slug="bench-outbox").exists()
