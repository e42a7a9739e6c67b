"""Locust: shoppers creating checkouts of digital downloads, retrying some, reading them back.

Each simulated shopper POSTs /api/v1/checkouts (1 to CHECKOUT_LOCUST_MAX_LINES download lines
of distinct photos, provider "sandbox") with a fresh Idempotency-Key and the studio's API key,
then GETs /api/v1/checkouts/{id}. About CHECKOUT_LOCUST_RETRY_RATE of the checkouts are
deliberately retried (same key, same body, after the first answer arrived, as a client whose
connection dropped would): the retry must replay the stored 201 with `Idempotent-Replayed:
true` and the same checkout id. Any other outcome (non-2xx, a 201 that is not a replay, a
replay of another checkout, a GET of another checkout) is a failure. At the end p50/p99 per
endpoint (exact, from every response time) are printed and written as JSON to
CHECKOUT_LOCUST_OUT, with the ids created and replayed so a runner can check the database;
the exit code is 1 if anything failed.

Only loopback targets are accepted, and a run without `-t/--run-time` stops after
CHECKOUT_LOCUST_MAX_SECONDS (default 120 s). `manage.py loadtest checkout` sets up a studio,
gunicorn, the outbox relay and a Celery worker and runs this headless; by hand:

    CHECKOUT_LOCUST_API_KEY=<studio api key> CHECKOUT_LOCUST_PRODUCTS=<download product ids, comma separated> \\
    locust -f loadtests/checkout_locustfile.py --headless -u 16 -r 16 -t 20s --host http://127.0.0.1:8000

Environment: CHECKOUT_LOCUST_API_KEY, CHECKOUT_LOCUST_PRODUCTS (required);
CHECKOUT_LOCUST_MAX_LINES (default 3), CHECKOUT_LOCUST_RETRY_RATE (default 0.10),
CHECKOUT_LOCUST_RATE (checkouts/s offered by all shoppers together, each 2-3 requests; 0: closed loop
with 0-50 ms think time) with CHECKOUT_LOCUST_USERS (the -u value, to split that rate),
CHECKOUT_LOCUST_MAX_SECONDS (default 120), CHECKOUT_LOCUST_OUT (JSON summary path).
"""

from __future__ import annotations

import os
import random
import uuid
from typing import Any

from locust import FastHttpUser, between, constant_throughput, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust_support import RunRecorder

API_KEY = os.environ.get("CHECKOUT_LOCUST_API_KEY", "")
PRODUCTS = [int(p) for p in os.environ.get("CHECKOUT_LOCUST_PRODUCTS", "").split(",") if p.strip()]
MAX_LINES = max(1, int(os.environ.get("CHECKOUT_LOCUST_MAX_LINES", "3") or 3))
RETRY_RATE = min(1.0, max(0.0, float(os.environ.get("CHECKOUT_LOCUST_RETRY_RATE", "0.10") or 0)))
RATE = float(os.environ.get("CHECKOUT_LOCUST_RATE", "0") or 0)
USERS = max(1, int(os.environ.get("CHECKOUT_LOCUST_USERS", "1") or 1))
MAX_SECONDS = float(os.environ.get("CHECKOUT_LOCUST_MAX_SECONDS", "120") or 120)
OUT = os.environ.get("CHECKOUT_LOCUST_OUT", "")

CREATE = "POST /api/v1/checkouts"
RETRY = "POST /api/v1/checkouts (retry, same key)"
READ = "GET /api/v1/checkouts/{id}"

_recorder = RunRecorder()
_refused = _recorder.refused  # set by the guard before any user starts: no request goes out
_created: list[str] = []
_replayed: list[str] = []
_statuses: dict[str, int] = {}


def _problem(response: Any) -> str:
    return f"{response.status_code} {(response.text or '')[:200]}"


class Shopper(FastHttpUser):
    wait_time = constant_throughput(RATE / USERS) if RATE > 0 else between(0.0, 0.05)

    def on_start(self) -> None:
        if _refused:
            raise StopUser()

    @task
    def buy_downloads(self) -> None:
        count = random.randint(1, min(MAX_LINES, len(PRODUCTS)))
        body = {
            "email": f"shopper-{uuid.uuid4().hex[:16]}@example.test",
            "provider": "sandbox",
            "lines": [{"product": product, "quantity": 1} for product in random.sample(PRODUCTS, count)],
        }
        headers = {"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": str(uuid.uuid4())}
        checkout_id = self._create(body=body, headers=headers)
        if checkout_id is None:
            return
        if random.random() < RETRY_RATE:
            self._retry(body=body, headers=headers, checkout_id=checkout_id)
        self._read(checkout_id)

    def _create(self, *, body: dict[str, Any], headers: dict[str, str]) -> str | None:
        with self.client.post("/api/v1/checkouts", json=body, headers=headers, name=CREATE, catch_response=True) as r:
            _statuses[str(r.status_code)] = _statuses.get(str(r.status_code), 0) + 1
            if r.status_code != 201:
                r.failure(_problem(r))
                return None
            if r.headers.get("Idempotent-Replayed"):
                r.failure("a fresh Idempotency-Key was answered as a replay")
                return None
            checkout_id = str(r.json()["id"])
            _created.append(checkout_id)
            r.success()
            return checkout_id

    def _retry(self, *, body: dict[str, Any], headers: dict[str, str], checkout_id: str) -> None:
        with self.client.post("/api/v1/checkouts", json=body, headers=headers, name=RETRY, catch_response=True) as r:
            _statuses[str(r.status_code)] = _statuses.get(str(r.status_code), 0) + 1
            if r.status_code != 201:
                r.failure(_problem(r))
            elif r.headers.get("Idempotent-Replayed") != "true":
                r.failure("retry with the same key and body was not replayed")
            elif str(r.json().get("id")) != checkout_id:
                r.failure(f"replay answered checkout {r.json().get('id')}, not {checkout_id}")
            else:
                _replayed.append(checkout_id)
                r.success()

    def _read(self, checkout_id: str) -> None:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with self.client.get(f"/api/v1/checkouts/{checkout_id}", headers=headers, name=READ, catch_response=True) as r:
            _statuses[str(r.status_code)] = _statuses.get(str(r.status_code), 0) + 1
            if r.status_code != 200:
                r.failure(_problem(r))
            elif str(r.json().get("id")) != checkout_id:
                r.failure(f"read answered checkout {r.json().get('id')}, not {checkout_id}")
            else:
                r.success()


def _precheck() -> str:
    if not API_KEY or not PRODUCTS:
        return "set CHECKOUT_LOCUST_API_KEY and CHECKOUT_LOCUST_PRODUCTS (manage.py loadtest checkout does)"
    return ""


_recorder.install(precheck=_precheck, max_seconds=MAX_SECONDS)


@events.quitting.add_listener
def _report(environment: Environment, **_: Any) -> None:
    summary: dict[str, Any] = _recorder.endpoint_summary(environment)
    failures = summary["failures"]
    summary |= {
        "statuses": _statuses,
        "users": USERS,
        "offered_rate": RATE or None,
        "retry_rate": RETRY_RATE,
        "checkouts_created": len(_created),
        "checkouts_distinct": len(set(_created)),
        "replays": len(_replayed),
        "created_ids": _created,
    }
    headline = f"checkouts {len(_created)}, replays {len(_replayed)}, failures {failures}"
    _recorder.finish(environment, summary, out=OUT, headline=headline)
