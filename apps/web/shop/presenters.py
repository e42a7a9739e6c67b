"""What the shop templates show: labels, money and the cart's rows and totals, built from the
selectors' values (no queries here)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from django.conf import settings

from apps.catalog.models import ProductKind
from apps.commerce.models import Checkout, CheckoutLine
from apps.payments.providers.base import money_text
from apps.web.shop.selectors import ShopProduct
from apps.web.shop.session import CartLine


def product_label(kind: str, size: str) -> str:
    if kind == ProductKind.DOWNLOAD:
        return "Digital download"
    if kind == ProductKind.PRINT:
        return f"Print {size}"
    return "All photos of this event (downloads)"


def max_print_quantity(product: ShopProduct) -> int:
    """How many units of a print one line may ask for: the stock left, capped by the checkout's limit."""
    return max(0, min(product.stock_left or 0, settings.CHECKOUT_MAX_PRINT_QUANTITY))


@dataclass(frozen=True)
class OfferRow:
    """A product on a photo's page, with how many of it the cart holds."""

    product: ShopProduct
    label: str
    price: str
    in_cart: int
    quantities: list[int]


def offer_rows(products: Sequence[ShopProduct], in_cart: Mapping[int, int]) -> list[OfferRow]:
    rows = []
    for product in products:
        assert product.amount_minor is not None and product.currency is not None  # priced only
        is_print = product.kind == ProductKind.PRINT
        rows.append(
            OfferRow(
                product=product,
                label=product_label(product.kind, product.size),
                price=money_text(product.amount_minor, product.currency),
                in_cart=in_cart.get(product.id, 0),
                quantities=list(range(1, max_print_quantity(product) + 1)) if is_print else [1],
            )
        )
    return rows


@dataclass(frozen=True)
class CartRow:
    product_id: int
    quantity: int
    product: ShopProduct | None
    label: str
    unit_price: str
    amount: str
    problem: str
    quantities: list[int]

    @property
    def is_print(self) -> bool:
        return self.product is not None and self.product.kind == ProductKind.PRINT


@dataclass(frozen=True)
class CartView:
    rows: list[CartRow]
    totals: list[str]  # one per currency
    problems: list[str]

    @property
    def empty(self) -> bool:
        return not self.rows


def cart_view(lines: Sequence[CartLine], products: Mapping[int, ShopProduct]) -> CartView:
    """Rows in the order added; a product no longer on sale stays listed with its problem (the
    shopper removes it); totals per currency cover the rows on sale."""
    rows: list[CartRow] = []
    totals: dict[str, int] = {}
    problems: list[str] = []
    for line in lines:
        product = products.get(line.product_id)
        if product is None or not product.priced:
            rows.append(
                CartRow(line.product_id, line.quantity, None, "Item no longer on sale", "", "", "No longer on sale", [])
            )
            problems.append("An item in your cart is no longer on sale; remove it to check out.")
            continue
        assert product.amount_minor is not None and product.currency is not None
        problem = ""
        if product.kind == ProductKind.PRINT:
            if product.sold_out:
                problem = "Sold out"
            elif line.quantity > (product.stock_left or 0):
                problem = f"Only {product.stock_left} left"
        amount = product.amount_minor * line.quantity
        totals[product.currency] = totals.get(product.currency, 0) + amount
        rows.append(
            CartRow(
                product_id=line.product_id,
                quantity=line.quantity,
                product=product,
                label=product_label(product.kind, product.size),
                unit_price=money_text(product.amount_minor, product.currency),
                amount=money_text(amount, product.currency),
                problem=problem,
                quantities=list(range(1, settings.CHECKOUT_MAX_PRINT_QUANTITY + 1)),
            )
        )
    if len(totals) > 1:
        problems.append(
            "Your cart holds items priced in different currencies; one order is paid in one currency, "
            "so check out the items of each currency separately."
        )
    return CartView(rows=rows, totals=[money_text(v, c) for c, v in sorted(totals.items())], problems=problems)


# --- checkout page --------------------------------------------------------------------------

LINE_STATE_TEXT = {
    CheckoutLine.State.RESERVED: "Reserving…",
    CheckoutLine.State.CONFIRMED: "Confirmed",
    CheckoutLine.State.SOLD_OUT: "Sold out (not charged)",
    CheckoutLine.State.RELEASED: "Released",
}

STATUS_TEXT = {
    Checkout.Status.RESERVING: "Reserving your prints…",
    Checkout.Status.AWAITING_PAYMENT_SESSION: "Preparing your payment…",
    Checkout.Status.AWAITING_PAYMENT: "Ready to pay",
    Checkout.Status.PAID: "Paid, thank you!",
    Checkout.Status.FAILED: "Payment failed",
    Checkout.Status.EXPIRED: "Expired unpaid",
    Checkout.Status.SOLD_OUT: "Sold out",
    Checkout.Status.REFUNDED: "Refunded",
}


def line_state_text(state: str) -> str:
    return LINE_STATE_TEXT.get(CheckoutLine.State(state), state)


def status_text(status: str) -> str:
    return STATUS_TEXT.get(Checkout.Status(status), status)
