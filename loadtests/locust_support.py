"""Plumbing shared by the Locust files: response-time recording, percentiles, the loopback
guard (no request ever leaves this machine), the per-endpoint summary and the end-of-run report.

Locust puts a locustfile's folder on sys.path, so `from locust_support import ...` works for
`locust -f loadtests/<file>.py`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import gevent
from locust import events
from locust.env import Environment

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class RunRecorder:
    """Records every response time per request name and the wall-clock window of the run."""

    def __init__(self) -> None:
        self.times_ms: dict[str, list[float]] = {}
        self.window: dict[str, float] = {}
        self.refused: list[str] = []  # set by the guard before any user starts

    def install(self, *, precheck: Callable[[], str], max_seconds: float) -> None:
        """Register the listeners. `precheck` returns a problem ('' if fine) checked at start."""

        @events.request.add_listener
        def _record(name: str, response_time: float, **_: Any) -> None:
            now = time.time()
            self.window.setdefault("first", now - response_time / 1000)
            self.window["last"] = now
            self.times_ms.setdefault(name, []).append(response_time)

        @events.test_start.add_listener
        def _guard(environment: Environment, **_: Any) -> None:
            host = urlsplit(environment.host or "").hostname or ""
            problem = ""
            if host not in LOOPBACK:
                problem = f"refusing to load {environment.host!r}: only loopback targets (127.0.0.1, localhost, ::1)"
            else:
                problem = precheck()
            if problem:
                self.refused.append(problem)
                print(problem)
                environment.process_exit_code = 2
                if environment.runner is not None:
                    gevent.spawn_later(0, environment.runner.quit)
                return
            if environment.runner is not None and not getattr(environment.parsed_options, "run_time", None):
                gevent.spawn_later(max_seconds, environment.runner.quit)

    @property
    def elapsed(self) -> float:
        return max(self.window.get("last", 0.0) - self.window.get("first", 0.0), 1e-9)

    def endpoint_summary(self, environment: Environment) -> dict[str, Any]:
        """Per-endpoint and total requests, failures, req/s and p50/p99/max in ms."""
        stats = environment.stats
        endpoints: dict[str, Any] = {}
        for (name, _method), entry in stats.entries.items():
            times = self.times_ms.get(name, [])
            endpoints[name] = {
                "requests": entry.num_requests,
                "failures": entry.num_failures,
                "rps": round(entry.num_requests / self.elapsed, 1),
                "p50_ms": round(percentile(times, 0.50), 1),
                "p99_ms": round(percentile(times, 0.99), 1),
                "max_ms": round(max(times, default=0.0), 1),
            }
        every = [t for times in self.times_ms.values() for t in times]
        return {
            "endpoints": endpoints,
            "total": {
                "requests": stats.total.num_requests,
                "failures": stats.total.num_failures,
                "rps": round(stats.total.num_requests / self.elapsed, 1),
                "p50_ms": round(percentile(every, 0.50), 1),
                "p99_ms": round(percentile(every, 0.99), 1),
            },
            "elapsed_seconds": round(self.elapsed, 2),
            "failures": stats.total.num_failures,
            "failure_samples": [
                f"{error.name}: {error.error} x{error.occurrences}" for error in list(stats.errors.values())[:5]
            ],
        }

    @staticmethod
    def finish(environment: Environment, summary: dict[str, Any], *, out: str | None, headline: str) -> None:
        """Print one line per endpoint and `headline`, write `summary` as JSON to `out` (if set),
        and make Locust exit 1 when any request failed."""
        for name, figures in summary["endpoints"].items():
            print(
                f"{name:<42} n={figures['requests']:<7} fail={figures['failures']:<4} "
                f"{figures['rps']:>7} req/s p50={figures['p50_ms']} ms p99={figures['p99_ms']} ms"
            )
        print(headline)
        if out:
            with open(out, "w") as handle:
                json.dump(summary, handle, indent=2)
        if summary["failures"]:
            environment.process_exit_code = 1
