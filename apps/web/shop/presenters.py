"""What the shop templates show: labels, money and the cart's rows and totals, built from the
selectors' values (no queries here)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

from apps.catalog.models import ProductKind
from apps.commerce.models import Checkout, CheckoutLine
from apps.payments.providers.base import money_text
from apps.web.shop.selectors import ShopItem, ShopProduct
from apps.web.shop.session import CartLine


def product_label(kind: str, size: str) -> str:
    if kind == ProductKind.DOWNLOAD:
        return "Digital download"
    if kind == ProductKind.PRINT:
        return f"Print {size}"
    return "All photos of this event (downloads)"


class Nameable(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def size(self) -> str: ...
    @property
    def photo_id(self) -> int | None: ...


def item_name(product: Nameable) -> str:
    """How a message names an item: "Print A4 (photo 3)", "All photos of this event (downloads)"."""
    label = product_label(product.kind, product.size)
    return f"{label} (photo {product.photo_id})" if product.photo_id is not None else label


def max_print_quantity(product: ShopProduct) -> int:
    """How many units of a print one line may ask for: the stock left, capped by the checkout's limit."""
    return max(0, min(product.stock_left or 0, settings.CHECKOUT_MAX_PRINT_QUANTITY))


def print_shortfall(product: ShopProduct, quantity: int) -> tuple[int, bool] | None:
    """None when `quantity` units of a print can be bought now; else how many can (0: sold out)
    and whether the per-order cap (CHECKOUT_MAX_PRINT_QUANTITY), not the stock left, is what
    binds. The one rule behind the cart's problems, its Update and the checkout form's check."""
    limit = max_print_quantity(product)
    if quantity <= limit:
        return None
    return limit, limit < (product.stock_left or 0)


def bulk_events_in_cart(lines: Sequence[CartLine], products: Mapping[int, ShopProduct]) -> set[int]:
    """The events whose "All photos of this event" item (on sale) is in the cart."""
    return {
        product.event_id
        for line in lines
        if (product := products.get(line.product_id)) is not None and product.kind == ProductKind.BULK
    }


@dataclass(frozen=True)
class OfferRow:
    """A product on a photo's page, with how many of it the cart holds."""

    product: ShopProduct
    label: str
    price: str
    in_cart: int
    quantities: list[int]
    # A download that the cart's "All photos of this event" already includes (not offered).
    included_in_bulk: bool = False


def offer_rows(products: Sequence[ShopProduct], in_cart: Mapping[int, int]) -> list[OfferRow]:
    """`products`: a photo's offers (`photo_products`: its download, prints and its event's bulk item)."""
    bulk_events = {p.event_id for p in products if p.kind == ProductKind.BULK and in_cart.get(p.id)}
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
                included_in_bulk=product.kind == ProductKind.DOWNLOAD and product.event_id in bulk_events,
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
    # The quantity menu of a print: 1 .. what can be bought now (empty when sold out), and the
    # quantity it preselects (the cart's, or at most what is left).
    quantities: list[int]
    selected: int = 0
    # What names the row, whether the item is on sale or not: in messages ("Print A4 (photo 3)"),
    # and its photo and event.
    name: str = ""
    photo_id: int | None = None
    event_title: str = ""
    # Of a protected event whose current access code this session has not entered: not offered
    # (no price, no quantity menu, not in the totals) and refused at checkout.
    locked: bool = False
    # The event it is from (None: not known any more), and that event's slug while it is on sale
    # ("" for an item no longer on sale).
    event_id: int | None = None
    event_slug: str = ""

    @property
    def is_print(self) -> bool:
        return self.product is not None and self.product.kind == ProductKind.PRINT


@dataclass(frozen=True)
class CartView:
    rows: list[CartRow]
    totals: list[str]  # one per currency
    problems: list[str]
    # The minor-unit totals per currency the page shows as `totals`.
    totals_minor: tuple[tuple[str, int], ...] = ()

    @property
    def empty(self) -> bool:
        return not self.rows

    @property
    def event_slug(self) -> str:
        """The slug of the one event every item is from, whose gallery is where the shopper goes
        on shopping; "" when the items are from several events, or that event is known only from
        items no longer on sale."""
        events = {row.event_id for row in self.rows}
        slugs = {row.event_slug for row in self.rows if row.event_slug}
        return next(iter(slugs)) if len(events) == 1 and len(slugs) == 1 else ""

    @property
    def blocked(self) -> bool:
        """Whether a problem of the cart keeps it from being checked out (every one does: the
        checkout form refuses each), so the page does not offer "Place order"."""
        return bool(self.problems)

    @property
    def digest(self) -> str:
        """A fingerprint of what the cart page showed the shopper: each line's product, quantity,
        unit price and currency (none for an item no longer on sale), and the totals. The checkout
        form carries it, so a form rendered for another cart (changed in another tab) or at other
        prices is refused instead of buying what the shopper did not review."""
        reviewed = {
            "lines": [
                [
                    row.product_id,
                    row.quantity,
                    row.product.amount_minor if row.product is not None else None,
                    row.product.currency if row.product is not None else None,
                ]
                for row in self.rows
            ],
            "totals": [list(total) for total in self.totals_minor],
        }
        canonical = json.dumps(reviewed, separators=(",", ":"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def off_sale_problem(name: str, event_title: str) -> str:
    """What the cart and the checkout form say of an item the studio no longer sells."""
    where = f" of “{event_title}”" if event_title else ""
    return f"{name}{where} is no longer on sale: remove it from your cart, then check out."


def not_put_back_note(item: ShopItem, *, unpriced: bool) -> str:
    """What the cart says of an order's item that "Put these items back in my cart" left out, named
    as the cart names it, with why: its photo was withdrawn, the studio stopped selling it, or
    (`unpriced`: still sold, no price now, e.g. after the event's currency changed) it has no price."""
    where = f" of “{item.event_title}”" if item.event_title else ""
    if item.photo_withdrawn:
        why = "is no longer on sale: the studio withdrew its photo"
    elif unpriced and item.active:
        why = "has no price at the moment"
    else:
        why = "is no longer on sale"
    return f"{item_name(item)}{where} {why}. It was not put back."


def locked_problem(event_title: str) -> str:
    """What the cart and the checkout form say of items of a protected event the session is no
    longer (or not) unlocked for: the studio changed its access code."""
    return (
        f"“{event_title}” now asks for a new access code: enter the event's new access code on its page "
        "to buy its photos, or remove them from your cart."
    )


def _print_problem(product: ShopProduct, quantity: int) -> tuple[str, str]:
    """(the row's problem, the cart's problem) of a print line asking for more than can be bought now."""
    shortfall = print_shortfall(product, quantity)
    if shortfall is None:
        return "", ""
    limit, capped = shortfall
    if limit == 0:
        return "Sold out", f"{item_name(product)} is sold out; remove it to check out."
    if capped:
        return f"At most {limit} per order", f"At most {limit} of {item_name(product)} per order; lower its quantity."
    return f"Only {limit} left", f"Only {limit} left of {item_name(product)}; lower its quantity to check out."


def cart_view(
    lines: Sequence[CartLine],
    products: Mapping[int, ShopProduct],
    *,
    locked_events: Collection[int] = frozenset(),
    off_sale: Mapping[int, ShopItem] | None = None,
) -> CartView:
    """Rows in the order added; a product no longer on sale stays listed with its problem (named
    from `off_sale`, the items `items_by_ids` read; the shopper removes it), and so do a print
    asking for more than is left and a download that the cart's "All photos of this event"
    includes; totals per currency cover the rows on sale. A product of an event in
    `locked_events` (`apps.web.shop.cart_rules.locked_events`) is listed without its price, not
    counted, and its event's problem says to enter the new access code. A cart of more lines than
    one checkout takes (CHECKOUT_MAX_LINES) has a problem saying how many to remove."""
    rows: list[CartRow] = []
    totals: dict[str, int] = {}
    problems: list[str] = []
    locked_titles: list[str] = []
    bulk_events = bulk_events_in_cart(lines, products)
    for line in lines:
        product = products.get(line.product_id)
        if product is None or not product.priced:
            item = (off_sale or {}).get(line.product_id) or product
            event_id: int | None
            if item is None:
                label, name, photo_id, event_title, event_id = "Item no longer on sale", "An item", None, "", None
            else:
                label, name = product_label(item.kind, item.size), item_name(item)
                photo_id, event_title, event_id = item.photo_id, item.event_title, item.event_id
            rows.append(
                CartRow(
                    line.product_id,
                    line.quantity,
                    None,
                    label,
                    "",
                    "",
                    "No longer on sale: remove it",
                    [],
                    name=name,
                    photo_id=photo_id,
                    event_title=event_title,
                    event_id=event_id,
                )
            )
            problems.append(off_sale_problem(name, event_title))
            continue
        assert product.amount_minor is not None and product.currency is not None
        if product.event_id in locked_events:
            rows.append(
                CartRow(
                    product_id=line.product_id,
                    quantity=line.quantity,
                    product=product,
                    label=product_label(product.kind, product.size),
                    unit_price="",
                    amount="",
                    problem="Needs the event's new access code",
                    quantities=[],
                    name=item_name(product),
                    photo_id=product.photo_id,
                    event_title=product.event_title,
                    locked=True,
                    event_id=product.event_id,
                    event_slug=product.event_slug,
                )
            )
            if product.event_title not in locked_titles:
                locked_titles.append(product.event_title)
                problems.append(locked_problem(product.event_title))
            continue
        problem = ""
        quantities: list[int] = []
        if product.kind == ProductKind.PRINT:
            problem, cart_problem = _print_problem(product, line.quantity)
            if cart_problem:
                problems.append(cart_problem)
            quantities = list(range(1, max_print_quantity(product) + 1))
        elif product.kind == ProductKind.DOWNLOAD and product.event_id in bulk_events:
            problem = "Included in “All photos of this event”"
            problems.append(
                f"“All photos of this event” includes the download of photo {product.photo_id}; "
                "remove the download to check out."
            )
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
                quantities=quantities,
                selected=min(line.quantity, len(quantities)),
                name=item_name(product),
                photo_id=product.photo_id,
                event_title=product.event_title,
                event_id=product.event_id,
                event_slug=product.event_slug,
            )
        )
    if len(lines) > settings.CHECKOUT_MAX_LINES:
        # A cart filled before the limit was lowered: `cart_put` lets no new item into a full one.
        extra = len(lines) - settings.CHECKOUT_MAX_LINES
        problems.append(
            f"Your cart holds {len(lines)} items; one order takes at most {settings.CHECKOUT_MAX_LINES}: "
            f"remove {extra} of them to check out."
        )
    if len(totals) > 1:
        problems.append(
            "Your cart holds items priced in different currencies; one order is paid in one currency, "
            "so check out the items of each currency separately."
        )
    ordered = tuple(sorted(totals.items()))
    return CartView(rows=rows, totals=[money_text(v, c) for c, v in ordered], problems=problems, totals_minor=ordered)


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
