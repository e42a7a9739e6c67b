"""`manage.py bench --smoke` end to end against this run's database and Redis: the benchmark
tooling (relay and worker subprocesses, projectors, gunicorn and Locust) works and the runs are
correct. Speed targets are NOT asserted here (they live in `make bench`); correctness is:
every outbox message delivered, the ledger projection equal to the ledger, no oversell and no
drift for either inventory strategy, no failed request, every announcement e-mail accepted once
by the mail service (Postmark's batch API and SMTP stand-ins), and every 2xx answer of the
idempotent-write bench (wrk against `POST /api/v1/ledger/debits`) one debit with its key rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from tests.fixtures import subprocess_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]


def test_bench_smoke_runs_every_benchmark_and_every_run_is_correct(tmp_path: Path) -> None:
    # when: the smoke profile of every benchmark runs (exit status 1 when a speed target is
    # missed, which the smoke profile does not judge)
    run = subprocess.run(
        [sys.executable, "manage.py", "bench", "--smoke", "--results-dir", str(tmp_path)],
        cwd=Path(settings.BASE_DIR),
        # (aiosmtpd's start-up wait for the announcement bench's SMTP stand-in is 5 s unless this
        # says otherwise: a bound for a loaded machine, it ends as soon as the server answers)
        env=subprocess_env(DJANGO_DEBUG="false", DARKROOM_LOG_LEVEL="WARNING", AIOSMTPD_CONTROLLER_TIMEOUT="60"),
        capture_output=True,
        timeout=840,
    )
    output = (run.stdout + run.stderr).decode()[-4000:]
    assert run.returncode in (0, 1), output
    # (a benchmark that raised, rather than missed a target, also exits 1, before the report)
    assert (tmp_path / "report.json").exists(), output
    report = json.loads((tmp_path / "report.json").read_text())
    runs = {r["command"]: r for r in report["runs"]}
    assert set(runs) == {"outbox_bench", "ledger_slo", "inventory_bench", "http_write_bench", "announcement_bench"}, (
        output
    )
    assert not any(r.get("skipped") for r in runs.values())

    # then: the outbox delivered every committed message, from producers that never failed
    outbox = runs["outbox_bench"]["result"]["results"]
    assert outbox["messages_committed"] == outbox["messages_offered"] > 0
    assert outbox["messages_delivered"] == outbox["messages_committed"]
    assert (outbox["messages_missing"], outbox["producer_errors"]) == (0, 0)

    # and: every appended debit was projected, to the minor unit
    consistency = runs["ledger_slo"]["result"]["consistency"]
    assert consistency["equal"] is True
    assert consistency["events"] == consistency["projected_events"] > 0
    assert consistency["debited_minor"] == consistency["projected_debits_minor"]

    # and: both strategies sold exactly the stock, nothing pending, no error, no failed request
    inventory = runs["inventory_bench"]["result"]
    for name, db_run in inventory["db"].items():
        books = db_run["books"]
        assert db_run["errors"] == 0, (name, db_run["error_samples"])
        assert (books["oversell"], books["drift"], books["pending"], books["stock"]) == (0, 0, 0, 0), (name, books)
        assert books["confirmed_units"] == books["initial"], (name, books)
        assert books["confirmed"] + books["rejected"] == db_run["orders"], (name, books)
    for name, http_run in inventory["http"].items():
        assert http_run["requests"] > 0 and http_run["failures"] == 0, (name, http_run)
        assert http_run["books"]["oversell"] == 0 and http_run["books"]["drift"] == 0, (name, http_run["books"])

    # and: under wrk, every 2xx answer was one debit with its Idempotency-Key and ledger key rows,
    # the only other debits being requests wrk left in flight when its clock ran out; no
    # non-2xx answer, no socket error, no key debited twice, no debit outside the runs
    write_books = runs["http_write_bench"]["result"]["correctness"]
    for name in ("warmup", "measured"):
        run_books = write_books[name]
        assert run_books["ok"] is True, (name, run_books)
        assert (run_books["non_2xx"], run_books["socket_errors"]) == (0, 0), (name, run_books)
        assert run_books["responses_2xx"] > 0, (name, run_books)
        assert run_books["responses_2xx"] <= run_books["debits"] <= run_books["requests_sent"], (name, run_books)
        assert run_books["debits"] == run_books["idempotency_keys"] == run_books["ledger_event_keys"], (name, run_books)
        assert run_books["idempotency_key_statuses"] == {"201": run_books["debits"]}, (name, run_books)
        assert (run_books["duplicate_debits"], run_books["debits_without_key_rows"]) == (0, 0), (name, run_books)
        assert run_books["unexpected_keys"] == 0, (name, run_books)
    assert write_books["debits_outside_runs"] == 0 and write_books["ok"] is True, write_books

    # and: each mailer's announcement reached every attendee once, through its mail service
    announcements = [r["result"]["results"] for r in report["runs"] if r["command"] == "announcement_bench"]
    assert sorted(a["mailer"] for a in announcements) == ["postmark", "smtp"], output
    for run_ in announcements:
        assert run_["status"] == "sent", run_
        assert run_["delivered"] == run_["accepted"] == run_["recipients"] > 0, run_
        assert run_["send_attempts"] == run_["recipients"], run_
