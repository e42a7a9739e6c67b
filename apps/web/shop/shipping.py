"""The shipping block of a shop order page (templates/shop/_checkout_shipping.html)."""

from __future__ import annotations

from typing import Any

from apps.commerce.models import Checkout, CheckoutShipping
from apps.commerce.services.fulfilment import address_lines


def shipping_context(checkout: Checkout) -> dict[str, Any] | None:
    """Where the order's prints go and, once shipped, the carrier and tracking reference; None for
    an order without prints. Reads `checkout.shipping` as `checkout_get` loaded it (no query)."""
    shipping: CheckoutShipping | None = getattr(checkout, "shipping", None)
    if shipping is None:
        return None
    return {
        "address_lines": address_lines(shipping),
        "phone": shipping.phone,
        "shipped": shipping.fulfilment_status == CheckoutShipping.FulfilmentStatus.SHIPPED,
        "shipped_at": shipping.shipped_at,
        "carrier": shipping.carrier,
        "tracking_reference": shipping.tracking_reference,
    }
