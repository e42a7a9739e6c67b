"""Placeholder: filled by the shop UI."""

from django.urls import URLPattern

app_name = "shop"
urlpatterns: list[URLPattern] = []
