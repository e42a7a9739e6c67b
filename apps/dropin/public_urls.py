"""The attendee's drop-in page (mounted at / by config/urls.py); the signed token is the credential."""

from django.urls import URLPattern, path

from apps.dropin import views

urlpatterns: list[URLPattern] = [
    path("attendee/<str:token>/drop-in", views.dropin_page, name="attendee-dropin"),
    path("attendee/<str:token>/drop-in/delete", views.dropin_delete, name="attendee-dropin-delete"),
    path("attendee/<str:token>/drop-in/alerts", views.dropin_alerts, name="attendee-dropin-alerts"),
]
