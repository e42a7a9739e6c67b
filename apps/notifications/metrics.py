"""Prometheus collectors for announcements, evaluated at scrape time (see apps/ops/metrics.py).

* darkroom_announcement_emails_pending: announcement e-mails not sent yet (a fan-out's chunks
  queue them by the thousand; they should drain within a minute).
* darkroom_announcement_emails_oldest_pending_age_seconds: an e-mail queued for long means the
  notifications worker is down or the mail server keeps failing (alert past a few minutes).
* darkroom_announcement_fanouts_unfinished: announcements asked to be sent whose fan-out has
  not reached the end of the audience yet.
* darkroom_photo_alerts_overdue / darkroom_photo_alerts_oldest_overdue_seconds: e-mail alerts of
  new photos past their due time; the beat task sends them within a sweep interval, so an
  oldest one minutes overdue means beat or the notifications worker is down, the drop-in kill
  switch is engaged, or the mail service keeps failing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from apps.notifications.selectors import delivery_stats
from apps.tenancy.context import system_context

logger = logging.getLogger("darkroom.notifications.metrics")

# Report nothing while the ops registry describes collectors at app start (maybe before migrate).
_registered = False


def mark_registered() -> None:
    global _registered
    _registered = True


def collect_notification_metrics() -> Iterable[Metric]:
    if not _registered:
        return
    try:
        with system_context("announcement metrics"):
            stats = delivery_stats()
    except Exception:
        logger.warning("announcement metrics unavailable (database)", exc_info=True)
        return
    yield GaugeMetricFamily(
        "darkroom_announcement_emails_pending", "Announcement e-mails not sent yet.", value=stats.pending_emails
    )
    yield GaugeMetricFamily(
        "darkroom_announcement_emails_oldest_pending_age_seconds",
        "Age of the oldest announcement e-mail not sent yet (0 when none).",
        value=stats.oldest_pending_age_seconds,
    )
    yield GaugeMetricFamily(
        "darkroom_announcement_fanouts_unfinished",
        "Announcements asked to be sent whose fan-out has not finished.",
        value=stats.unfinished_fanouts,
    )
    yield GaugeMetricFamily(
        "darkroom_photo_alerts_overdue",
        "E-mail alerts of new photos past their due time, not sent yet.",
        value=stats.photo_alerts_overdue,
    )
    yield GaugeMetricFamily(
        "darkroom_photo_alerts_oldest_overdue_seconds",
        "How long the most overdue e-mail alert of new photos has been owed (0 when none).",
        value=stats.oldest_overdue_photo_alert_seconds,
    )
