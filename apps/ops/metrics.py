"""Prometheus metrics. Gauges that describe the database are computed at scrape time by
collectors registered by each domain (`register_collector`), so every web process reports the
same truth without shared state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)


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


def render() -> bytes:
    return generate_latest(REGISTRY)
