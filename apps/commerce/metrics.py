"""Prometheus collectors for money taken but not yet delivered or given back, evaluated at scrape
time (see apps/ops/metrics.py). Webhook events and receipts are read through their indexes;
refunds, a few per refunded sale, are counted directly.

* darkroom_refunds{status}: refunds per status. `failed` is money a provider refused to give
  back: the shopper is still charged (alert on any; runbook "Refund failed" in the README).
  `requested` should drain within seconds. `not_needed` owes nothing: the whole payment came
  back otherwise (refunded in the provider's dashboard) before it was sent, or after it was
  refused, or, refused, it was superseded by a later refund of its items (`superseded_by`).
  `settled`: an operator paid the shopper back outside the provider (`refund_settle_outside`).
* darkroom_refunds_failed_after_landing_total: refunds the provider reported failed after they
  had landed (Stripe: a card closed meanwhile). Their effects stand (a studio's refund revoked
  its items and reversed its credits), but the shopper did not get the money, and they no
  longer count as given back until an operator settles each, through the provider or by paying
  the shopper another way and recording it (`settled`; alert on any increase; runbook "Refund
  failed"). Refunds are never deleted, so it only grows.
* darkroom_refunds_second_charge_total{provider}: second charges of payments already paid (the
  shopper was charged twice, e.g. one Flutterwave tx_ref paid twice), each given back by a
  `duplicate_charge` refund; every provider reported. Refunds are never deleted, so it only grows
  (alert on any increase: runbook "Second charge").
* darkroom_refunds_oldest_requested_age_seconds: a refund not submitted for long means the
  providers' worker is down or the provider keeps failing (alert past a few minutes).
* darkroom_refunds_oldest_unlanded_age_seconds{provider}: how long the oldest refund the
  provider accepted has waited for the refund event that lands it (0 when none; every provider
  reported). A card refund lands within minutes; one waiting days was never announced (the
  endpoint is not subscribed to the refund events, or the event was lost) or is stuck at the
  provider (alert; runbook "Refund not landing").
* darkroom_webhook_events_open{provider, status}: payment and payout webhook events `received`
  but not processed yet, and `failed` ones (a paid checkout whose webhook failed delivers
  nothing until it is replayed: alert on `failed`). One an operator dealt with outside Darkroom
  and marked `resolved` (`apps.payments.resolution`) is no longer open.
* darkroom_receipts_unsent{state}: receipts of paid checkouts not sent yet, `retrying` within
  RECEIPT_MAX_ATTEMPTS and `exhausted` past it (they wait for an operator: alert on any).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from apps.commerce.models import Provider, Refund
from apps.payments.models import WebhookEvent
from apps.tenancy.context import system_context

logger = logging.getLogger("darkroom.commerce.metrics")

OPEN_WEBHOOK_STATUSES = (WebhookEvent.Status.RECEIVED, WebhookEvent.Status.FAILED)

# Report nothing while the ops registry describes collectors at app start (maybe before migrate).
_registered = False


def mark_registered() -> None:
    global _registered
    _registered = True


@dataclass(frozen=True)
class _Figures:
    refunds: dict[str, int]
    oldest_requested: float
    oldest_unlanded: dict[str, float]
    failed_after_landing: int
    second_charges: dict[str, int]
    webhooks: dict[tuple[str, str], int]
    receipts: dict[str, int]


def _figures() -> _Figures:
    with system_context("commerce metrics"), connection.cursor() as cursor:
        cursor.execute(
            "SELECT status, count(*),"
            " count(*) FILTER (WHERE provider_failed_at > landed_at),"
            " coalesce(extract(epoch FROM now() - min(created_at)), 0)"
            " FROM commerce_refund GROUP BY status"
        )
        by_status = {str(status): (int(n), int(failed), float(age)) for status, n, failed, age in cursor.fetchall()}
        cursor.execute(
            "SELECT t.provider, extract(epoch FROM now() - min(r.submitted_at)) FROM commerce_refund AS r"
            " JOIN commerce_transaction AS t ON t.id = r.transaction_id"
            " WHERE r.status = 'submitted' AND r.landed_at IS NULL GROUP BY t.provider"
        )
        oldest_unlanded = {str(provider): float(age) for provider, age in cursor.fetchall()}
        cursor.execute(
            "SELECT t.provider, count(*) FROM commerce_refund AS r"
            " JOIN commerce_transaction AS t ON t.id = r.transaction_id"
            " WHERE r.reason = %s GROUP BY t.provider",
            [Refund.Reason.DUPLICATE_CHARGE.value],
        )
        second_charges = {str(provider): int(n) for provider, n in cursor.fetchall()}
        cursor.execute(
            "SELECT provider, status, count(*) FROM payments_webhookevent WHERE status = ANY(%s)"
            " GROUP BY provider, status",
            [list(OPEN_WEBHOOK_STATUSES)],
        )
        webhooks = {(str(p), str(s)): int(n) for p, s, n in cursor.fetchall()}
        cursor.execute(
            "SELECT count(*) FILTER (WHERE attempts < %s), count(*) FILTER (WHERE attempts >= %s)"
            " FROM commerce_receipt WHERE status <> 'sent'",
            [settings.RECEIPT_MAX_ATTEMPTS, settings.RECEIPT_MAX_ATTEMPTS],
        )
        retrying, exhausted = cursor.fetchone()  # type: ignore[misc]
    return _Figures(
        refunds={status: n for status, (n, _, _) in by_status.items()},
        oldest_requested=by_status.get(Refund.Status.REQUESTED, (0, 0, 0.0))[2],
        oldest_unlanded=oldest_unlanded,
        failed_after_landing=sum(failed for _, failed, _ in by_status.values()),
        second_charges=second_charges,
        webhooks=webhooks,
        receipts={"retrying": int(retrying), "exhausted": int(exhausted)},
    )


def collect_commerce_metrics() -> Iterable[Metric]:
    if not _registered:
        return
    try:
        figures = _figures()
    except Exception:
        logger.warning("commerce metrics unavailable (database)", exc_info=True)
        return
    family = GaugeMetricFamily("darkroom_refunds", "Refunds per status.", labels=["status"])
    for status in Refund.Status.values:
        family.add_metric([status], figures.refunds.get(status, 0))
    yield family
    yield CounterMetricFamily(
        "darkroom_refunds_failed_after_landing",
        "Refunds the provider reported failed after they had landed (the shopper did not get the money).",
        value=figures.failed_after_landing,
    )
    second = CounterMetricFamily(
        "darkroom_refunds_second_charge",
        "Second charges of payments already paid (the shopper charged twice), each given back by a refund.",
        labels=["provider"],
    )
    for provider in Provider.values:
        second.add_metric([provider], figures.second_charges.get(provider, 0))
    yield second
    yield GaugeMetricFamily(
        "darkroom_refunds_oldest_requested_age_seconds",
        "Age of the oldest refund not yet submitted to its provider (0 when none).",
        value=figures.oldest_requested,
    )
    unlanded = GaugeMetricFamily(
        "darkroom_refunds_oldest_unlanded_age_seconds",
        "Age of the oldest refund the provider accepted that no refund event has landed yet (0 when none).",
        labels=["provider"],
    )
    for provider in Provider.values:
        unlanded.add_metric([provider], figures.oldest_unlanded.get(provider, 0.0))
    yield unlanded
    open_events = GaugeMetricFamily(
        "darkroom_webhook_events_open",
        "Webhook events received but not processed yet, and failed ones, per provider.",
        labels=["provider", "status"],
    )
    for (provider, status), count in sorted(figures.webhooks.items()):
        open_events.add_metric([provider, status], count)
    yield open_events
    unsent = GaugeMetricFamily(
        "darkroom_receipts_unsent",
        "Receipts of paid checkouts not sent yet: retrying, or past RECEIPT_MAX_ATTEMPTS (exhausted).",
        labels=["state"],
    )
    for state, count in figures.receipts.items():
        unsent.add_metric([state], count)
    yield unsent
