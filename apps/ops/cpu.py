"""CPU accounting per process group on this machine, for the benchmarks' "where did the CPU go".

`CpuWindow` takes two snapshots of every process's user+system CPU time (psutil, a dev
requirement) and attributes the difference to named groups: the roots a benchmark started (with
their descendants), then PostgreSQL backends, Redis, and everything else. A process that starts
inside the window counts in full; one that ends inside it is missed, so take the window while
the measured processes run. Best effort: without psutil the report says so instead of failing the run.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any


def _snapshot() -> dict[int, tuple[float, str, int]]:
    """pid -> (cpu seconds, process name, parent pid) for every readable process."""
    import psutil

    seen: dict[int, tuple[float, str, int]] = {}
    for proc in psutil.process_iter(["pid", "name", "ppid", "cpu_times"]):
        info = proc.info
        times = info.get("cpu_times")
        if times is None:
            continue
        seen[info["pid"]] = (times.user + times.system, info.get("name") or "", info.get("ppid") or 0)
    return seen


def _group_of(pid: int, snapshot: dict[int, tuple[float, str, int]], roots: dict[int, str]) -> str:
    cursor, hops = pid, 0
    while cursor and hops < 32:
        if cursor in roots:
            return roots[cursor]
        cursor = snapshot.get(cursor, (0.0, "", 0))[2]
        hops += 1
    name = snapshot.get(pid, (0.0, "", 0))[1]
    if name.startswith("postgres"):
        return "postgres"
    if name.startswith("redis-server"):
        return "redis"
    return "other"


@dataclass
class CpuWindow:
    """CPU seconds per group between `start()` and `stop()`. `roots`: pid -> group name."""

    roots: dict[int, str] = field(default_factory=dict)
    _before: dict[int, tuple[float, str, int]] = field(default_factory=dict)
    _started: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        try:
            self._before = _snapshot()
        except ImportError:
            self.result = {"unavailable": "psutil is not installed"}
        self._started = time.monotonic()

    def stop(self) -> dict[str, Any]:
        if self.result.get("unavailable"):
            return self.result
        after = _snapshot()
        seconds = max(time.monotonic() - self._started, 1e-9)
        groups: dict[str, float] = {}
        for pid, (cpu, _, _) in after.items():
            spent = cpu - self._before.get(pid, (0.0, "", 0))[0]  # new in the window: all of it
            if spent <= 0:
                continue
            group = _group_of(pid, after, self.roots)
            groups[group] = groups.get(group, 0.0) + spent
        self.result = {
            "window_seconds": round(seconds, 3),
            "cores": os.cpu_count(),
            "cpu_seconds": {name: round(value, 3) for name, value in sorted(groups.items())},
            "busy_cores": round(sum(groups.values()) / seconds, 2),
        }
        return self.result

    def during(self, start_at: float, end_at: float) -> threading.Thread:
        """Measure from wall-clock `start_at` to `end_at` in a background thread (join it)."""

        def run() -> None:
            time.sleep(max(0.0, start_at - time.time()))
            self.start()
            time.sleep(max(0.0, end_at - time.time()))
            self.stop()

        thread = threading.Thread(target=run, name="cpu-window", daemon=True)
        thread.start()
        return thread


def per_unit_ms(result: dict[str, Any], units: float) -> dict[str, float]:
    """CPU milliseconds per unit of work (message, request) for each group of a `CpuWindow`."""
    if not units or "cpu_seconds" not in result:
        return {}
    return {name: round(value * 1000 / units, 3) for name, value in result["cpu_seconds"].items()}
