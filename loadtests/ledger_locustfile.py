"""Locust: integrators posting usage debits over HTTP, one at a time and in batches.

Each simulated integrator creates its own usage account (POST /api/v1/ledger/accounts), then
posts single debits (POST /api/v1/ledger/debits) and batches (POST /api/v1/ledger/debits/batch,
LEDGER_LOCUST_BATCH items, each with its own idempotency_key), every request with a fresh
Idempotency-Key, and now and then reads its projected balance. Any non-2xx response is a
failure; at the end the p50/p99 per endpoint are printed (and written as JSON when
LEDGER_LOCUST_OUT is set) and the exit code is 1 if anything failed.

Only loopback targets are accepted, and a run without `-t/--run-time` stops after
LEDGER_LOCUST_MAX_SECONDS (default 120 s). Headless run against a local server:

    manage.py tenant_create --slug ledger-load --name "Ledger load"     # prints the api_key
    gunicorn config.wsgi:application --bind 127.0.0.1:8000 --workers 2 --threads 4 &
    LEDGER_LOCUST_API_KEY=<api key> locust -f loadtests/ledger_locustfile.py --headless \\
        -u 16 -r 8 -t 30s --host http://127.0.0.1:8000

Environment: LEDGER_LOCUST_API_KEY (required), LEDGER_LOCUST_BATCH (default 50, at most
1000), LEDGER_LOCUST_MAX_SECONDS (default 120), LEDGER_LOCUST_OUT (JSON summary path).
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from locust import FastHttpUser, between, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust_support import RunRecorder

API_KEY = os.environ.get("LEDGER_LOCUST_API_KEY", "")
BATCH = max(1, min(1000, int(os.environ.get("LEDGER_LOCUST_BATCH", "50") or 50)))
MAX_SECONDS = float(os.environ.get("LEDGER_LOCUST_MAX_SECONDS", "120") or 120)
OUT = os.environ.get("LEDGER_LOCUST_OUT", "")
_recorder = RunRecorder()

SINGLE = "POST /api/v1/ledger/debits"
BATCHED = "POST /api/v1/ledger/debits/batch"
READ = "GET /api/v1/ledger/accounts/{id}"
CREATE = "POST /api/v1/ledger/accounts"


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": str(uuid.uuid4())}


class Integrator(FastHttpUser):
    wait_time = between(0.0, 0.05)
    account_id: int = 0

    def on_start(self) -> None:
        if _recorder.refused:  # the guard refused the run: no request may go out
            raise StopUser()
        body = {"currency": "EUR", "client_id": f"locust-{uuid.uuid4().hex[:12]}"}
        with self.client.post(
            "/api/v1/ledger/accounts", json=body, headers=_headers(), name=CREATE, catch_response=True
        ) as response:
            if response.status_code != 201:
                response.failure(f"account create: {response.status_code} {response.text[:200]}")
                self.stop()
                return
            self.account_id = int(response.json()["id"])

    def _expect_2xx(self, response: Any) -> None:
        if not 200 <= response.status_code < 300:
            response.failure(f"{response.status_code} {response.text[:200]}")
        else:
            response.success()

    @task(6)
    def single_debit(self) -> None:
        body = {"account_id": self.account_id, "amount_minor": 25, "currency": "EUR", "reference": "locust"}
        with self.client.post(
            "/api/v1/ledger/debits", json=body, headers=_headers(), name=SINGLE, catch_response=True
        ) as response:
            self._expect_2xx(response)

    @task(2)
    def batch_debit(self) -> None:
        items = [
            {
                "account_id": self.account_id,
                "amount_minor": 1 + n % 50,
                "currency": "EUR",
                "idempotency_key": uuid.uuid4().hex,
            }
            for n in range(BATCH)
        ]
        with self.client.post(
            "/api/v1/ledger/debits/batch", json={"items": items}, headers=_headers(), name=BATCHED, catch_response=True
        ) as response:
            self._expect_2xx(response)

    @task(1)
    def read_balance(self) -> None:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with self.client.get(
            f"/api/v1/ledger/accounts/{self.account_id}", headers=headers, name=READ, catch_response=True
        ) as response:
            self._expect_2xx(response)


def _precheck() -> str:
    return "" if API_KEY else "set LEDGER_LOCUST_API_KEY (manage.py tenant_create prints one)"


_recorder.install(precheck=_precheck, max_seconds=MAX_SECONDS)


@events.quitting.add_listener
def _report(environment: Environment, **_: Any) -> None:
    summary: dict[str, Any] = _recorder.endpoint_summary(environment)
    _recorder.finish(environment, summary, out=OUT, headline=f"non-2xx responses: {summary['failures']}")
