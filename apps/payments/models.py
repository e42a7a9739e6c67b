"""The webhook event ledger: every authenticated provider delivery, recorded once.

`WebhookEvent` is written by `POST /webhooks/<provider>` before anything is processed (record
first, process after: a failing handler never loses the delivery, see DESIGN "Known traps").
It is unique per (provider, event id), so a duplicate delivery finds the row and is answered
200 without a second record or a second outbox message.

Tenancy: the tenant is only known once the event is parsed and its checkout found, so
`tenant_id` is null when the row is recorded (the `untenanted_insert` RLS policy allows exactly
that) and set by the processor, which reads across tenants in the audited system context.
A tenant context sees only its own (processed) events. A payout event takes its payout's tenant;
one for a payout Darkroom does not know stays untenanted (ignored, and counted).

An event that failed for good (a `SessionMismatch`, a `PaidWithoutAmount`) is dealt with outside
Darkroom (its charge refunded in the provider's dashboard, say); an operator then records that it
was: `resolved` (`apps.payments.resolution.webhook_events_resolve`), with who, when and how. Its
error and traceback stay for the record; it is no longer open (the metric
`darkroom_webhook_events_open` counts `received` and `failed` ones), nor replayed or processed.
"""

from __future__ import annotations

import uuid

from django.db import models

from apps.tenancy.models import Organization


class WebhookEvent(models.Model):
    """One provider event. Status: `received` → `processed` | `ignored` (unknown or
    informational event type) | `failed` (`error`, `traceback`; retried, replayable) →
    `resolved` (an operator dealt with a failed one: `resolved_at`, `resolved_by`,
    `resolution_note`; final)."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed"
        RESOLVED = "resolved", "Resolved by an operator"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Organization, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    provider = models.CharField(max_length=20)
    event_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=100)
    # What the envelope said at receipt (the processor re-parses the raw body; these are for
    # operators and lookups).
    payment_status = models.CharField(max_length=20, blank=True, default="")
    reference = models.CharField(max_length=255, blank=True, default="")
    checkout_id = models.UUIDField(null=True, blank=True)
    # Payout events (transfers, payout items): the payout the event settled, and what it did to it
    # (`apps.payouts.services.PayoutEventOutcome`: paid, submitted, failed, needs_review,
    # unchanged, unknown_payout); blank for payment events. Counted by provider and outcome in
    # the metric darkroom_payout_webhooks_total. A database default as well, so a process still
    # running the previous release (whose insert does not name the column) keeps recording.
    payout_id = models.UUIDField(null=True, blank=True)
    payout_outcome = models.CharField(max_length=20, blank=True, default="", db_default="")
    raw_body = models.BinaryField()
    headers = models.JSONField(default=dict)
    received_at = models.DateTimeField()
    # When a `webhook.received` message for this event was last written to the outbox (at
    # receipt, replay or requeue). A `received` event queued long ago lost its message (the
    # broker forgot it): `webhook_events_requeue_stale` queues it again.
    queued_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    attempts = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=200, blank=True, default="")
    error = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    processed_at = models.DateTimeField(null=True, blank=True)
    # A failed event an operator resolved: when, who (the audit's actor label: "admin:<user>",
    # the command's --actor) and what they did. Database defaults as well, so a process still
    # running the previous release (whose insert does not name the columns) keeps recording.
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True, default="", db_default="")
    resolution_note = models.TextField(blank=True, default="", db_default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "event_id"], name="payments_webhook_unique_provider_event"),
            models.CheckConstraint(
                condition=models.Q(status__in=["received", "processed", "ignored", "failed", "resolved"]),
                name="payments_webhook_status_valid",
            ),
            # Resolved exactly when resolved_at is set, and never without the operator's note.
            models.CheckConstraint(
                condition=(models.Q(status="resolved", resolved_at__isnull=False) & ~models.Q(resolution_note=""))
                | (~models.Q(status="resolved") & models.Q(resolved_at__isnull=True)),
                name="payments_webhook_resolved_when",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "received_at"], name="payments_webhook_status_recv"),
            models.Index(fields=["checkout_id"], name="payments_webhook_checkout"),
            models.Index(
                fields=["payout_id"], name="payments_webhook_payout", condition=models.Q(payout_id__isnull=False)
            ),
            models.Index(
                fields=["provider", "payout_outcome"],
                name="payments_webhook_payout_out",
                condition=~models.Q(payout_outcome=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.event_id} {self.event_type} ({self.status})"
