"""The sandbox provider's pages (mounted under /sandbox/)."""

from django.urls import URLPattern, path

from apps.payments import sandbox_views

urlpatterns: list[URLPattern] = [
    path("pay/<uuid:checkout_id>", sandbox_views.pay_page, name="sandbox-pay"),
    path("checkouts/<uuid:checkout_id>", sandbox_views.status_page, name="sandbox-status"),
]
