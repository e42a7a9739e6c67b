"""`celery worker --loglevel` governs Celery's own loggers, although settings.LOGGING names the
`celery` logger: at WARNING a worker writes no line per task, at INFO it logs each task."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from django.conf import settings

from config.celery_app import app as celery_app
from tests.fixtures import celery_worker_argv, subprocess_env

pytestmark = pytest.mark.django_db(transaction=True)


def run_one_task(loglevel: str) -> str:
    """A real worker at `loglevel` runs one task; returns what it wrote."""
    queue = f"loglevel-{uuid.uuid4().hex[:8]}"
    result = celery_app.send_task("core.echo_context", queue=queue)
    worker = subprocess.Popen(
        celery_worker_argv(pool="solo", queues=queue, hostname=queue, loglevel=loglevel),
        env=subprocess_env(DARKROOM_LOG_LEVEL="INFO"),
        cwd=settings.BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        # (the bound covers the worker's start-up on a loaded machine; it returns with the result)
        assert result.get(timeout=120)["tenant_id"] is None
    finally:
        worker.terminate()
        try:
            output, _ = worker.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            output, _ = worker.communicate()
    return output.decode(errors="replace")


@pytest.mark.parametrize(("loglevel", "logged"), [("WARNING", False), ("INFO", True)])
def test_the_command_line_level_decides_whether_each_task_is_logged(loglevel: str, logged: bool) -> None:
    output = run_one_task(loglevel)
    assert ("core.echo_context" in output and "succeeded in" in output) is logged, output[-3000:]
