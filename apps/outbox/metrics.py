"""Prometheus collectors for the outbox, evaluated at scrape time (see apps/ops/metrics.py).

* darkroom_outbox_backlog: pending messages (due or waiting for a retry)
* darkroom_outbox_oldest_pending_age_seconds: age of the oldest unpublished message
* darkroom_outbox_dead_letters: dead-lettered messages awaiting an operator
* darkroom_outbox_published_total / darkroom_outbox_publish_failures_total: counters the relays
  increment in Redis; the publish rate is `rate(darkroom_outbox_published_total[1m])`.
* darkroom_outbox_requeued_total{flow}: work whose message the broker lost, queued again by the
  lost-message sweeps (apps/outbox/requeue.py); alert on any increase.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from apps.core.redis_guard import REDIS_ERRORS, redis_failed, redis_skipped
from apps.outbox.relay import FAILED_COUNTER_KEY, PUBLISHED_COUNTER_KEY
from apps.outbox.requeue import REQUEUE_FLOWS
from apps.outbox.selectors import outbox_stats, relay_counter, requeued_counters
from apps.tenancy.context import system_context

logger = logging.getLogger("darkroom.outbox.metrics")

# The ops registry auto-describes collectors by calling them once at registration (app start,
# possibly before migrations): report nothing until registration is over.
_registered = False


def mark_registered() -> None:
    global _registered
    _registered = True


def collect_outbox_metrics() -> Iterable[Metric]:
    if not _registered:
        return
    try:
        with system_context("outbox metrics"):
            stats = outbox_stats()
    except Exception:
        logger.warning("outbox metrics unavailable (database)", exc_info=True)
    else:
        yield GaugeMetricFamily("darkroom_outbox_backlog", "Pending outbox messages.", value=stats.pending)
        yield GaugeMetricFamily(
            "darkroom_outbox_oldest_pending_age_seconds",
            "Age of the oldest unpublished outbox message (0 when none).",
            value=stats.oldest_pending_age_seconds,
        )
        yield GaugeMetricFamily("darkroom_outbox_dead_letters", "Dead-lettered outbox messages.", value=stats.dead)
    # The counters live in Redis: not asked while this process skips it after a failure.
    if redis_skipped("metrics"):
        return
    try:
        published = relay_counter(PUBLISHED_COUNTER_KEY)
        failed = relay_counter(FAILED_COUNTER_KEY)
    except Exception as error:
        logger.warning("outbox relay counters unavailable (redis)", exc_info=True)
        if isinstance(error, REDIS_ERRORS):
            redis_failed("metrics", error, log=False)
            return
    else:
        yield CounterMetricFamily(
            "darkroom_outbox_published", "Messages the relays published to the broker.", value=published
        )
        yield CounterMetricFamily(
            "darkroom_outbox_publish_failures", "Publish attempts that failed for a message.", value=failed
        )
    try:
        requeued = requeued_counters()
    except Exception as error:
        logger.warning("outbox requeue counters unavailable (redis)", exc_info=True)
        if isinstance(error, REDIS_ERRORS):
            redis_failed("metrics", error, log=False)
    else:
        family = CounterMetricFamily(
            "darkroom_outbox_requeued",
            "Work whose message the broker lost, queued again by the lost-message sweeps.",
            labels=["flow"],
        )
        for flow in sorted({*REQUEUE_FLOWS, *requeued}):
            family.add_metric([flow], requeued.get(flow, 0))
        yield family
