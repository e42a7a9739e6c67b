"""Prometheus metrics. Gauges that describe the database are computed at scrape time by
collectors registered by each domain (`register_collector`), so every web process reports the
same truth without shared state.

Metrics a web process counts itself (the HTTP request metrics of `apps.ops.http_metrics`) cannot
be read that way: gunicorn runs several worker processes and a scrape reaches one of them. Under
gunicorn they use prometheus_client's multiprocess mode: with PROMETHEUS_MULTIPROC_DIR set in the
environment before prometheus_client is imported (the Procfile, docker-compose and
`apps.ops.webserver` set it; `config/gunicorn_conf.py` empties it when the server starts and
forgets dead workers' live gauges), each process writes its values to files there, and a
`MultiProcessCollector` adds every process's files up at scrape time. Without it (runserver,
tests) they live in `PROCESS_REGISTRY`, this process's own, which is then rendered instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
# In-process metrics (Counter, Histogram, Gauge objects) register here. Rendered only outside
# multiprocess mode: there the MultiProcessCollector already holds this process's values (from
# its files), and rendering both would export them twice.
PROCESS_REGISTRY = CollectorRegistry(auto_describe=True)
# Read once, as prometheus_client decided when it was imported (just above): its values write
# to files only if the variable was set then.
MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _FunctionCollector(Collector):
    def __init__(self, fn: Callable[[], Iterable[Metric]]) -> None:
        self.fn = fn

    def describe(self) -> Iterable[Metric]:
        # Describing nothing stops the registry from calling collect() at registration time
        # (app start, possibly before migrations ran).
        return []

    def collect(self) -> Iterable[Metric]:
        return self.fn()


def register_collector(fn: Callable[[], Iterable[Metric]]) -> Callable[[], Iterable[Metric]]:
    REGISTRY.register(_FunctionCollector(fn))
    return fn


def _in_process_metrics() -> CollectorRegistry:
    """Every web process's own metrics added up (multiprocess mode), else this process's."""
    if MULTIPROC_DIR is None:
        return PROCESS_REGISTRY
    # A registry of its own per scrape, as prometheus_client's documentation recommends: nothing
    # ever registers into it but the collector, so nothing is exported twice.
    registry = CollectorRegistry(auto_describe=True)
    multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
    return registry


def render() -> bytes:
    return generate_latest(REGISTRY) + generate_latest(_in_process_metrics())
