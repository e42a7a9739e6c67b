"""Reads for payouts (operators' view: metrics, admin)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.models import QuerySet

from apps.payments.models import WebhookEvent
from apps.payouts.models import Payout, PayoutDestination


@dataclass(frozen=True)
class PayoutStats:
    by_status: dict[str, int]
    oldest_pending_age_seconds: float
    oldest_submitted_age_seconds: float
    running_batch_age_seconds: float | None
    last_completed_batch_age_seconds: float | None
    paid_after_failure: int


def payout_stats() -> PayoutStats:
    """Payouts per status, the ages of the oldest pending and submitted ones, how long the running batch has
    been running (None when no batch runs), how long ago the last batch over every due wallet (not a
    photographer's request) completed (None before the first), and how many failed payouts their provider
    reported paid afterwards. Across studios: call it in the system context."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT status, count(*) FROM payouts_payout GROUP BY status")
        by_status = {str(status): int(count) for status, count in cursor.fetchall()}
        cursor.execute(
            "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)"
            " FROM payouts_payout WHERE status = 'pending'"
        )
        oldest = float(cursor.fetchone()[0])
        cursor.execute(
            "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)"
            " FROM payouts_payout WHERE status = 'submitted'"
        )
        oldest_submitted = float(cursor.fetchone()[0])
        cursor.execute(
            "SELECT EXTRACT(EPOCH FROM now() - started_at) FROM payouts_payoutbatch WHERE status = 'running'"
        )
        running = cursor.fetchone()
        cursor.execute(
            "SELECT EXTRACT(EPOCH FROM now() - max(completed_at)) FROM payouts_payoutbatch"
            " WHERE status = 'completed' AND NOT wallet_request"
        )
        last_completed = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM payouts_payout WHERE paid_after_failure_at IS NOT NULL")
        paid_after_failure = int(cursor.fetchone()[0])
    return PayoutStats(
        by_status=by_status,
        oldest_pending_age_seconds=oldest,
        oldest_submitted_age_seconds=oldest_submitted,
        running_batch_age_seconds=float(running[0]) if running else None,
        last_completed_batch_age_seconds=float(last_completed) if last_completed is not None else None,
        paid_after_failure=paid_after_failure,
    )


def payout_destinations() -> QuerySet[PayoutDestination]:
    """The current tenant's destinations (RLS scopes them), by photographer."""
    return PayoutDestination.objects.order_by("owner_id")


def payouts_of_tenant(*, status: str | None = None) -> QuerySet[Payout]:
    """The current tenant's payouts (RLS scopes them), newest first."""
    payouts = Payout.objects.order_by("-created_at", "-id")
    return payouts.filter(status=status) if status else payouts


def payout_webhook_counts() -> dict[tuple[str, str], int]:
    """Processed payout webhook events by (provider, outcome) (`WebhookEvent.payout_outcome`:
    paid, submitted, failed, needs_review, unchanged, unknown_payout), through the partial index
    that holds payout events only. Across studios: call it in the system context."""
    table = WebhookEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT provider, payout_outcome, count(*) FROM {table}"
            " WHERE payout_outcome <> '' GROUP BY provider, payout_outcome"
        )
        return {(str(provider), str(outcome)): int(count) for provider, outcome, count in cursor.fetchall()}
