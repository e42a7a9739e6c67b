"""`manage.py loadtest all` in a short profile against this run's database and Redis: the Locust
checkout scenario (retries with the same Idempotency-Key) and the webhook storm (20 % duplicate
deliveries) through a real gunicorn, relay and worker. Only correctness is asserted (every
check of the command: one checkout per key, one WebhookEvent per event id, effects exactly
once per paid checkout, credits net of fee); throughput figures belong to `make loadtest`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.fixtures import purge_queues, subprocess_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]


def test_loadtest_smoke_checkout_retries_and_webhook_storm_have_every_effect_once(tmp_path: Path) -> None:
    # given: this test worker's broker queues hold nothing earlier tests left (the command
    # refuses to start behind a backlog)
    purge_queues()
    # when: both scenarios run briefly (8 users, 6 s each, 120 paid checkouts for the storm)
    run = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "loadtest",
            "all",
            "--users=8",
            "--seconds=6",
            "--checkouts=120",
            f"--out-dir={tmp_path}",
        ],
        cwd=Path(settings.BASE_DIR),
        env=subprocess_env(DJANGO_DEBUG="false", DARKROOM_LOG_LEVEL="WARNING"),
        capture_output=True,
        timeout=540,
    )
    output = (run.stdout + run.stderr).decode()[-4000:]

    # then: every check of both scenarios passed, the key ones among them
    key_check = {"checkout": "one_checkout_per_key", "webhooks": "effects_once_per_paid_checkout"}
    for scenario, key in key_check.items():
        result = json.loads((tmp_path / f"loadtest_{scenario}.json").read_text())
        failed = [name for name, ok in result["checks"].items() if not ok]
        assert result["pass"] and not failed, (scenario, failed, result["summary"], output)
        assert {"locust_exit_0", key} <= set(result["checks"]), (scenario, result["checks"])
    assert run.returncode == 0, output
