"""Shopper-facing routes outside the API (mounted at / by config/urls.py): signed downloads and
the sandbox provider's pages."""

from django.urls import URLPattern, URLResolver, include, path

from apps.commerce import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("downloads/<str:token>", views.download, name="commerce-download"),
    path("sandbox/", include("apps.payments.sandbox_urls")),
]
