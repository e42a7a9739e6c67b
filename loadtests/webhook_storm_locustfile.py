"""Locust: a storm of signed sandbox webhooks, a fifth of them duplicates, at /webhooks/sandbox.

The deliveries come from WEBHOOK_STORM_EVENTS, a JSON list of `{"event_id", "body"}` (the exact
bytes of each `payment.paid` event; `manage.py loadtest webhooks` settles pre-created sandbox
checkouts and writes it). Every delivery is signed at send time with the sandbox scheme
(`Sandbox-Signature: t=<unix>,v1=<hex>`, HMAC-SHA256 of `"<t>." + body` with
WEBHOOK_STORM_SECRET, as apps/payments/providers/signing.py verifies it). Deliveries are drawn
from one shared sequence: WEBHOOK_STORM_DUPLICATE_RATE of them (default 0.2, spread evenly;
the summary reports the share achieved) re-send an event id whose first delivery has already
been answered, picked at random; the others send the next event never sent before. The run ends
when every event has been sent once (or at the run time).

Every delivery must answer 200 with `"received": true`, and `"duplicate"` false for a first
delivery and true for a re-delivery; anything else is a failure. At the end p50/p99 per kind
of delivery (exact, from every response time) are printed and written as JSON to
WEBHOOK_STORM_OUT with the deliveries per event id, so the runner can check the database (one
WebhookEvent per event id, each payment's effects once); the exit code is 1 if anything failed.

Only loopback targets are accepted, and a run without `-t/--run-time` stops after
WEBHOOK_STORM_MAX_SECONDS (default 120 s). By hand, against a running server:

    WEBHOOK_STORM_EVENTS=events.json WEBHOOK_STORM_SECRET=<SANDBOX_WEBHOOK_SECRET> \\
    locust -f loadtests/webhook_storm_locustfile.py --headless -u 16 -r 16 -t 20s --host http://127.0.0.1:8000

Environment: WEBHOOK_STORM_EVENTS, WEBHOOK_STORM_SECRET (required); WEBHOOK_STORM_DUPLICATE_RATE
(default 0.2, below 1), WEBHOOK_STORM_RATE (deliveries/s offered by all users together; 0:
closed loop) with WEBHOOK_STORM_USERS (the -u value), WEBHOOK_STORM_MAX_SECONDS (default 120),
WEBHOOK_STORM_OUT (JSON summary path).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import random
import time
from typing import Any

import gevent
from locust import FastHttpUser, constant, constant_throughput, events, task
from locust.env import Environment
from locust.exception import StopUser
from locust_support import RunRecorder

EVENTS_PATH = os.environ.get("WEBHOOK_STORM_EVENTS", "")
SECRET = os.environ.get("WEBHOOK_STORM_SECRET", "")
DUPLICATE_RATE = min(0.95, max(0.0, float(os.environ.get("WEBHOOK_STORM_DUPLICATE_RATE", "0.2") or 0)))
RATE = float(os.environ.get("WEBHOOK_STORM_RATE", "0") or 0)
USERS = max(1, int(os.environ.get("WEBHOOK_STORM_USERS", "1") or 1))
MAX_SECONDS = float(os.environ.get("WEBHOOK_STORM_MAX_SECONDS", "120") or 120)
OUT = os.environ.get("WEBHOOK_STORM_OUT", "")
PATH = "/webhooks/sandbox"

FIRST = "POST /webhooks/sandbox (first delivery)"
DUPLICATE = "POST /webhooks/sandbox (duplicate)"

_events: list[dict[str, str]] = []
_state = {"next_fresh": 0, "slot": 0, "owed": 0}
_answered: list[int] = []  # indexes of events whose first delivery was answered 200
_deliveries: dict[str, int] = {}
_recorder = RunRecorder()
_refused = _recorder.refused  # set by the guard before any user starts: no request goes out
_statuses: dict[str, int] = {}


def sign(body: bytes, *, secret: str, timestamp: int) -> str:
    """The `Sandbox-Signature` value: Stripe's t/v1 scheme (apps/payments/providers/signing.py)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _next_delivery() -> tuple[int, bool] | None:
    """(event index, is duplicate) of the next delivery, or None when every event was sent.

    Slot n owes a duplicate when floor((n + 1) * rate) > floor(n * rate): `rate` of the
    deliveries, evenly spread. A duplicate owed before any first delivery was answered is sent
    at the next chance instead (a fresh event goes out meanwhile). Gevent switches only on
    I/O, so this needs no lock.
    """
    slot = _state["slot"]
    _state["slot"] += 1
    if math.floor((slot + 1) * DUPLICATE_RATE) > math.floor(slot * DUPLICATE_RATE):
        _state["owed"] += 1
    if _state["owed"] and _answered:
        _state["owed"] -= 1
        return random.choice(_answered), True
    if _state["next_fresh"] >= len(_events):
        return None
    index = _state["next_fresh"]
    _state["next_fresh"] += 1
    return index, False


class Provider(FastHttpUser):
    wait_time = constant_throughput(RATE / USERS) if RATE > 0 else constant(0)

    def on_start(self) -> None:
        if _refused:
            raise StopUser()

    @task
    def deliver(self) -> None:
        picked = _next_delivery()
        if picked is None:
            if self.environment.runner is not None:
                gevent.spawn_later(0, self.environment.runner.quit)
            raise StopUser()
        index, duplicate = picked
        event = _events[index]
        body = event["body"].encode()
        headers = {
            "Content-Type": "application/json",
            "Sandbox-Signature": sign(body, secret=SECRET, timestamp=int(time.time())),
        }
        name = DUPLICATE if duplicate else FIRST
        # The exact signed bytes go out as they are (FastHttpSession takes str or bytes).
        post = self.client.post
        with post(PATH, data=body, headers=headers, name=name, catch_response=True) as r:  # type: ignore[arg-type]
            _statuses[str(r.status_code)] = _statuses.get(str(r.status_code), 0) + 1
            _deliveries[event["event_id"]] = _deliveries.get(event["event_id"], 0) + 1
            if r.status_code != 200:
                r.failure(f"{r.status_code} {(r.text or '')[:200]}")
                return
            answer = r.json()
            if answer.get("received") is not True or answer.get("event_id") != event["event_id"]:
                r.failure(f"unexpected answer {answer}")
            elif answer.get("duplicate") is not duplicate:
                r.failure(
                    f"{'re-delivery' if duplicate else 'first delivery'} answered duplicate={answer.get('duplicate')}"
                )
            else:
                r.success()
            if not duplicate:
                _answered.append(index)


@events.init.add_listener
def _load(environment: Environment, **_: Any) -> None:
    if EVENTS_PATH and os.path.exists(EVENTS_PATH):
        with open(EVENTS_PATH) as handle:
            _events.extend(json.load(handle))


def _precheck() -> str:
    if not SECRET or not _events:
        return "set WEBHOOK_STORM_SECRET and WEBHOOK_STORM_EVENTS (a non-empty JSON list; manage.py loadtest webhooks)"
    return ""


_recorder.install(precheck=_precheck, max_seconds=MAX_SECONDS)


@events.quitting.add_listener
def _report(environment: Environment, **_: Any) -> None:
    summary: dict[str, Any] = _recorder.endpoint_summary(environment)
    endpoints, failures = summary["endpoints"], summary["failures"]
    total = summary["total"]["requests"]
    duplicates = endpoints.get(DUPLICATE, {}).get("requests", 0)
    summary |= {
        "statuses": _statuses,
        "users": USERS,
        "offered_rate": RATE or None,
        "duplicate_rate_target": DUPLICATE_RATE,
        "duplicate_share": round(duplicates / total, 4) if total else 0.0,
        "events_available": len(_events),
        "events_sent": len(_deliveries),
        "deliveries_per_event": _deliveries,
    }
    share = summary["duplicate_share"]
    headline = f"events sent {len(_deliveries)}/{len(_events)}, duplicate share {share}, failures {failures}"
    _recorder.finish(environment, summary, out=OUT, headline=headline)
