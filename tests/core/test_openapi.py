"""The OpenAPI schema at /api/schema/ is the API's contract, and the API keeps it.

1. The schema generates without a single drf-spectacular warning and validates as OpenAPI 3.
2. It states what the views enforce outside their serializers: the API-key bearer scheme, the
   required Idempotency-Key of every mutating operation, the RFC 7807 problem responses.
3. schemathesis (property-based, deterministic here) sends generated requests, valid and
   invalid, to every operation through the real WSGI application, PostgreSQL and Redis, and
   checks each answer against the schema: never a 5xx, only documented status codes, content
   types, headers and bodies; schema-violating input (a wrong type, an unknown field, a missing
   Idempotency-Key) is refused with a 4xx.

Not checked: that schema-valid input is accepted (`positive_data_acceptance`). Business rules
the schema cannot state refuse much of it on purpose (an event that does not exist, a bulk
product with a photo), and those refusals are documented 4xx problems.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from django.core.management import call_command
from hypothesis import HealthCheck, settings
from schemathesis import checks

from apps.idempotency.protocol import HEADER as IDEMPOTENCY_HEADER
from apps.idempotency.protocol import MUTATING_METHODS
from config.wsgi import application
from tests.core.conftest import SCHEMA_PATH
from tests.fixtures import TenantBundle

PROBLEM = "application/problem+json"
CONTRACT_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
    checks.missing_required_header,
]

schema = schemathesis.openapi.from_wsgi(SCHEMA_PATH, application)


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method.upper() in {"GET", *MUTATING_METHODS}
    ]


def test_schema_generates_without_warnings(tmp_path: Path) -> None:
    # --fail-on-warn turns every warning and error of the generator into a non-zero exit.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))


def test_every_operation_states_its_credential_and_its_problems(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["apiKey"]["description"],
    }
    operations = _operations(document)
    assert len(operations) >= 20
    for method, path, operation in operations:
        assert {"apiKey": []} in operation["security"], (method, path)
        responses = operation["responses"]
        for code in ("401", "403"):
            assert PROBLEM in responses[code]["content"], (method, path, code)
        if "{" in path:
            assert "404" in responses, (method, path)
        success = [code for code in responses if code.startswith("2")]
        # Every success states its body, except 204 No Content, which has none.
        assert success and all("content" in responses[code] for code in success if code != "204"), (method, path)
        assert "content" not in responses.get("204", {}), (method, path)


def test_every_mutating_operation_requires_an_idempotency_key(document: dict[str, Any]) -> None:
    mutating = [(m, p, o) for m, p, o in _operations(document) if m in MUTATING_METHODS]
    assert mutating
    for method, path, operation in mutating:
        headers = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "header"}
        assert headers[IDEMPOTENCY_HEADER]["required"] is True, (method, path)
        assert headers[IDEMPOTENCY_HEADER]["schema"]["maxLength"] == 255
        assert {"400", "409", "422"} <= set(operation["responses"]), (method, path)
        assert "Retry-After" in operation["responses"]["409"]["headers"], (method, path)


def test_strict_request_bodies_refuse_unknown_fields(document: dict[str, Any]) -> None:
    components = document["components"]["schemas"]
    for name in ("CheckoutCreateInput", "LedgerDebitCreateInput", "EventCreateInput", "ProductCreateInput"):
        assert components[name]["additionalProperties"] is False, name


@pytest.mark.parametrize(
    ("path", "component"),
    [
        ("/api/v1/events/{event_id}/photos", "PhotoUploadInput"),
        ("/api/v1/events/{event_id}/selfies", "SelfieRegisterInput"),
    ],
)
def test_uploads_are_multipart_files(document: dict[str, Any], path: str, component: str) -> None:
    # given: an upload operation's request body
    body = document["paths"][path]["post"]["requestBody"]
    # then: multipart only, and its image is the file's bytes (Swagger UI offers a file picker)
    assert list(body["content"]) == ["multipart/form-data"]
    assert body["content"]["multipart/form-data"]["schema"] == {"$ref": f"#/components/schemas/{component}"}
    assert document["components"]["schemas"][component]["properties"]["image"] == {"type": "string", "format": "binary"}


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The object schema a (nullable) reference names."""
    (ref,) = [part["$ref"] for part in schema.get("allOf", [schema])]
    return document["components"]["schemas"][ref.rsplit("/", 1)[1]]


def test_product_price_and_stock_are_described(document: dict[str, Any]) -> None:
    product = document["components"]["schemas"]["ProductOutput"]["properties"]
    price, stock = _resolve(document, product["price"]), _resolve(document, product["stock"])
    assert product["price"]["nullable"] is True and product["stock"]["nullable"] is True
    assert {name: field["type"] for name, field in price["properties"].items()} == {
        "amount_minor": "integer",
        "currency": "string",
    }
    assert {name: field["type"] for name, field in stock["properties"].items()} == {
        "quantity": "integer",
        "initial_quantity": "integer",
    }
    assert set(price["required"]) == {"amount_minor", "currency"}
    assert set(stock["required"]) == {"quantity", "initial_quantity"}


def test_ledger_projection_is_described(document: dict[str, Any]) -> None:
    projection = document["components"]["schemas"]["LedgerAccountDetailOutput"]["properties"]["projection"]
    partition = _resolve(document, projection["items"])
    assert {name: field["type"] for name, field in partition["properties"].items()} == {
        "partition": "integer",
        "sequence": "integer",
        "lag_seconds": "number",
    }


@pytest.fixture
def shop(make_tenant: Any) -> TenantBundle:
    return make_tenant()


@pytest.mark.django_db(transaction=True)
@schema.parametrize()
@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_keeps_its_schema(case: Any, shop: TenantBundle) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {shop.api_key}"}, checks=CONTRACT_CHECKS)
