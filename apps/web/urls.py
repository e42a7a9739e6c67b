"""Pages of the web UI: shoppers under /s/<studio>/, the studio dashboard under /studio/."""

from django.urls import include, path

urlpatterns = [
    path("s/", include("apps.web.shop.urls")),
    path("studio/", include("apps.web.studio.urls")),
]
