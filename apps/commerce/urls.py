"""API routes of the commerce app (mounted under /api/v1/ by config/urls.py)."""

from django.urls import URLPattern, path

from apps.commerce import apis

urlpatterns: list[URLPattern] = [
    path("checkouts", apis.CheckoutCreateApi.as_view(), name="checkout-create"),
    path("checkouts/<uuid:checkout_id>", apis.CheckoutDetailApi.as_view(), name="checkout-detail"),
    path(
        "checkouts/<uuid:checkout_id>/payment-session",
        apis.CheckoutPaymentSessionApi.as_view(),
        name="checkout-payment-session",
    ),
    path("checkouts/<uuid:checkout_id>/refund", apis.CheckoutRefundApi.as_view(), name="checkout-refund"),
    path("entitlements", apis.EntitlementListApi.as_view(), name="entitlement-list"),
]
