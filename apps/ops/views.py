"""The service's home page and its operator endpoints: /healthz, /readyz, /metrics."""

from __future__ import annotations

import hmac
import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from apps.core.problems import problem_response
from apps.ops import health, metrics
from apps.tenancy.management.commands.seed_demo import DEMO_SLUG
from apps.tenancy.models import Organization

logger = logging.getLogger("darkroom.ops.health")


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """`/`: what this service is and where its shop (the demo studio's, when `seed_demo` made
    it), dashboard, API docs, admin and operator pages are."""
    demo_shop = Organization.objects.filter(slug=DEMO_SLUG).exists()
    return render(request, "home.html", {"demo_shop": DEMO_SLUG if demo_shop else None})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving; touches nothing else."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Database and migrations: 503 naming what failed. Redis is reported, never failing: while
    it is unreachable the answer is still 200, `status` "degraded" and `degraded` naming it (the
    web serves without Redis). Why a check failed (an exception's text may name hosts, users and
    URLs) is logged, and shown only to callers allowed to read /metrics (its bearer token, when
    one is configured): the endpoint itself is public."""
    checks = health.readiness()
    failing = [c.name for c in checks if not c.ok and c.required]
    degraded = [c.name for c in checks if not c.ok and not c.required]
    for check in checks:
        if not check.ok:
            logger.warning(
                "readiness check failed" if check.required else "readiness check degraded",
                extra={"check": check.name, "detail": check.detail},
            )
    show_detail = _metrics_caller_allowed(request)
    body: dict[str, object] = {
        "status": "unavailable" if failing else "degraded" if degraded else "ready",
        "checks": {c.name: {"ok": c.ok, **({"detail": c.detail} if c.detail and show_detail else {})} for c in checks},
    }
    if failing:
        body["failing"] = failing
    if degraded:
        body["degraded"] = degraded
    return JsonResponse(body, status=503 if failing else 200)


def _metrics_caller_allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_BEARER_TOKEN
    if not token:
        return True  # local development: no token configured (production requires one)
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credential.strip().encode(), token.encode())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text. With METRICS_BEARER_TOKEN set (required in production), only a scraper
    sending `Authorization: Bearer <token>` gets it: the page shows how the business runs, and
    rendering it asks the broker and the database."""
    if not _metrics_caller_allowed(request):
        response = problem_response(
            401, "Authentication required", "Send the metrics bearer token.", slug="not-authenticated"
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics.render(), content_type=CONTENT_TYPE_LATEST)
