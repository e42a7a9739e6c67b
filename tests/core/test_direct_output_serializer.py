"""DirectOutputSerializer renders exactly what DRF's generic field-by-field rendering renders."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from rest_framework import serializers

from apps.commerce.apis import CheckoutOutputSerializer
from apps.commerce.models import Checkout, CheckoutLine, CheckoutShipping, Transaction
from apps.core.serializers import DirectOutputSerializer


def _checkout(status: str) -> Checkout:
    checkout = Checkout(
        id=uuid.uuid4(),
        tenant_id=7,
        email="shopper@example.test",
        provider="sandbox",
        status=status,
        currency="EUR",
        amount_minor=5000,
        payment_url="https://pay.example.test/s/1" if status == "awaiting_payment" else "",
        payment_session_error="",
        # Not UTC and with microseconds: DRF converts to the current time zone and keeps them.
        expires_at=dt.datetime(2026, 11, 23, 23, 59, 59, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        created_at=dt.datetime(2026, 11, 23, 21, 0, tzinfo=dt.UTC),
    )
    checkout.lines_by_position = [
        CheckoutLine(
            id=10 + position,
            tenant_id=7,
            checkout=checkout,
            position=position,
            product_id=3 + position,
            photo_id=None if position == 2 else 40 + position,
            event_id=5,
            kind="print" if position else "download",
            size="A4" if position else "",
            quantity=1 + position,
            unit_amount_minor=2500,
            amount_minor=2500 * (1 + position),
            currency="EUR",
            state=["confirmed", "sold_out", "reserved"][position],
        )
        for position in range(3)
    ]
    if status not in Checkout.NO_TRANSACTION_STATUSES:
        Transaction(checkout=checkout, tenant_id=7, provider="sandbox", amount_minor=5000, currency="EUR")
    # Its prints' address (setting the forward side caches the reverse `checkout.shipping`);
    # shipped once paid, so both a null and a set `shipped_at` are rendered.
    shipped = status == "paid"
    CheckoutShipping(
        checkout=checkout,
        tenant_id=7,
        name="Ann Example",
        line1="Hauptstrasse 1",
        city="Berlin",
        postal_code="10115",
        country="DE",
        fulfilment_status="shipped" if shipped else "unfulfilled",
        shipped_at=dt.datetime(2026, 11, 24, 9, 30, 0, 500, tzinfo=dt.UTC) if shipped else None,
        carrier="DHL" if shipped else "",
    )
    return checkout


def _generic(checkout: Checkout, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """DRF's own rendering: bound copies of every field, nested list included."""
    with monkeypatch.context() as patch:
        patch.setattr(DirectOutputSerializer, "to_representation", serializers.Serializer.to_representation)
        return dict(CheckoutOutputSerializer(checkout).data)


@pytest.mark.parametrize("status", ["reserving", "sold_out", "awaiting_payment", "paid"])
def test_checkout_output_is_what_drf_renders(status, monkeypatch):
    checkout = _checkout(status)

    direct = dict(CheckoutOutputSerializer(checkout).data)

    assert direct == _generic(checkout, monkeypatch)
    assert list(direct) == list(CheckoutOutputSerializer._declared_fields)
    assert direct["expires_at"] == "2026-11-23T21:59:59.123456Z"
    assert [line["photo"] for line in direct["lines"]] == [40, 41, None]
    assert direct["transaction_status"] == (None if status in Checkout.NO_TRANSACTION_STATUSES else "pending")
    assert direct["shipping"]["country"] == "DE"
    assert direct["shipping"]["shipped_at"] == ("2026-11-24T09:30:00.000500Z" if status == "paid" else None)


def test_a_nested_serializer_must_be_direct_and_many():
    class Plain(serializers.Serializer):
        name = serializers.CharField()

    class Broken(DirectOutputSerializer):
        child = Plain()

    with pytest.raises(TypeError, match="many=True"):
        _ = Broken(type("Obj", (), {"child": object()})()).data
