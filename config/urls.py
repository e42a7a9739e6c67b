"""URL map: pages, API v1, schema and docs, webhooks, operator endpoints."""

from django.conf import settings
from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.catalog import views as catalog_views
from apps.core import problem_pages
from apps.ops import views as ops_views

api_v1 = [
    path("tenancy/", include("apps.tenancy.urls")),
    path("ledger/", include("apps.ledger.urls")),
    path("", include("apps.catalog.urls")),
    path("", include("apps.commerce.urls")),
    path("", include("apps.payouts.urls")),
    path("", include("apps.notifications.urls")),
    path("", include("apps.dropin.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its start-up script from a URL: the CSP allows no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    # Each problem's `type` (/problems/<slug>) is a page saying when it happens and what to do.
    path("problems/", problem_pages.problem_type_list, name="problem-types"),
    path("problems/<slug:slug>", problem_pages.problem_type_page, name="problem-type"),
    path("webhooks/", include("apps.payments.urls")),
    path("", include("apps.commerce.public_urls")),  # /downloads/<token>, /sandbox/ pages
    path("", include("apps.notifications.public_urls")),  # /attendee/<token>/: inbox, unsubscribe
    path("", include("apps.dropin.public_urls")),  # /attendee/<token>/drop-in: selfie for face matching
    path("", include("apps.web.urls")),  # /s/<studio>/: shoppers; /studio/: photographers and owners
    path("ops/", include("apps.ops.inventory_views")),  # /ops/inventory: hot-stock operator page
    path("", ops_views.home, name="home"),
    path("healthz", ops_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics_view, name="metrics"),
    # Pages name their icon; a browser asking for /favicon.ico by habit is sent on to it.
    path("favicon.ico", RedirectView.as_view(url=static("web/favicon.svg"), permanent=True)),
]

if settings.SERVE_PUBLIC_MEDIA:
    # Public derivatives from a storage without a web server of its own (apps/catalog/views.py).
    urlpatterns.append(
        path(
            f"{settings.MEDIA_URL.lstrip('/')}{settings.CATALOG_PUBLIC_PREFIX}/<path:path>",
            catalog_views.public_media,
            name="public-media",
        )
    )
