"""Webhook routes of the payments app (mounted under /webhooks/ by config/urls.py)."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
