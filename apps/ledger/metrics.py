"""Prometheus collectors for the ledger, evaluated at scrape time (see apps/ops/metrics.py).

* darkroom_ledger_projection_lag_seconds{partition}: age of the oldest unapplied event (0 when
  the projector has reached the committed head)
* darkroom_ledger_events_applied_total{partition}: events applied by projectors (from the
  checkpoints); events/s applied is `rate(darkroom_ledger_events_applied_total[1m])`
* darkroom_ledger_events_applied_per_second: the same rate between this process's scrapes
* darkroom_ledger_projection_leader{partition, holder}: 1 for the live leader (holder "none"
  when no projector holds the partition's advisory lock)
* darkroom_ledger_partition_head_sequence / darkroom_ledger_checkpoint_sequence{partition}
* darkroom_ledger_buffer_pending: degraded-mode debits waiting for the drain
* darkroom_ledger_buffer_oldest_age_seconds: how long the oldest of them has waited (0 when none):
  under steady degraded-mode traffic the buffer is rarely empty, so this, not the count, tells a
  stuck drain
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from apps.ledger.selectors import partition_states
from apps.ledger.services import ledger_buffer_state

logger = logging.getLogger("darkroom.ledger.metrics")

# The ops registry auto-describes collectors by calling them once at registration (app start,
# possibly before migrations): report nothing until registration is over.
_registered = False
_last_sample: tuple[float, int] | None = None


def mark_registered() -> None:
    global _registered
    _registered = True


def collect_ledger_metrics() -> Iterable[Metric]:
    global _last_sample
    if not _registered:
        return
    try:
        states = partition_states()
        buffer = ledger_buffer_state()
    except Exception:
        logger.warning("ledger metrics unavailable (database)", exc_info=True)
        return
    lag = GaugeMetricFamily(
        "darkroom_ledger_projection_lag_seconds",
        "Age of the oldest event not yet applied to balances (0 when caught up).",
        labels=["partition"],
    )
    applied = CounterMetricFamily(
        "darkroom_ledger_events_applied", "Ledger events applied to balances.", labels=["partition"]
    )
    leader = GaugeMetricFamily(
        "darkroom_ledger_projection_leader",
        "1 for the projector leading the partition.",
        labels=["partition", "holder"],
    )
    head = GaugeMetricFamily(
        "darkroom_ledger_partition_head_sequence", "Last sequence handed out.", labels=["partition"]
    )
    checkpoint = GaugeMetricFamily(
        "darkroom_ledger_checkpoint_sequence", "Last sequence applied to balances.", labels=["partition"]
    )
    for s in states:
        label = str(s.partition)
        lag.add_metric([label], s.lag_seconds)
        applied.add_metric([label], s.applied_total)
        leader.add_metric([label, s.leader if s.leader_alive and s.leader else "none"], 1)
        head.add_metric([label], s.head_seq)
        checkpoint.add_metric([label], s.checkpoint_seq)
    yield from (lag, applied, leader, head, checkpoint)
    total, now = sum(s.applied_total for s in states), time.monotonic()
    rate = 0.0
    if _last_sample is not None and now > _last_sample[0] and total >= _last_sample[1]:
        rate = (total - _last_sample[1]) / (now - _last_sample[0])
    _last_sample = (now, total)
    yield GaugeMetricFamily(
        "darkroom_ledger_events_applied_per_second", "Events applied per second since the previous scrape.", value=rate
    )
    yield GaugeMetricFamily(
        "darkroom_ledger_buffer_pending", "Degraded-mode debits not yet drained into the ledger.", value=buffer.pending
    )
    yield GaugeMetricFamily(
        "darkroom_ledger_buffer_oldest_age_seconds",
        "How long the oldest degraded-mode debit not yet drained has waited (0 when none).",
        value=buffer.oldest_age_seconds,
    )
