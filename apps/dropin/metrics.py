"""Prometheus collectors for drop-in, evaluated at scrape time (see apps/ops/metrics.py).

* darkroom_dropin_jobs{status}: drop-in jobs by status (`failed` are terminal: an operator looks).
* darkroom_dropin_oldest_unfinished_age_seconds: a job queued or running for long means the
  `dropin` worker is down or the face backend keeps failing (alert past a few minutes).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from apps.tenancy.context import system_context

logger = logging.getLogger("darkroom.dropin.metrics")

# Report nothing while the ops registry describes collectors at app start (maybe before migrate).
_registered = False


def mark_registered() -> None:
    global _registered
    _registered = True


def collect_dropin_metrics() -> Iterable[Metric]:
    if not _registered:
        return
    from apps.dropin.selectors import job_stats

    try:
        with system_context("drop-in metrics"):
            stats = job_stats()
    except Exception:
        logger.warning("drop-in metrics unavailable (database)", exc_info=True)
        return
    jobs = GaugeMetricFamily("darkroom_dropin_jobs", "Drop-in jobs by status.", labels=["status"])
    for status, count in stats.by_status.items():
        jobs.add_metric([status], count)
    yield jobs
    yield GaugeMetricFamily(
        "darkroom_dropin_oldest_unfinished_age_seconds",
        "Age of the oldest drop-in job still queued or running (0 when none).",
        value=stats.oldest_unfinished_age_seconds,
    )
