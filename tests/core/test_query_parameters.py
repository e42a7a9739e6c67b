"""The API refuses query parameters an operation does not take (a 400 naming them, nothing written).

A typo such as `?stauts=failed` used to be ignored: every payout came back as if no filter had
been asked for. Each view's `query_parameters` must equal what its schema documents.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.urls import Resolver404, resolve

from apps.catalog.models import Event
from apps.tenancy.apis import TenantApi
from apps.tenancy.context import tenant_context

pytestmark = pytest.mark.django_db

OPERATIONS = ("get", "post", "put", "patch", "delete")


def _view_class(path_template: str) -> type:
    """The view a documented path resolves to (its ids filled with a sample integer or UUID)."""
    try:
        match = resolve(re.sub(r"\{[^}]+\}", "1", path_template))
    except Resolver404:
        match = resolve(re.sub(r"\{[^}]+\}", str(uuid.UUID(int=1)), path_template))
    view_class: type = match.func.cls  # type: ignore[attr-defined]
    return view_class


def test_each_operation_takes_the_query_parameters_its_schema_documents(document: dict[str, Any]) -> None:
    mismatches = []
    checked = 0
    for path, item in document["paths"].items():
        view_class = _view_class(path)
        if not issubclass(view_class, TenantApi):
            continue
        for method in OPERATIONS:
            if method not in item:
                continue
            documented = {p["name"] for p in item[method].get("parameters", []) if p["in"] == "query"}
            taken = set(view_class.query_parameters) if method == "get" else set()
            checked += 1
            if documented != taken:
                mismatches.append(f"{method.upper()} {path}: documented {sorted(documented)}, taken {sorted(taken)}")
            if "400" not in item[method]["responses"]:
                mismatches.append(f"{method.upper()} {path}: no 400 documented")
    assert checked >= 40
    assert mismatches == []


def _problem(response: Any) -> dict[str, Any]:
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


def test_a_misspelt_filter_is_a_400_naming_it(tenant_a, client) -> None:
    client.force_login(tenant_a.owner)
    body = _problem(client.get("/api/v1/payouts?stauts=failed"))
    taken = "limit, offset, status"
    assert body["errors"] == {"stauts": [f"Not a query parameter of this operation, which takes: {taken}."]}
    assert client.get("/api/v1/payouts?status=failed&limit=5&offset=0").status_code == 200


def test_an_operation_without_query_parameters_refuses_every_one(tenant_a, client) -> None:
    client.force_login(tenant_a.owner)
    body = _problem(client.get("/api/v1/tenancy/whoami?verbose=1&debug"))
    assert set(body["errors"]) == {"debug", "verbose"}
    assert body["errors"]["debug"] == ["Not a query parameter of this operation, which takes: none."]
    assert client.get("/api/v1/tenancy/whoami").status_code == 200


def test_a_write_with_a_query_parameter_writes_nothing_and_stores_no_key(tenant_a, client) -> None:
    client.force_login(tenant_a.owner)
    key = {"HTTP_IDEMPOTENCY_KEY": str(uuid.uuid4())}
    body = {"title": "Finish line", "date": "2026-12-01", "slug": "finish-line"}
    refused = client.post("/api/v1/events?draft=1", data=body, content_type="application/json", **key)
    assert _problem(refused)["errors"] == {"draft": ["POST takes no query parameters."]}
    with tenant_context(tenant_a.org.pk):
        assert not Event.objects.filter(title="Finish line").exists()
    created = client.post("/api/v1/events", data=body, content_type="application/json", **key)
    assert created.status_code == 201, created.content
    assert "Idempotent-Replayed" not in created


def test_authentication_is_checked_first(client) -> None:
    assert client.get("/api/v1/payouts?stauts=failed").status_code in (401, 403)
