"""API routes of drop-in (mounted under /api/v1/ by config/urls.py)."""

from django.urls import URLPattern, path

from apps.dropin import apis

urlpatterns: list[URLPattern] = [
    path("events/<int:event_id>/selfies", apis.EventSelfiesApi.as_view(), name="event-selfies"),
    path("attendees/<int:attendee_id>/face", apis.AttendeeFaceApi.as_view(), name="attendee-face"),
    path("photos/<int:photo_id>/dropin", apis.PhotoDropInApi.as_view(), name="photo-dropin"),
]
