"""Every mutating endpoint under /api/ enforces the Idempotency-Key protocol.

Walks the live URL map. For each pattern under `api/`:
* a DRF view that implements POST/PUT/PATCH/DELETE must be a TenantApi without
  `idempotency_exempt`, AND must answer that method without the header with the 400 problem
  (an authenticated owner sends it, so only the protocol can refuse it that early);
* any other view must refuse a mutating method without the header (405 or the 400 problem).
A new mutating API view that bypasses the protocol makes this test fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.views import APIView

from apps.idempotency.protocol import MUTATING_METHODS
from apps.tenancy.apis import TenantApi

pytestmark = pytest.mark.django_db

SAMPLES = {"int": "1", "str": "x", "slug": "x", "path": "x", "uuid": "00000000-0000-0000-0000-000000000001"}
MISSING_KEY = "/problems/idempotency-key-missing"


def _walk(patterns: list, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, route)
        else:
            yield route, pattern


def _concrete(route: str) -> str | None:
    """A requestable path for a route (converters filled with samples), or None if it is a regex."""
    path = re.sub(r"<(?:(\w+):)?\w+>", lambda m: SAMPLES.get(m.group(1) or "str", "x"), route)
    path = path.replace("^", "").replace("$", "")
    if re.search(r"[()\[\]\\?*+|{}]", path):
        return None
    return "/" + path


def _mutating_methods(pattern: URLPattern) -> tuple[type | None, set[str]]:
    callback = pattern.callback
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    actions = getattr(callback, "actions", None)
    if actions:
        return view_class, {method.upper() for method in actions} & MUTATING_METHODS
    if view_class is not None and issubclass(view_class, APIView):
        return view_class, {m for m in MUTATING_METHODS if hasattr(view_class, m.lower())}
    return view_class, set()


def unprotected_mutating_endpoints(client: Client, urlconf: str | None = None) -> tuple[list[str], list[str]]:
    """(offences, checked endpoints) for every pattern under api/ in `urlconf`."""
    offences: list[str] = []
    checked: list[str] = []
    for route, pattern in _walk(get_resolver(urlconf).url_patterns):
        if not route.lstrip("^").startswith("api/"):
            continue
        url = _concrete(route)
        view_class, methods = _mutating_methods(pattern)
        if url is None:
            offences.append(f"{route}: cannot build a URL for a regex route; extend this test")
            continue
        is_drf = view_class is not None and issubclass(view_class, APIView)
        for method in sorted(methods if is_drf else MUTATING_METHODS):
            response = client.generic(method, url, data=b"{}", content_type="application/json")
            missing_key = response.status_code == 400 and response.get("Content-Type") == "application/problem+json"
            missing_key = missing_key and response.json().get("type") == MISSING_KEY
            if not is_drf:
                if not (response.status_code == 405 or missing_key):
                    offences.append(f"{method} {url}: non-DRF view answered {response.status_code} without a key")
                continue
            checked.append(f"{method} {url}")
            assert view_class is not None
            if not issubclass(view_class, TenantApi):
                offences.append(f"{method} {url}: {view_class.__name__} is not a TenantApi")
            elif view_class.idempotency_exempt:
                offences.append(f"{method} {url}: {view_class.__name__} sets idempotency_exempt under /api/")
            if not missing_key:
                offences.append(f"{method} {url}: answered {response.status_code} without an Idempotency-Key")
    return offences, checked


@pytest.fixture
def owner(tenant_a, client: Client) -> Client:
    client.force_login(tenant_a.owner)
    return client


def test_every_mutating_api_endpoint_enforces_the_protocol(owner):
    # given: the project's URL map and a signed-in studio owner
    # when: every mutating API endpoint is inspected and called without an Idempotency-Key
    offences, checked = unprotected_mutating_endpoints(owner)
    # then: none bypasses the protocol (and the walk did reach the known mutating endpoint)
    assert offences == []
    assert "POST /api/v1/tenancy/api-keys" in checked


def test_the_walk_catches_each_kind_of_bypass(owner, settings):
    # given: a URL map with a plain APIView, an exempt TenantApi and a TenantApi skipping the check
    settings.ROOT_URLCONF = "tests.idempotency.bypass_urls"
    # when: the same inspection runs over it
    offences, _ = unprotected_mutating_endpoints(owner, "tests.idempotency.bypass_urls")
    # then: each bypass is reported, and the real endpoints still pass
    text = "\n".join(offences)
    assert "POST /api/v1/plain: PlainMutatingApi is not a TenantApi" in text
    assert "POST /api/v1/plain: answered 201 without an Idempotency-Key" in text
    assert "PUT /api/v1/exempt/1: ExemptMutatingApi sets idempotency_exempt under /api/" in text
    assert "DELETE /api/v1/sneaky/x: answered 204 without an Idempotency-Key" in text
    assert len(offences) == 5
