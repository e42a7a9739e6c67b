"""Locust: many shoppers buying the same limited print (hot SKU) through the public API.

Each simulated shopper POSTs /api/v1/checkouts for one print, with a fresh Idempotency-Key and
the studio's API key (shoppers buy through the studio's storefront): back to back (closed loop,
peak throughput) or paced so that all shoppers together offer INVENTORY_BENCH_RATE requests/s.
`manage.py inventory_bench` runs it headless against a gunicorn it starts on 127.0.0.1, once
per strategy; run by hand like this:

    INVENTORY_BENCH_API_KEY=<studio api key> INVENTORY_BENCH_PRODUCT_ID=<print product id> \\
    locust -f loadtests/inventory_locustfile.py --headless -u 32 -r 32 -t 20s \\
        --host http://127.0.0.1:8000

Environment:
* INVENTORY_BENCH_API_KEY, INVENTORY_BENCH_PRODUCT_ID (required);
* INVENTORY_BENCH_RATE (requests/s offered by all shoppers together; 0 or unset: no pacing) and
  INVENTORY_BENCH_USERS (the -u value, to split the rate);
* INVENTORY_BENCH_OUT: write a JSON summary there at the end (request count, failures, elapsed
  seconds, exact p50/p95/p99/max in ms from every response time, the line states the 201s
  reported, and status codes).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

from locust import FastHttpUser, constant, constant_throughput, events, task

API_KEY = os.environ.get("INVENTORY_BENCH_API_KEY", "")
PRODUCT_ID = int(os.environ.get("INVENTORY_BENCH_PRODUCT_ID", "0"))
OUT = os.environ.get("INVENTORY_BENCH_OUT", "")
RATE = float(os.environ.get("INVENTORY_BENCH_RATE", "0") or 0)
USERS = max(1, int(os.environ.get("INVENTORY_BENCH_USERS", "1") or 1))
REQUEST_NAME = "POST /api/v1/checkouts"

_latencies_ms: list[float] = []
_statuses: dict[str, int] = {}
_line_states: dict[str, int] = {}
_window: dict[str, float] = {}


class Shopper(FastHttpUser):
    wait_time = constant_throughput(RATE / USERS) if RATE > 0 else constant(0)

    @task
    def buy_the_hot_print(self) -> None:
        body = {
            "email": f"shopper-{uuid.uuid4().hex[:16]}@example.test",
            "provider": "sandbox",
            "lines": [{"product": PRODUCT_ID, "quantity": 1}],
            # Prints are shipped: a checkout with a print carries the address.
            "shipping": {
                "name": "Load Test",
                "line1": "1 Bench Road",
                "city": "Berlin",
                "postal_code": "10115",
                "country": "DE",
            },
        }
        headers = {"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": str(uuid.uuid4())}
        with self.client.post(
            "/api/v1/checkouts", json=body, headers=headers, name=REQUEST_NAME, catch_response=True
        ) as response:
            _statuses[str(response.status_code)] = _statuses.get(str(response.status_code), 0) + 1
            if response.status_code != 201:
                response.failure(f"{response.status_code}: {(response.text or '')[:200]}")
                return
            for line in response.json().get("lines", []):
                _line_states[line["state"]] = _line_states.get(line["state"], 0) + 1


@events.request.add_listener
def _record(request_type: str, name: str, response_time: float, exception: Any, **_: Any) -> None:
    if name != REQUEST_NAME:
        return
    now = time.time()
    _window.setdefault("first", now - response_time / 1000)
    _window["last"] = now
    _latencies_ms.append(response_time)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@events.quitting.add_listener
def _write_summary(environment: Any, **_: Any) -> None:
    if not OUT:
        return
    elapsed = max(_window.get("last", 0.0) - _window.get("first", 0.0), 1e-9)
    failures = sum(count for code, count in _statuses.items() if code != "201")
    summary = {
        "requests": len(_latencies_ms),
        "failures": failures,
        "elapsed_seconds": elapsed,
        "requests_per_second": len(_latencies_ms) / elapsed,
        "p50_ms": _percentile(_latencies_ms, 0.50),
        "p95_ms": _percentile(_latencies_ms, 0.95),
        "p99_ms": _percentile(_latencies_ms, 0.99),
        "max_ms": max(_latencies_ms, default=0.0),
        "statuses": _statuses,
        "line_states": _line_states,
        "users": environment.runner.user_count if environment.runner else None,
        "offered_rate": RATE or None,
    }
    with open(OUT, "w") as handle:
        json.dump(summary, handle)
