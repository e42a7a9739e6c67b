"""Placeholder: filled by the studio UI."""

from django.urls import URLPattern

app_name = "studio"
urlpatterns: list[URLPattern] = []
