"""The request schema states that a field refusing "" or [] needs at least one character or item.

Found by fuzzing the running API with schemathesis: data valid by the schema (`"title": ""`,
`"lines": []`) was refused with 400 "This field may not be blank." / "This list may not be
empty.", because drf-spectacular (without COMPONENT_SPLIT_REQUEST) writes no `minLength` for a
CharField without `allow_blank`, nor `minItems` / `maxItems` for a `many=True` serializer's
`allow_empty` / `max_length`. Responses are not constrained: an output string may be empty.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings


@pytest.fixture(scope="module")
def components(document: dict[str, Any]) -> dict[str, Any]:
    schemas: dict[str, Any] = document["components"]["schemas"]
    return schemas


@pytest.mark.parametrize(
    ("component", "field"),
    [
        ("AnnouncementsInput", "title"),
        ("AnnouncementsInput", "body"),
        ("EventCreateInput", "title"),
        ("PhotoWithdrawInput", "reason"),
        ("ShippingInput", "name"),
        ("LedgerDebitBatchInputItem", "idempotency_key"),
    ],
)
def test_a_request_string_that_refuses_blank_has_a_min_length(
    components: dict[str, Any], component: str, field: str
) -> None:
    # given: a request field declared without allow_blank (the API answers "" with a 400)
    schema = components[component]["properties"][field]
    # then: the schema says so
    assert schema.get("minLength", 0) >= 1, (component, field, schema)


@pytest.mark.parametrize(
    ("component", "field", "max_items"),
    [
        ("CheckoutCreateInput", "lines", settings.CHECKOUT_MAX_LINES),
        ("PriceListSetInput", "prices", None),
        ("CheckoutRefundInput", "lines", None),
    ],
)
def test_a_request_list_that_refuses_empty_has_min_items(
    components: dict[str, Any], component: str, field: str, max_items: int | None
) -> None:
    # given: a request list declared with allow_empty=False (the API answers [] with a 400)
    schema = components[component]["properties"][field]
    # then: the schema says at least one item, and the most it takes
    assert schema.get("minItems", 0) >= 1, (component, field, schema)
    if max_items is not None:
        assert schema.get("maxItems") == max_items, (component, field, schema)


def test_a_field_that_takes_blank_and_every_response_string_stay_unconstrained(components: dict[str, Any]) -> None:
    # given: a request field with allow_blank, and output strings that may be empty
    # then: no minLength on either
    assert "minLength" not in components["SelfieRegisterInput"]["properties"]["name"]
    assert "minLength" not in components["LedgerDebitCreateInput"]["properties"]["reference"]
    for name, component in components.items():
        if name.endswith("Output"):
            for field, schema in component.get("properties", {}).items():
                assert "minLength" not in schema, (name, field)
