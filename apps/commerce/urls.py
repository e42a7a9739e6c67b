"""API routes of the commerce app (mounted under /api/v1/ by config/urls.py)."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
