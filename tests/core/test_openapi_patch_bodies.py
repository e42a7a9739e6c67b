"""A PATCH body is documented as the view parses it.

drf-spectacular marks a PATCH request serializer `partial` (as DRF's UpdateModelMixin would
parse it) and documents a `Patched...` component with no required field. Darkroom's views parse
every body with the serializer as declared (never `partial=True`), so the schema said `role` of
`PATCH /tenancy/members/{user_id}` and `active` of `PATCH /products/{id}` were optional while
the API answered their absence with a 400. Found by fuzzing the API with schemathesis.
"""

from __future__ import annotations

from typing import Any

import pytest


def patch_body(document: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The PATCH operation's request body and the component its JSON schema names."""
    body = document["paths"][path]["patch"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    return body, document["components"]["schemas"][ref.rsplit("/", 1)[1]]


@pytest.mark.parametrize(
    ("path", "required"),
    [
        ("/api/v1/tenancy/members/{user_id}", ["role"]),
        ("/api/v1/products/{product_id}", ["active"]),
        ("/api/v1/events/{event_id}", []),  # every field optional, at least one (a 400 otherwise)
    ],
)
def test_a_patch_body_states_the_fields_the_api_requires(
    document: dict[str, Any], path: str, required: list[str]
) -> None:
    # given: a PATCH operation whose view parses the body with its serializer as declared
    body, component = patch_body(document, path)
    # then: the schema requires what the serializer requires, and the body when it requires any
    assert sorted(component.get("required", [])) == required, component
    assert body.get("required", False) is bool(required)


def test_no_component_is_a_partial_patch_variant(document: dict[str, Any]) -> None:
    # No view parses a body partially, so no `Patched...` component describes one.
    assert [name for name in document["components"]["schemas"] if name.startswith("Patched")] == []
