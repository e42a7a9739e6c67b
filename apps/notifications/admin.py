"""Attendees and announcements in the Django admin (platform superusers, system context).

Everything here is written by the services (read-only): announcements are created and sent by
studios through the API, deliveries by the fan-out and the e-mail senders, photo alerts by the
drop-in jobs and their sender. The announcement list shows each one's derived status and
delivery counts.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.http import HttpRequest

from apps.core.admin_base import ReadOnlyAdmin
from apps.notifications.models import Announcement, AnnouncementDelivery, Attendee, Notification, PhotoAlert
from apps.notifications.selectors import AnnouncementStatus, announcement_status, announcement_statuses


@admin.register(Attendee)
class AttendeeAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "tenant",
        "event",
        "email",
        "name",
        "email_consent",
        "photo_alerts_at",
        "unsubscribed_at",
        "created_at",
    )
    list_filter = ("email_consent",)
    search_fields = ("=email",)
    ordering = ("-id",)
    list_select_related = ("tenant", "event")
    show_full_result_count = False


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "attendee", "kind", "title", "created_at", "read_at")
    list_filter = ("kind",)
    search_fields = ("=dedupe_key", "=attendee__email")
    ordering = ("-id",)
    list_select_related = ("tenant", "attendee")
    show_full_result_count = False


@admin.register(PhotoAlert)
class PhotoAlertAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "attendee", "due_at", "sent_count", "last_sent_at", "attempts", "last_error")
    search_fields = ("=attendee__email",)
    ordering = ("-id",)
    list_select_related = ("tenant", "attendee")
    show_full_result_count = False


class AnnouncementChangeList(ChangeList):
    """Derives the page's statuses with one grouped count (`announcement_statuses`), not two
    queries per row."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        self.result_list = list(self.result_list)
        statuses = announcement_statuses(self.result_list)
        for announcement in self.result_list:
            announcement.derived_status = statuses[announcement.pk]


@admin.register(Announcement)
class AnnouncementAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "event", "title", "status", "counts", "send_requested_at", "fanout_completed_at")
    search_fields = ("title",)
    ordering = ("-id",)
    list_select_related = ("tenant", "event")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return AnnouncementChangeList

    @staticmethod
    def _status(obj: Announcement) -> AnnouncementStatus:
        derived = getattr(obj, "derived_status", None)
        return derived if derived is not None else announcement_status(obj)

    @admin.display(description="status")
    def status(self, obj: Announcement) -> str:
        return self._status(obj).status

    @admin.display(description="delivered / failed / pending")
    def counts(self, obj: Announcement) -> str:
        status = self._status(obj)
        return f"{status.delivered} / {status.failed} / {status.pending}"


@admin.register(AnnouncementDelivery)
class AnnouncementDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "announcement", "attendee", "channel", "status", "attempts", "delivered_at")
    list_filter = ("status", "channel")
    search_fields = ("=announcement__id", "=attendee__email")
    ordering = ("-id",)
    list_select_related = ("tenant", "announcement", "attendee")
    show_full_result_count = False
