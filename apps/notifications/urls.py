"""API routes of attendees and announcements (mounted under /api/v1/ by config/urls.py)."""

from django.urls import URLPattern, path

from apps.notifications import apis

urlpatterns: list[URLPattern] = [
    path("events/<int:event_id>/attendees", apis.EventAttendeesApi.as_view(), name="event-attendees"),
    path(
        "events/<int:event_id>/attendees/<int:attendee_id>/reset-link",
        apis.AttendeeLinkResetApi.as_view(),
        name="attendee-reset-link",
    ),
    path("announcements", apis.AnnouncementsApi.as_view(), name="announcement-list"),
    path("announcements/<int:announcement_id>", apis.AnnouncementDetailApi.as_view(), name="announcement-detail"),
    path("announcements/<int:announcement_id>/send", apis.AnnouncementSendApi.as_view(), name="announcement-send"),
]
