"""Prometheus collectors for drop-in, evaluated at scrape time (see apps/ops/metrics.py).

* darkroom_dropin_jobs{status}: drop-in jobs by status (`failed` are terminal: an operator looks).
* darkroom_dropin_oldest_unfinished_age_seconds: a job queued or running for long means the
  `dropin` worker is down or the face backend keeps failing (alert past a few minutes).
* darkroom_findme_searches_total{outcome}: shoppers' selfie searches (`apps/dropin/findme.py`):
  found, none (no photo matched), rejected (unusable selfie), unavailable (the face backend
  failed: alert on its rate), disabled (drop-in off or its kill switch engaged). Counted in Redis
  (the default cache) so every web process adds to, and reports, the same totals.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.core.cache import cache
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from apps.core.redis_guard import REDIS_ERRORS, redis_failed, redis_skipped
from apps.tenancy.context import system_context

logger = logging.getLogger("darkroom.dropin.metrics")

# Report nothing while the ops registry describes collectors at app start (maybe before migrate).
_registered = False


def mark_registered() -> None:
    global _registered
    _registered = True


FINDME_OUTCOMES = ("found", "none", "rejected", "unavailable", "disabled")


def _findme_key(outcome: str) -> str:
    return f"dropin:metrics:findme_searches:{outcome}"


def findme_search_counted(outcome: str) -> None:
    """Count one find-me search by outcome; a Redis failure loses the count, never the search
    (nor is Redis asked while `redis_skipped`)."""
    if redis_skipped("findme_count"):
        return
    try:
        cache.incr(_findme_key(outcome), ignore_key_check=True)  # type: ignore[call-arg]
    except Exception as error:
        logger.warning("find-me metric not counted (cache)", exc_info=True)
        if isinstance(error, REDIS_ERRORS):
            redis_failed("findme_count", error, log=False)


def findme_search_counts() -> dict[str, int]:
    """Searches so far by outcome (every outcome present). Raises the cache's errors."""
    stored = cache.get_many([_findme_key(outcome) for outcome in FINDME_OUTCOMES])
    return {outcome: int(stored.get(_findme_key(outcome)) or 0) for outcome in FINDME_OUTCOMES}


def collect_dropin_metrics() -> Iterable[Metric]:
    if not _registered:
        return
    try:
        counts = None if redis_skipped("metrics") else findme_search_counts()
    except Exception as error:
        logger.warning("find-me metrics unavailable (cache)", exc_info=True)
        if isinstance(error, REDIS_ERRORS):
            redis_failed("metrics", error, log=False)
        counts = None
    if counts is not None:
        searches = CounterMetricFamily(
            "darkroom_findme_searches", "Shoppers' find-me selfie searches by outcome.", labels=["outcome"]
        )
        for outcome, count in counts.items():
            searches.add_metric([outcome], count)
        yield searches
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
