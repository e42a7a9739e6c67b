"""What the session cart may hold, decided the same way wherever an item goes in: the photo
page's "Add to cart", the cart's Update and an order's "Put these items back in my cart".

* A print's quantity is at most `max_print_quantity`: the stock left now, capped by
  CHECKOUT_MAX_PRINT_QUANTITY. More is lowered to it and the shopper is told; a sold-out print
  does not go in. Stock moves on after the page is shown: the SKU's writer decides for real when
  the checkout reserves it, and the checkout form checks the cart against the stock again.
* "All photos of this event" (bulk) includes the download of every photo of its event, so a
  download next to it would be paid twice: putting the bulk item in takes those downloads out,
  and a download is refused while its event's bulk item is in. Prints are physical goods, not
  covered by it: they stay. (`checkout_create` refuses the combination too, for API clients.)
* Nothing of a protected event is bought by a session that has not entered its current access
  code (`locked_events`, by `apps.web.shop.session.locked`, the rule the gallery applies too):
  a new code locks out the sessions that had entered the old one, including the items they put
  in their cart before. The cart lists such an item without offering it, and the checkout form
  refuses it (`check_access`, 403, nothing written) until the new code is entered.
* A cart holds at most CHECKOUT_MAX_LINES items, what one checkout takes: a new item does not go
  in a full one, wherever it comes from (a refilled order included).
* An item no longer on sale stays in the cart, named, until the shopper removes it; the checkout
  form refuses it (`check_on_sale`) in words a shopper reads, before the service would.

Reads nothing itself: callers pass the products they read (`products_by_ids`, `photo_products`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.conf import settings
from django.http import HttpRequest

from apps.catalog.models import ProductKind
from apps.core.problems import DomainError
from apps.web.shop.presenters import CartView, item_name, locked_problem, off_sale_problem, print_shortfall
from apps.web.shop.selectors import ShopProduct
from apps.web.shop.session import Cart, locked


class CartItemRefused(DomainError):
    """The item cannot go in the cart now (sold out, or included in the cart's bulk item)."""

    status_code = 409
    slug = "cart-item-refused"
    title = "Not added to your cart"
    when_it_happens = (
        "An item could not go in the cart: the print is sold out, the cart is full, or it is a download "
        'that the event\'s "All photos" item, already in the cart, includes.'
    )
    what_to_do = (
        "A full cart: place the order first, then add the item to a new one. A sold-out print: choose "
        "another, as it comes back only if the studio restocks it. An included download needs no buying."
    )


class NotEnoughStock(DomainError):
    """A print line of the cart asks for more than can be bought now."""

    status_code = 409
    slug = "cart-over-stock"
    title = "Not enough left"
    what_to_do = "Lower the print's quantity to what is left, as the cart says, and place the order again."


class EventLocked(DomainError):
    """The cart holds an item of a protected event whose current access code this session has
    not entered (the studio changed it since)."""

    status_code = 403
    slug = "cart-event-locked"
    title = "Access code needed"
    when_it_happens = (
        "The cart holds an item of an event protected by an access code, and the studio changed the code "
        "since it was entered in this browser. Nothing was written."
    )
    what_to_do = "Open the event, enter its new access code, then place the order again."


class ItemNotForSale(DomainError):
    """The cart holds an item the studio no longer sells."""

    status_code = 409
    slug = "cart-item-not-for-sale"
    title = "No longer on sale"
    what_to_do = "Remove the item the cart names, then place the order again."


class DownloadIncluded(DomainError):
    """The cart holds a download next to its event's "All photos of this event" item."""

    status_code = 400
    slug = "cart-download-included"
    title = "Already included"
    what_to_do = 'Remove the download: the "All photos of this event" item includes it.'


def locked_events(request: HttpRequest, products: Iterable[ShopProduct]) -> frozenset[int]:
    """The events of `products` that are protected and locked for this session (it never entered
    their current access code): none of their items may be offered or bought."""
    return frozenset(
        product.event_id
        for product in products
        if locked(
            request,
            event_id=product.event_id,
            protected=product.event_protected,
            fingerprint=product.event_access_fingerprint,
        )
    )


def check_access(view: CartView) -> None:
    """Refuse to check out a cart holding an item of a locked event (`cart_view` marked its rows
    from `locked_events`). Raises EventLocked."""
    row = next((row for row in view.rows if row.locked), None)
    if row is not None:
        raise EventLocked(locked_problem(row.event_title))


def check_on_sale(view: CartView) -> None:
    """Refuse to check out a cart holding an item no longer on sale, naming it (never its internal
    id). Raises ItemNotForSale."""
    for row in view.rows:
        if row.product is not None:
            continue
        raise ItemNotForSale(off_sale_problem(row.name, row.event_title))


def check_included(view: CartView) -> None:
    """Refuse to check out a download that the cart's "All photos of this event" includes (a cart
    from before `cart_put` refused the pair; the service refuses it too, naming internal ids).
    Raises DownloadIncluded."""
    bulk = {
        row.product.event_id: row.product for row in view.rows if row.product and row.product.kind == ProductKind.BULK
    }
    for row in view.rows:
        if row.product is not None and row.product.kind == ProductKind.DOWNLOAD and row.product.event_id in bulk:
            raise DownloadIncluded(
                f"“All photos of this event” for {row.product.event_title} includes the downloads of its photos: "
                f"remove the download of photo {row.product.photo_id} from your cart, then check out."
            )


def print_quantity(product: ShopProduct, wanted: int) -> tuple[int, str]:
    """How many units of a print the cart may hold when `wanted` are asked for, and what to tell
    the shopper when that is fewer ("" otherwise). Raises CartItemRefused for a sold-out print."""
    shortfall = print_shortfall(product, wanted)
    if shortfall is None:
        return wanted, ""
    limit, capped = shortfall
    if limit == 0:
        raise CartItemRefused(f"{item_name(product)} is sold out.")
    if capped:
        return limit, f"At most {limit} of one print per order: quantity of {item_name(product)} set to {limit}."
    return limit, f"Only {limit} left of {item_name(product)}: quantity set to {limit}."


def covering_bulk(product: ShopProduct, *, cart: Cart, known: Mapping[int, ShopProduct]) -> ShopProduct | None:
    """The bulk item in the cart that includes `product` (a download of a photo of its event)."""
    if product.kind != ProductKind.DOWNLOAD:
        return None
    return next(
        (
            other
            for other in known.values()
            if other.kind == ProductKind.BULK and other.event_id == product.event_id and cart.quantity_of(other.id)
        ),
        None,
    )


def _photo_list(products: Iterable[ShopProduct]) -> str:
    ids = sorted(p.photo_id for p in products if p.photo_id is not None)
    return ", ".join(f"photo {i}" for i in ids)


def cart_put(cart: Cart, product: ShopProduct, *, quantity: int, known: Mapping[int, ShopProduct]) -> list[str]:
    """Put `product` (on sale, priced) in the cart: its quantity set, not added to (prints
    lowered to what can be bought now, every other kind once). `known` holds the on-sale products
    of the cart's lines (more do no harm: what is in the cart is read from `cart`).

    Returns what the shopper should be told (a lowered quantity, downloads taken out because the
    bulk item includes them). Raises CartItemRefused (nothing changed): a sold-out print, a
    download whose event's bulk item is in the cart, or a new item for a cart already holding
    CHECKOUT_MAX_LINES items (what one checkout takes; the bulk item counts the downloads it
    takes out as gone).
    """
    notes: list[str] = []
    if product.kind == ProductKind.PRINT:
        quantity, note = print_quantity(product, quantity)
        if note:
            notes.append(note)
    else:
        quantity = 1
    bulk = covering_bulk(product, cart=cart, known=known)
    if bulk is not None:
        raise CartItemRefused(
            f"Your cart holds “All photos of this event” for {bulk.event_title}, which includes the download "
            f"of photo {product.photo_id}: no need to buy it again."
        )
    included = (
        [
            other
            for other in known.values()
            if other.kind == ProductKind.DOWNLOAD and other.event_id == product.event_id and cart.quantity_of(other.id)
        ]
        if product.kind == ProductKind.BULK
        else []
    )
    if not cart.quantity_of(product.id) and len(cart) - len(included) >= settings.CHECKOUT_MAX_LINES:
        raise CartItemRefused(f"Your cart is full ({settings.CHECKOUT_MAX_LINES} items); check out first.")
    for other in included:
        cart.remove(other.id)
    if included:
        notes.append(
            f"“All photos of this event” includes every photo of {product.event_title}, so the downloads of "
            f"{_photo_list(included)} were taken out of your cart."
        )
    cart.set(product.id, quantity)
    return notes


def check_stock(view: CartView) -> None:
    """Refuse to check out a cart whose print line asks for more than can be bought now (the
    stock the page read; the SKU's writer still decides at reservation). Raises NotEnoughStock."""
    for row in view.rows:
        if row.product is None or not row.is_print:
            continue
        shortfall = print_shortfall(row.product, row.quantity)
        if shortfall is None:
            continue
        limit, capped = shortfall
        name = item_name(row.product)
        if limit == 0:
            raise NotEnoughStock(f"{name} is sold out: remove it from your cart, then check out.")
        if capped:
            raise NotEnoughStock(f"At most {limit} of {name} per order: lower its quantity in your cart.")
        raise NotEnoughStock(f"Only {limit} left of {name}: lower its quantity in your cart, then check out.")
