"""Prometheus collectors for payouts, evaluated at scrape time (see apps/ops/metrics.py).

* darkroom_payouts{status}: payouts per status; a rise of `failed` is money that went back to
  wallets, a growing `submitted` is money the provider has not settled yet, and any
  `needs_review` waits for an operator to check it with the provider (alert on it).
* darkroom_payouts_oldest_pending_age_seconds: a pending payout not sent for long means the
  providers' worker is down or the provider keeps failing (alert past a few minutes).
* darkroom_payouts_oldest_submitted_age_seconds: a payout the provider has not settled for days
  (a PayPal item unclaimed by its receiver, or the settle task failing): look at it.
* darkroom_payout_webhooks_total{provider, outcome}: the providers' payout webhooks processed, by
  what they did to the payout (paid, submitted, failed, needs_review, unchanged, unknown_payout).
  `unknown_payout` names no payout of ours (a transfer made outside Darkroom on the same account,
  or a payout id lost): a rise is worth a look in the admin's webhook events (ignored);
  `needs_review` is a provider contradicting or doubting a payout (alert, like the gauge above).
  Every provider and outcome is reported from 0.
* darkroom_payout_batch_running_seconds: how long the running batch has run (0 when none); a
  batch running for much longer than the lease TTL was left by a crashed runner, and the next
  scheduled or requested run finishes it.
* darkroom_payout_batch_last_completed_age_seconds: how long ago the last batch over every due
  wallet (the schedule's or an operator's, not a photographer's request) completed (0 before the
  first), beside darkroom_payout_batch_every_seconds (DARKROOM_PAYOUT_BATCH_EVERY_SECONDS): far
  past the period, batches no longer complete (beat or the worker down, the lease held, the
  kill switch engaged), so the rule compares the two instead of hard-coding a day.
* darkroom_payouts_paid_after_failure_total: failed payouts, credited back, that their provider
  reported paid afterwards (`Payout.paid_after_failure_at`): the photographer may be paid twice
  (alert on any increase). Reported from 0.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from itertools import product

from django.conf import settings
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from apps.payments.providers.registry import PROVIDER_NAMES
from apps.payouts.models import Payout
from apps.payouts.selectors import payout_stats, payout_webhook_counts
from apps.payouts.services import PAYOUT_EVENT_OUTCOMES
from apps.tenancy.context import system_context

logger = logging.getLogger("darkroom.payouts.metrics")

# Report nothing while the ops registry describes collectors at app start (maybe before migrate).
_registered = False


def mark_registered() -> None:
    global _registered
    _registered = True


def collect_payout_metrics() -> Iterable[Metric]:
    if not _registered:
        return
    try:
        with system_context("payout metrics"):
            stats = payout_stats()
            webhooks = payout_webhook_counts()
    except Exception:
        logger.warning("payout metrics unavailable (database)", exc_info=True)
        return
    family = GaugeMetricFamily("darkroom_payouts", "Payouts per status.", labels=["status"])
    for status in Payout.Status.values:
        family.add_metric([status], stats.by_status.get(status, 0))
    yield family
    yield GaugeMetricFamily(
        "darkroom_payouts_oldest_pending_age_seconds",
        "Age of the oldest payout not yet sent to its provider (0 when none).",
        value=stats.oldest_pending_age_seconds,
    )
    yield GaugeMetricFamily(
        "darkroom_payouts_oldest_submitted_age_seconds",
        "Age of the oldest payout the provider has not settled yet (0 when none).",
        value=stats.oldest_submitted_age_seconds,
    )
    counter = CounterMetricFamily(
        "darkroom_payout_webhooks",
        "Payout webhooks processed, by provider and what they did to the payout.",
        labels=["provider", "outcome"],
    )
    # Every provider and outcome from 0, so the first `unknown_payout` or `needs_review` is an
    # increase a rule can see (a series that appears at 1 has no increase to show).
    for provider, outcome in sorted({*product(PROVIDER_NAMES, PAYOUT_EVENT_OUTCOMES), *webhooks}):
        counter.add_metric([provider, outcome], webhooks.get((provider, outcome), 0))
    yield counter
    yield GaugeMetricFamily(
        "darkroom_payout_batch_running_seconds",
        "How long the running payout batch has been running (0 when none).",
        value=stats.running_batch_age_seconds or 0.0,
    )
    yield GaugeMetricFamily(
        "darkroom_payout_batch_last_completed_age_seconds",
        "Seconds since the last payout batch over every due wallet completed (0 before the first).",
        value=stats.last_completed_batch_age_seconds or 0.0,
    )
    yield GaugeMetricFamily(
        "darkroom_payout_batch_every_seconds",
        "How often beat runs the payout batch (DARKROOM_PAYOUT_BATCH_EVERY_SECONDS).",
        value=float(settings.PAYOUT_BATCH_EVERY_SECONDS),
    )
    yield CounterMetricFamily(
        "darkroom_payouts_paid_after_failure",
        "Failed payouts, credited back, that their provider reported paid afterwards.",
        value=stats.paid_after_failure,
    )
