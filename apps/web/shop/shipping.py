"""The shipping block of a shop order page (templates/shop/_checkout_shipping.html)."""

from __future__ import annotations

from typing import Any

from apps.catalog.models import ProductKind
from apps.commerce.models import Checkout, CheckoutLine, CheckoutShipping
from apps.commerce.services.fulfilment import address_lines

# Why an order with prints ships nothing (the studio's sale page says "Nothing to ship" then).
_NOTHING_TO_SHIP = {
    Checkout.Status.REFUNDED: "Nothing will be shipped: this order was refunded.",
    Checkout.Status.FAILED: "Nothing will be shipped: the payment of this order failed.",
    Checkout.Status.EXPIRED: "Nothing will be shipped: this order was not paid.",
    Checkout.Status.SOLD_OUT: "Nothing will be shipped: the prints of this order sold out.",
}
_PRINTS_SOLD_OUT = "Nothing will be shipped: the prints of this order sold out (they were not charged)."


_PRINTS_REFUNDED = "Nothing will be shipped: the studio refunded the prints of this order."


def _prints_to_ship(checkout: Checkout) -> bool:
    return any(line.ships() for line in checkout.lines_by_position)


def _prints_refunded(checkout: Checkout) -> bool:
    return any(
        line.kind == ProductKind.PRINT and line.state == CheckoutLine.State.CONFIRMED and line.refund_id is not None
        for line in checkout.lines_by_position
    )


def shipping_context(checkout: Checkout) -> dict[str, Any] | None:
    """Where the order's prints go and, once shipped, the carrier and tracking reference; None for
    an order without prints. Reads `checkout.shipping` and `checkout.lines_by_position` as
    `checkout_get` loaded them (no query).

    The rule of the studio's sale page ("Mark as shipped" only for a paid order with a confirmed
    print, not shipped yet; else "Nothing to ship"): `state` is "shipped" once the studio marked
    it so (whatever happened since), "pending" while the order is open (sent once paid),
    "to_ship" for a paid order with a print left to ship (`CheckoutLine.ships`), and otherwise
    "nothing" (refunded, failed, expired, every print sold out or refunded) with `nothing`
    saying why: no address is shown as where the prints go.
    """
    shipping: CheckoutShipping | None = getattr(checkout, "shipping", None)
    if shipping is None:
        return None
    shipped = shipping.fulfilment_status == CheckoutShipping.FulfilmentStatus.SHIPPED
    nothing = ""
    if shipped:
        state = "shipped"
    elif checkout.status in Checkout.OPEN_STATUSES:
        state = "pending"
    elif checkout.status == Checkout.Status.PAID and _prints_to_ship(checkout):
        state = "to_ship"
    else:
        state = "nothing"
        nothing = _NOTHING_TO_SHIP.get(
            Checkout.Status(checkout.status), _PRINTS_REFUNDED if _prints_refunded(checkout) else _PRINTS_SOLD_OUT
        )
    return {
        "state": state,
        "nothing": nothing,
        "address_lines": address_lines(shipping),
        "phone": shipping.phone,
        "shipped": shipped,
        "shipped_at": shipping.shipped_at,
        "carrier": shipping.carrier,
        "tracking_reference": shipping.tracking_reference,
    }
