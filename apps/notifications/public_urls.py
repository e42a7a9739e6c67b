"""Attendee pages (mounted at / by config/urls.py); the signed token is the credential."""

from django.urls import URLPattern, path

from apps.notifications import views

urlpatterns: list[URLPattern] = [
    path("attendee/link-sent/<str:token>", views.link_sent, name="attendee-link-sent"),
    path("attendee/<str:token>/", views.inbox, name="attendee-inbox"),
    path("attendee/<str:token>/read", views.mark_read, name="attendee-read"),
    path("attendee/<str:token>/unsubscribe", views.unsubscribe, name="attendee-unsubscribe"),
    path("attendee/<str:token>/new-link", views.new_link, name="attendee-new-link"),
    path("attendee/<str:token>/resubscribe", views.resubscribe, name="attendee-resubscribe"),
]
