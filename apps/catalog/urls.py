"""API routes of the catalog app (mounted under /api/v1/ by config/urls.py)."""

from django.urls import URLPattern, path

from apps.catalog import apis

urlpatterns: list[URLPattern] = [
    path("events", apis.EventsApi.as_view(), name="catalog-events"),
    path("events/<int:event_id>", apis.EventDetailApi.as_view(), name="catalog-event-detail"),
    path("events/<int:event_id>/photos", apis.EventPhotosApi.as_view(), name="catalog-event-photos"),
    path("events/<int:event_id>/products", apis.EventProductsApi.as_view(), name="catalog-event-products"),
    path(
        "events/<int:event_id>/products/downloads",
        apis.EventDownloadsOfferApi.as_view(),
        name="catalog-event-downloads-offer",
    ),
    path(
        "events/<int:event_id>/products/downloads/stop",
        apis.EventDownloadsStopApi.as_view(),
        name="catalog-event-downloads-stop",
    ),
    path("events/<int:event_id>/prices", apis.EventPricesApi.as_view(), name="catalog-event-prices"),
    path(
        "events/<int:event_id>/prices/currency",
        apis.EventPriceCurrencyApi.as_view(),
        name="catalog-event-prices-currency",
    ),
    path("photos/<int:photo_id>/withdraw", apis.PhotoWithdrawApi.as_view(), name="catalog-photo-withdraw"),
    path("products/<int:product_id>", apis.ProductDetailApi.as_view(), name="catalog-product-detail"),
    path("products/<int:product_id>/restock", apis.ProductRestockApi.as_view(), name="catalog-product-restock"),
]
