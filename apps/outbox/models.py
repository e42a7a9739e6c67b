"""The transactional outbox and the consumer inbox.

`OutboxMessage`: one row per side effect, written in the same transaction as the business rows
(`apps.outbox.services.outbox_publish`). Life cycle: pending → published, or pending → (retries
with backoff) → dead after `OUTBOX_MAX_ATTEMPTS` failed publishes; an audited replay moves a
dead letter back to pending. Rows carry `tenant_id` (null for platform messages) and are under
row-level security; the relay reads across tenants in the audited system context.

Two statement/row triggers NOTIFY the `darkroom_outbox` channel when pending rows appear (an
insert, or a replay); Postgres delivers the notification at COMMIT, never for a rollback, so a
relay woken by it always finds committed rows.

`InboxEntry`: one row per (consumer, message id) a consumer has applied, written in the same
transaction as the consumer's effect (`consume_once`), so a redelivered message is a no-op.
It has no tenant column: it only names a consumer and a random message id.
"""

from __future__ import annotations

import os
import time
import uuid

import pgtrigger
from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.utils import timezone

from apps.tenancy.models import Organization

NOTIFY_CHANNEL = "darkroom_outbox"
_NOTIFY_SQL = f"PERFORM pg_notify('{NOTIFY_CHANNEL}', ''); RETURN NULL;"


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7): ms timestamp, then 74 random bits.

    Keeps the primary key index append-mostly, unlike uuid4, at 1,000+ inserts/s.
    """
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a (12 bits)
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b (62 bits)
    return uuid.UUID(int=value)


# The topics whose lost messages are found by their consumer's missing inbox row
# (apps/outbox/unconsumed.py): the predicate of the partial index that sweep reads by, so that
# only these topics' rows pay for it.
LOST_MESSAGE_TOPICS = (
    "orders.links_requested",
    "checkout.shipped",
    "checkout.refunded",
    "tenancy.member_invited",
    "refund.restock_requested",
    "catalog.photo_withdrawn",
    "tenancy.password_reset_requested",
    "attendee.link_replaced",
    "refund.failed_after_landing",
    "dropin.face_forget",
    "tenancy.api_key_revoked",
)


class OutboxMessage(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PUBLISHED = "published", "Published"
        DEAD = "dead", "Dead-lettered"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # No index on tenant_id: the relay never filters by it, and every index costs each insert.
    tenant = models.ForeignKey(
        Organization, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    topic = models.CharField(max_length=200)
    aggregate_type = models.CharField(max_length=100)
    aggregate_id = models.CharField(max_length=100)
    payload = models.JSONField()
    headers = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [
            # The relay's claim: pending and due, oldest first (see relay.claim_batch).
            models.Index(
                fields=["next_attempt_at", "id"],
                name="outbox_pending_due",
                condition=models.Q(status="pending"),
            ),
            # Backlog age, dead-letter listing and the cleanup of old published rows.
            models.Index(fields=["status", "created_at"], name="outbox_status_created"),
            # The lost-message sweep of apps/outbox/unconsumed.py, over its topics only.
            models.Index(
                fields=["topic", "created_at"],
                name="outbox_lost_message_sweep",
                condition=models.Q(topic__in=LOST_MESSAGE_TOPICS),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "published", "dead"]), name="outbox_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(status="published", published_at__isnull=False)
                | (~models.Q(status="published") & models.Q(published_at__isnull=True)),
                name="outbox_published_at_iff_published",
            ),
        ]
        triggers = [
            pgtrigger.Trigger(
                name="outbox_notify_insert",
                level=pgtrigger.Statement,
                when=pgtrigger.After,
                operation=pgtrigger.Insert,
                func=_NOTIFY_SQL,
            ),
            pgtrigger.Trigger(
                name="outbox_notify_replay",
                level=pgtrigger.Row,
                when=pgtrigger.After,
                operation=pgtrigger.Update,
                condition=pgtrigger.Condition("OLD.status IS DISTINCT FROM NEW.status AND NEW.status = 'pending'"),
                func=_NOTIFY_SQL,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.topic} {self.id} ({self.status})"


class InboxEntry(models.Model):
    """A consumer has applied a message. Unique per (consumer, message id)."""

    consumer = models.CharField(max_length=200)
    message_id = models.UUIDField()
    processed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "inbox entries"
        constraints = [
            models.UniqueConstraint(fields=["consumer", "message_id"], name="outbox_inbox_unique_consumer_message"),
        ]
        # Rows are appended in time order and only deleted by age: BRIN is enough for cleanup.
        indexes = [BrinIndex(fields=["processed_at"], name="outbox_inbox_processed_brin")]

    def __str__(self) -> str:
        return f"{self.consumer} ← {self.message_id}"
