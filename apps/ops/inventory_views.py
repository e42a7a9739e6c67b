"""Operator page for hot stock: per-SKU pending depth, drain rate and writer lease.

Mounted by config/urls.py with `include("apps.ops.inventory_views")` under `ops/`, so the page
is `/ops/inventory` (`?format=json` for the same figures as JSON). Platform staff and
superusers only (others are sent to the admin login); it reads across tenants in the audited
system context.
"""

from __future__ import annotations

from dataclasses import asdict

from django.conf import settings
from django.contrib.auth.decorators import user_passes_test
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import path
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.commerce.batched import inventory_activity
from apps.tenancy.context import system_context


def _is_operator(user: object) -> bool:
    return bool(
        getattr(user, "is_active", False) and (getattr(user, "is_staff", False) or getattr(user, "is_superuser", False))
    )


@require_GET
@user_passes_test(_is_operator, login_url=settings.LOGIN_URL)
def inventory_page(request: HttpRequest) -> HttpResponse:
    window = int(settings.INVENTORY_OPS_RATE_WINDOW_SECONDS)
    with system_context("inventory operator page"):
        rows = inventory_activity(window_seconds=window)
    if request.GET.get("format") == "json":
        return JsonResponse({"window_seconds": window, "skus": [asdict(row) for row in rows]})
    context = {
        "rows": rows,
        "window_seconds": window,
        "now": timezone.now(),
        "strategy": settings.INVENTORY_STRATEGY,
        "batch_size": settings.INVENTORY_BATCH_SIZE,
        "total_pending": sum(row.pending_count for row in rows),
    }
    return render(request, "ops/inventory.html", context)


urlpatterns = [path("inventory", inventory_page, name="ops-inventory")]
