"""API routes of the payouts app (mounted under /api/v1/ by config/urls.py)."""

from django.urls import URLPattern, path

from apps.payouts import apis

urlpatterns: list[URLPattern] = [
    path("payouts", apis.PayoutListApi.as_view(), name="payout-list"),
    path("payouts/<uuid:payout_id>", apis.PayoutDetailApi.as_view(), name="payout-detail"),
    path("payouts/destinations", apis.PayoutDestinationListApi.as_view(), name="payout-destination-list"),
    path("payouts/destinations/<int:user_id>", apis.PayoutDestinationSetApi.as_view(), name="payout-destination-set"),
]
