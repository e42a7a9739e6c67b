"""Every pool child of a prefork worker writes its log records and console e-mails to the
worker's output, once each, also after its logging has been configured again in the child
(`django.setup()` through `app.loader.import_default_modules()`, as `outbox.requeue_unconsumed`
does). A console handler bound to the child's `sys.stderr`, which Celery has replaced with a
`LoggingProxy` there, sends each record back into the proxy, whose recursion guard drops it:
that child then writes nothing at all. The reconfiguration also must not take the command-line
`--loglevel` away from the child (settings.LOGGING's level is WARNING here, the worker's INFO)."""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import uuid

import pytest
from django.conf import settings

from config.celery_app import app as celery_app
from tests.fixtures import celery_worker_argv, subprocess_env
from tests.ops.worker_output_tasks import log_line, mail_subject

pytestmark = pytest.mark.django_db(transaction=True)

CHILDREN = 2
MARKS = 20
TASK_TIMEOUT_SECONDS = 90
CONSOLE_EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"


def _json_records(output: str) -> list[dict]:
    records = []
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def test_every_child_writes_each_log_record_and_console_email_once_after_a_logging_reconfiguration() -> None:
    # given: a prefork worker at INFO with two children, settings.LOGGING at WARNING, the console
    # mail backend, and the worker's output in one file
    run = uuid.uuid4().hex[:8]
    queue = f"worker-output-{run}"
    with tempfile.TemporaryFile() as output_file:
        worker = subprocess.Popen(
            celery_worker_argv(
                pool="prefork",
                queues=queue,
                hostname=queue,
                loglevel="INFO",
                extra=[f"--concurrency={CHILDREN}", "--include=tests.ops.worker_output_tasks"],
            ),
            env=subprocess_env(DARKROOM_LOG_LEVEL="WARNING", EMAIL_BACKEND=CONSOLE_EMAIL_BACKEND),
            cwd=settings.BASE_DIR,
            stdout=output_file,
            stderr=subprocess.STDOUT,
        )
        try:
            # when: each child configures its logging again, then both children log and send e-mails
            markers = [f"{run}-r{n:03d}" for n in range(CHILDREN)] + [f"{run}-m{n:03d}" for n in range(MARKS)]
            results = [
                celery_app.send_task(
                    "worker_output.reconfigure_then_mark",
                    args=[marker],
                    kwargs={"barrier": run, "parties": CHILDREN},
                    queue=queue,
                )
                for marker in markers[:CHILDREN]
            ]
            results += [celery_app.send_task("worker_output.mark", args=[m], queue=queue) for m in markers[CHILDREN:]]
            for result in results:
                result.get(timeout=TASK_TIMEOUT_SECONDS)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        output_file.seek(0)
        output = output_file.read().decode(errors="replace")

    # then: every marker's log record is in the output once, as a JSON line, and its e-mail once
    logged = [
        record["message"] for record in _json_records(output) if record.get("logger") == "darkroom.tests.worker_output"
    ]
    counts = {
        marker: (logged.count(log_line(marker)), output.count(f"Subject: {mail_subject(marker)}")) for marker in markers
    }
    missing_or_repeated = {marker: count for marker, count in counts.items() if count != (1, 1)}
    assert missing_or_repeated == {}, f"(log records, e-mails) per marker: {missing_or_repeated}\n{output[-4000:]}"
