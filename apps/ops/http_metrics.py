"""HTTP request metrics (rate, errors, duration), counted by the first middleware of the stack.

* `darkroom_http_requests_total{method, route, status}`: answered requests.
* `darkroom_http_request_duration_seconds{method, route}`: a histogram of the time from the
  request reaching Django to its response leaving the middleware stack (a streamed body's
  transfer is not included). Buckets from 5 ms to 10 s, finest around DESIGN's API targets
  (p99 50 ms, warning at 100 ms: both are bucket bounds, so an alert on them is exact); past
  10 s lies only gunicorn's 30 s timeout.
* `darkroom_http_requests_in_progress`: requests being answered now, across the live worker
  processes (a worker killed mid-request is forgotten by `config/gunicorn_conf.py`'s child_exit,
  which first counts its requests in progress as lost: `apps.ops.worker_deaths`).

Labels stay bounded whatever clients send: `route` is the URL pattern that answered
(`/api/v1/checkouts/<uuid:checkout_id>`, `/` for the home page), never the path; a static file
(WhiteNoise, a middleware, answers under STATIC_URL before any pattern: the page icon, the
admin's stylesheets) is `static`, found or not (its status says which); any other path no
pattern matches is `unmatched`; `method` is one of the methods the views answer, else `other`;
`status` is the exact code (the app answers a few dozen codes, each route a handful of them, and
a 409, a 413 and a 429 call for different actions; the histogram, the many-series metric, has
no status label).

Not counted: /metrics, /healthz and /readyz. They are the monitoring's own requests, made every
few seconds by Prometheus and load balancers whatever the traffic: counted, they would swell
the request rate of a quiet site, dilute its error share, and /metrics (which asks the database
and the broker) would time itself. Their health shows in `up` and the scrape's own duration.

Under gunicorn these add up across the worker processes through prometheus_client's
multiprocess mode (see `apps.ops.metrics`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from prometheus_client import Counter, Gauge, Histogram

from apps.ops.metrics import PROCESS_REGISTRY
from apps.ops.worker_deaths import IN_PROGRESS_NAME

UNMATCHED = "unmatched"
STATIC = "static"
UNCOUNTED_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "darkroom_http_requests",
    "HTTP requests answered, by method, URL pattern (route) and status code.",
    ["method", "route", "status"],
    registry=PROCESS_REGISTRY,
)
DURATION = Histogram(
    "darkroom_http_request_duration_seconds",
    "Time to answer an HTTP request (until the response leaves Django), by method and URL pattern.",
    ["method", "route"],
    buckets=DURATION_BUCKETS,
    registry=PROCESS_REGISTRY,
)
IN_PROGRESS = Gauge(
    IN_PROGRESS_NAME,
    "HTTP requests being answered now, summed over the live web worker processes.",
    multiprocess_mode="livesum",
    registry=PROCESS_REGISTRY,
)


# (method, route, status) -> its counter and histogram: `labels()` validates its arguments and
# takes a lock at every call; a plain lookup saves about a third of the middleware's own time. Its
# size is the labels' cardinality; two threads racing on a new key both get labels()'s same child.
_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def _series_of(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    key = (method, route, status)
    series = _series.get(key)
    if series is None:
        series = _series[key] = (REQUESTS.labels(method, route, str(status)), DURATION.labels(method, route))
    return series


def static_prefix() -> str:
    """The path (`path_info`) under which WhiteNoise answers static files, worked out as
    WhiteNoise does: WHITENOISE_STATIC_PREFIX, else STATIC_URL's path less FORCE_SCRIPT_NAME."""
    prefix = getattr(settings, "WHITENOISE_STATIC_PREFIX", None)
    if prefix is None:
        prefix = urlsplit(settings.STATIC_URL or "").path
        script_name = (settings.FORCE_SCRIPT_NAME or "").rstrip("/")
        if script_name and prefix.startswith(script_name):
            prefix = prefix[len(script_name) :]
    return "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"


def request_route(request: HttpRequest, status: int, static: str | None = None) -> str:
    """The URL pattern that answered `request`, STATIC for a path under `static` (the static
    files' prefix) that no pattern answered, or UNMATCHED.

    Django records the pattern once it resolved the path; a request a middleware answered before
    that (a 413 for its body, a 400 for its host, a static file) is resolved here. A 404 without
    a resolution is a path no pattern matches (resolving again would only repeat the miss)."""
    match = request.resolver_match
    if match is None:
        if static and static != "/" and request.path_info.startswith(static):
            return STATIC
        if status == 404:
            return UNMATCHED
        try:
            match = resolve(request.path_info, getattr(request, "urlconf", None))
        except Resolver404:
            return UNMATCHED
    return f"/{match.route}"


class HttpMetricsMiddleware:
    """Count and time every request but the monitoring's own. First in MIDDLEWARE, so that what
    the other middleware answer themselves (a 413 for a body, a 404 problem, a 500 page) is counted,
    and the time they take is in every duration."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.static = static_prefix()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info in UNCOUNTED_PATHS:
            return self.get_response(request)
        started = time.perf_counter()
        IN_PROGRESS.inc()
        status = 500  # what the server answers if the stack below raises past Django's handlers
        try:
            response = self.get_response(request)
            status = response.status_code
            return response
        finally:
            elapsed = time.perf_counter() - started
            IN_PROGRESS.dec()
            method = request.method if request.method in METHODS else "other"
            requests, duration = _series_of(method, request_route(request, status, self.static), status)
            requests.inc()
            duration.observe(elapsed)
