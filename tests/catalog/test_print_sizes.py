"""A print's size is a short label shown in the shop, on receipts and in the dashboard: one line of
printable text (`text_field_problem`). One with a control or direction-override character is a
400 problem naming the field, on a product and in a price list, and nothing is written."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest

from apps.catalog.models import Event, Photo, Price, Product
from apps.tenancy.context import tenant_context
from tests.factories.catalog import EventFactory, PhotoFactory

pytestmark = pytest.mark.django_db

REFUSED = "Control characters are not allowed."


def post(client: Any, path: str, body: Any) -> Any:
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))


@pytest.mark.parametrize("size", ["A4\x11", "A4\x1b[8m", "A\u202e4", "A4\x85x"])
def test_a_print_size_with_a_control_character_is_refused(tenant_a: Any, size: str) -> None:
    # given: an event with a photo
    event = cast(Event, EventFactory(tenant=tenant_a.org))
    photo = cast(Photo, PhotoFactory(event=event))
    client = tenant_a.client()
    # when: a print and a price name a size with a control character
    product = post(
        client,
        f"/api/v1/events/{event.pk}/products",
        {"kind": "print", "photo_id": photo.pk, "size": size, "stock_quantity": 5},
    )
    prices = post(
        client,
        f"/api/v1/events/{event.pk}/prices",
        {"currency": "EUR", "prices": [{"kind": "print", "size": size, "amount_minor": 900}]},
    )
    # then: both are 400 problems naming the size, and nothing is written
    assert product.status_code == 400, product.content
    assert product.json()["errors"] == {"size": [REFUSED]}
    assert prices.status_code == 400, prices.content
    assert prices.json()["errors"] == {"prices.0.size": [REFUSED]}
    with tenant_context(tenant_a.org.pk):
        assert not Product.objects.exists() and not Price.objects.exists()


def test_a_printable_size_is_taken(tenant_a: Any) -> None:
    event = cast(Event, EventFactory(tenant=tenant_a.org))
    photo = cast(Photo, PhotoFactory(event=event))
    body = {"kind": "print", "photo_id": photo.pk, "size": "13x18 cm", "stock_quantity": 5}
    assert post(tenant_a.client(), f"/api/v1/events/{event.pk}/products", body).status_code == 201
