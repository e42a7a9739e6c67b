"""Attendees, their notifications, and the studios' announcements to them.

* `Attendee`: a person who registered for an event (by the studio's import or, later, a selfie
  registration), identified by e-mail within (studio, event). `email_consent` records whether
  they agreed to e-mail; `unsubscribed_at` ends every announcement to them (until they
  resubscribe). `link_generation` names their one current signed link; replacing the link
  bumps it.
* `Notification`: one thing an attendee is told (an announcement, new photos of them). One per
  (attendee, `dedupe_key`): a redelivered job never tells them twice. One read state for every
  kind: `read_at`, set once.
* `Announcement`: a studio's message to an event's attendees. Its fan-out (fenced lease
  `announcements:fanout:<id>`) walks the audience in attendee-id order, `fanout_cursor` being
  the last attendee done; each chunk's deliveries, notifications and cursor commit together.
  Its audience is fixed when it is sent (`audience_upto`): whoever registers later is not told.
  Its status is derived from its deliveries (`apps.notifications.selectors.announcement_status`),
  never stored.
* `AnnouncementDelivery`: one per (announcement, attendee), with its notification. `in_app`
  deliveries (no e-mail consent) are delivered when written; `email` ones are pending until a
  sender claims them (`claim_token`, `claimed_until`), sends outside any transaction, and records
  delivered or failed.
* `PhotoAlert`: the e-mail telling an attendee who asked for it (`Attendee.photo_alerts_at`) that
  new photos of them arrived; one row per attendee, re-armed by every drop-in match
  (`apps.notifications.photo_alerts`). `due_at` is when the next e-mail is owed (NULL: none);
  `generation` counts the arming, so a sender can tell whether photos arrived while it sent.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from apps.tenancy.models import TenantModel


class Attendee(TenantModel):
    event = models.ForeignKey("catalog.Event", on_delete=models.PROTECT, related_name="attendees")
    email = models.EmailField()  # lower-cased by the service
    name = models.CharField(max_length=200, blank=True, default="")
    email_consent = models.BooleanField(default=False)
    consent_recorded_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    # When the attendee asked to be e-mailed about new photos of them (drop-in); NULL: not asked.
    photo_alerts_at = models.DateTimeField(null=True, blank=True)
    # Which of their signed links is current (`apps.notifications.selectors.attendee_token`):
    # +1 each time the link is replaced, which retires every earlier one.
    link_generation = models.PositiveIntegerField(default=0, db_default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "event", "email"], name="notifications_attendee_one_per_email"),
            models.CheckConstraint(condition=models.Q(email=Lower("email")), name="notifications_attendee_email_lower"),
            models.CheckConstraint(condition=~models.Q(email=""), name="notifications_attendee_email_not_empty"),
            models.CheckConstraint(
                condition=models.Q(email_consent=False) | models.Q(consent_recorded_at__isnull=False),
                name="notifications_attendee_consent_recorded",
            ),
        ]
        # The fan-out's audience scan: an event's attendees in id order, from a cursor.
        indexes = [models.Index(fields=["event", "id"], name="notif_attendee_event")]

    def __str__(self) -> str:
        return f"attendee {self.pk}: {self.email} (event {self.event_id})"


class Notification(TenantModel):
    class Kind(models.TextChoices):
        ANNOUNCEMENT = "announcement", "Announcement"
        NEW_PHOTOS = "new_photos", "New photos of you"

    attendee = models.ForeignKey(Attendee, on_delete=models.PROTECT, related_name="notifications")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # What the notification is about, e.g. "announcement:42": one notification per attendee and key.
    dedupe_key = models.CharField(max_length=100)
    title = models.CharField(max_length=200)
    body = models.TextField()
    link = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "attendee", "dedupe_key"], name="notifications_notification_once_per_key"
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=["announcement", "new_photos"]), name="notifications_notification_kind"
            ),
            models.CheckConstraint(
                condition=models.Q(read_at__isnull=True) | models.Q(read_at__gte=models.F("created_at")),
                name="notifications_notification_read_after_created",
            ),
        ]
        indexes = [models.Index(fields=["attendee", "-created_at"], name="notif_notification_inbox")]

    def __str__(self) -> str:
        return f"notification {self.pk} to attendee {self.attendee_id}: {self.title}"


class Announcement(TenantModel):
    event = models.ForeignKey("catalog.Event", on_delete=models.PROTECT, related_name="announcements")
    title = models.CharField(max_length=200)
    body = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by_label = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    send_requested_at = models.DateTimeField(null=True, blank=True)
    fanout_queued_at = models.DateTimeField(null=True, blank=True)  # its outbox message, last written
    fanout_cursor = models.BigIntegerField(default=0)  # last attendee id fanned out to
    # The audience is the event's attendees as the send found them: ids up to this one (ids follow
    # insertion, so one registered later has a larger id). NULL: sent before the bound existed.
    audience_upto = models.BigIntegerField(null=True, blank=True)
    fanout_completed_at = models.DateTimeField(null=True, blank=True)
    recipients = models.IntegerField(default=0)  # deliveries written so far

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(fanout_completed_at__isnull=True) | models.Q(send_requested_at__isnull=False),
                name="notifications_announcement_fanout_after_send",
            ),
            models.CheckConstraint(
                condition=models.Q(recipients__gte=0, fanout_cursor__gte=0), name="notifications_announcement_counts"
            ),
        ]

    def __str__(self) -> str:
        return f"announcement {self.pk}: {self.title}"


class AnnouncementDelivery(TenantModel):
    class Channel(models.TextChoices):
        EMAIL = "email", "E-mail"
        IN_APP = "in_app", "In-app only"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    announcement = models.ForeignKey(Announcement, on_delete=models.PROTECT, related_name="deliveries")
    attendee = models.ForeignKey(Attendee, on_delete=models.PROTECT, related_name="+")
    notification = models.OneToOneField(Notification, on_delete=models.PROTECT, related_name="+")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.IntegerField(default=0)
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    queued_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "announcement deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["announcement", "attendee"], name="notifications_delivery_one_per_attendee"
            ),
            models.CheckConstraint(
                condition=models.Q(channel__in=["email", "in_app"]), name="notifications_delivery_channel"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "delivered", "failed"]), name="notifications_delivery_status"
            ),
            # Nothing to send for an in-app delivery: it is delivered when written.
            models.CheckConstraint(
                condition=models.Q(channel="email") | models.Q(status="delivered"),
                name="notifications_delivery_in_app_delivered",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="delivered") | models.Q(delivered_at__isnull=False),
                name="notifications_delivery_delivered_at",
            ),
        ]
        indexes = [
            models.Index(fields=["announcement", "status"], name="notif_delivery_by_status"),
            # Senders and the lost-message sweep: pending e-mails by announcement and attendee.
            models.Index(
                fields=["announcement", "attendee"],
                name="notif_delivery_pending",
                condition=models.Q(status="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"delivery of announcement {self.announcement_id} to attendee {self.attendee_id} ({self.status})"


class PhotoAlert(TenantModel):
    attendee = models.ForeignKey(Attendee, on_delete=models.CASCADE, related_name="+", db_index=False)
    due_at = models.DateTimeField(null=True, blank=True)  # the next e-mail is owed from then
    generation = models.BigIntegerField(default=1)  # +1 each time a match arms it
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    attempts = models.IntegerField(default=0)  # sends of the owed e-mail without a final answer
    sent_count = models.IntegerField(default=0)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "attendee"], name="notifications_photoalert_one_per_attendee"),
            models.CheckConstraint(
                condition=models.Q(generation__gte=1, attempts__gte=0, sent_count__gte=0),
                name="notifications_photoalert_counts",
            ),
            models.CheckConstraint(
                condition=models.Q(claim_token__isnull=True) | models.Q(claimed_until__isnull=False),
                name="notifications_photoalert_claim_has_deadline",
            ),
        ]
        # The sender's scan: owed e-mails, oldest first.
        indexes = [
            models.Index(fields=["due_at"], name="notif_photoalert_due", condition=models.Q(due_at__isnull=False))
        ]

    def __str__(self) -> str:
        return f"photo alert of attendee {self.attendee_id} (due {self.due_at})"
