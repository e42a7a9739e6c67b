"""Webhook routes of the payments app (mounted under /webhooks/ by config/urls.py)."""

from django.urls import URLPattern, path

from apps.payments import apis

urlpatterns: list[URLPattern] = [
    path("<str:provider>", apis.WebhookReceiveApi.as_view(), name="webhook-receive"),
]
