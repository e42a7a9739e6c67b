"""Attendee pages (mounted at / by config/urls.py); the signed token is the credential."""

from django.urls import URLPattern, path

from apps.notifications import views

urlpatterns: list[URLPattern] = [
    path("attendee/<str:token>/", views.inbox, name="attendee-inbox"),
    path("attendee/<str:token>/read", views.mark_read, name="attendee-read"),
    path("attendee/<str:token>/unsubscribe", views.unsubscribe, name="attendee-unsubscribe"),
]
