"""The session cart of one studio, and checking it out.

* `GET /s/<studio>/cart/`: lines, quantities, totals per currency, a "Continue shopping" link
  (to the gallery of the event the items are from, or the studio's shop page when they are from
  several), and the checkout form (e-mail, provider, a fresh form nonce and the cart's digest).
  How prints are reserved is noted only when a print is in the cart, and the e-mail address is
  asked "for your receipt and downloads" only when a download is.
* `POST /s/<studio>/cart/update` (`product`, `quantity`; 0 removes) and
  `POST /s/<studio>/cart/remove` (`product`): change the cart, then 303 to it. A print's quantity
  follows `apps.web.shop.cart_rules`: more than is left is lowered to it (and the cart page says
  so), a sold-out print is refused, and so is one no longer on sale (409).
* `POST /s/<studio>/cart/checkout`: `submit_once` around `checkout_create` (the form nonce is the
  Idempotency-Key, and it is the cart's version (`Cart.version`), not the page's: a double submit,
  or two forms of one cart submitted at once (two tabs, a reload while the order is placed),
  create one checkout and all land on it; a form of an earlier version is refused), 303 to the
  checkout page, which this session may then see; the cart is emptied. The same page (absolute,
  on DARKROOM_PUBLIC_BASE_URL) is the checkout's return URL: the provider sends the shopper back
  to it after paying. A cart with prints also asks for the shipping address (the fields are
  rendered only then; the service requires it exactly then). Refusals (bad e-mail, incomplete
  address (marked at its fields, with a sentence for people above them), an item of a protected
  event whose current access code this session has not entered (403: the studio changed the
  code; `apps.web.shop.cart_rules.locked_events`), empty or changed cart, an item no longer on
  sale (named, never by its id), mixed currencies, a print asking for more than is left,
  whatever `checkout_create` refuses) show the cart again with the reason and a 4xx, having
  written nothing, and keep what the shopper typed; while the cart shows a problem, its
  "Place order" button is disabled (every problem it lists blocks the checkout); the checkout
  kill switch gives a 503 page with Retry-After. "Changed" covers what the page showed: the lines, their quantities,
  unit prices and currencies, and the totals (`CartView.digest`); a checkout priced otherwise
  than the page the shopper reviewed is refused the same way (409).
  Each checkout holds stock until it is paid or lapses, so placing orders is limited
  (`apps.web.shop.limits.checkout_wait`): per client address and per session
  (`SHOP_CHECKOUT_ADDRESS_RATE`, `SHOP_CHECKOUT_SESSION_RATE`; every submission that reaches the
  order counts, a replayed one does not), and so is what one client may hold
  (`apps.web.shop.limits.checkout_holder`, enforced by `checkout_create` under the holder's
  locks, so concurrent submissions are decided one after the other): a session holding
  `SHOP_OPEN_CHECKOUTS_PER_SESSION` unpaid checkouts at the studio is asked to pay for or wait
  out one of them first (looked at before the rates too, so such a refusal does not count), and
  a client network (whatever its sessions) may hold only a share of a print unpaid
  (`SHOP_NETWORK_PRINT_HOLD_PERCENT`; units it let lapse recently count while little is left).
  A refusal is the cart again with a 429 and `Retry-After` (a 409 for a quantity over the share
  itself), naming the print, nothing written.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from apps.catalog.errors import PriceNotSet
from apps.catalog.models import ProductKind
from apps.commerce.countries import COUNTRIES
from apps.commerce.errors import (
    InvalidCheckoutLine,
    InvalidShippingAddress,
    OpenCheckoutsLimitReached,
    PrintHoldLimitReached,
)
from apps.commerce.models import Checkout
from apps.commerce.services import LineIn, ShippingIn, checkout_create
from apps.commerce.services.checkout import HolderIn
from apps.core.problems import DomainError, InvalidInput
from apps.ops.killswitch import CapabilityDisabled, capability_enabled, ensure_enabled
from apps.ops.models import Capability
from apps.web.shop.cart_rules import (
    CartItemRefused,
    cart_put,
    check_access,
    check_included,
    check_on_sale,
    check_stock,
    locked_events,
)
from apps.web.shop.forms import (
    SHIPPING_FORM_FIELDS,
    CartRemoveForm,
    CartUpdateForm,
    CheckoutForm,
    offered_providers,
)
from apps.web.shop.limits import checkout_holder, checkout_wait
from apps.web.shop.presenters import CartView, cart_view
from apps.web.shop.selectors import Studio, items_by_ids, open_checkouts, products_by_ids
from apps.web.shop.session import Cart, remember_checkout
from apps.web.shop.views.common import message_page, render_page, shop_view
from apps.web.submit_once import (
    NONCE_FIELD,
    SubmissionConflict,
    SubmissionInFlight,
    form_nonce,
    session_caller,
    submit_once,
    submitted_url,
)

# How long a checkout form waits for another form of the same cart still being placed (two tabs,
# a reload) before it says "still being processed": a checkout's transaction takes milliseconds.
CART_SUBMISSION_WAIT_SECONDS = 5.0


class EmptyCart(InvalidInput):
    """An order was placed from the shop with an empty cart. Nothing was written."""

    slug = "cart-empty"
    title = "Your cart is empty"
    what_to_do = "Add a photo to the cart, then check out."


class CartChanged(DomainError):
    """An order was placed from a cart page showing items, quantities or prices that have changed
    since (in another tab, or the studio changed a price). Nothing was written."""

    status_code = 409
    slug = "cart-changed"
    title = "Your cart changed"
    what_to_do = "Review the cart as it is now and place the order again from it."


class CheckoutRefusedForNow(DomainError):
    """Too many orders placed or still unpaid, or too much of a print held unpaid: the same order
    may be placed after `retry_after` seconds (or sooner, once an open one is paid); without
    `retry_after` (409) only a smaller order may."""

    status_code = 429
    slug = "checkout-limited"
    title = "Too many orders"
    when_it_happens = (
        "An order placed in the shop was refused for now: too many orders were placed from the same "
        "internet address in a short time, the shopper has too many orders awaiting payment, or they "
        "would hold more of a print, unpaid, than one shopper may. Nothing was written; `detail` says which."
    )
    what_to_do = (
        "With a `Retry-After` header (status 429), wait that many seconds, or pay one of the open orders, "
        "and place the order again. Without one (status 409), order fewer of the print."
    )

    def __init__(self, detail: str, *, retry_after: int | None, open_urls: list[str] | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.open_urls = open_urls or []
        if retry_after is None:
            self.status_code = 409


CART_CHANGED = "Your cart changed since this page was shown (its items or prices); review it and check out again."
CART_NOT_SELLABLE = (
    "Something in your cart can no longer be bought as it is (see your cart below): change it, then check out again."
)
# What the cart says above the fields marked with their errors (the form's own, or the
# service's `errors` on the address).
FIX_FIELDS = "Please correct the fields marked below, then place your order again."
FIX_ADDRESS = "Please check your shipping address: the fields marked below need a change."


def _cart_url(studio: Studio) -> str:
    return reverse("shop:cart", kwargs={"studio_slug": studio.slug})


def _review(request: HttpRequest, studio: Studio, cart: Cart) -> CartView:
    """The cart as its page shows it, from the products' current prices and stock and the events
    this session may buy from (`locked_events`); items no longer on sale named as they were."""
    lines = cart.lines()
    products = products_by_ids(tenant_id=studio.id, product_ids=[line.product_id for line in lines])
    gone = [line.product_id for line in lines if not (line.product_id in products and products[line.product_id].priced)]
    return cart_view(
        lines,
        products,
        locked_events=locked_events(request, products.values()),
        off_sale=items_by_ids(tenant_id=studio.id, product_ids=gone) if gone else None,
    )


def _priced_as_reviewed(checkout: Checkout, view: CartView) -> bool:
    """Whether the checkout's lines are the reviewed cart's, at the prices it showed."""
    reviewed = [
        (row.product_id, row.quantity, row.product.amount_minor, row.product.currency)
        for row in view.rows
        if row.product is not None
    ]
    created = [
        (line.product_id, line.quantity, line.unit_amount_minor, line.currency) for line in checkout.lines_by_position
    ]
    return created == reviewed


def _open_checkouts_refused(studio: Studio, checkout_ids: list[Any], retry_after: int | None) -> CheckoutRefusedForNow:
    """The refusal of an order while the session's open checkouts (`checkout_ids`, soonest to
    lapse first) are as many as it may have; the page links them."""
    return CheckoutRefusedForNow(
        f"You have {len(checkout_ids)} orders waiting for payment. Pay for one of them, or wait until "
        "an unpaid one lapses, then place this order.",
        retry_after=retry_after,
        open_urls=[
            reverse("shop:checkout", kwargs={"studio_slug": studio.slug, "checkout_id": checkout_id})
            for checkout_id in checkout_ids
        ],
    )


def _print_hold_refused(exc: PrintHoldLimitReached, view: CartView) -> CheckoutRefusedForNow:
    """The service's refusal of a print held beyond the network's share, in the cart's words."""
    product_id, available = exc.extra.get("product"), int(exc.extra.get("available") or 0)
    name = next((row.name for row in view.rows if row.product_id == product_id), "this print")
    if exc.retry_after is None:
        return CheckoutRefusedForNow(
            f"At most {exc.extra.get('share')} of {name} can be ordered at once: lower the quantity, and order "
            "more once those are paid.",
            retry_after=None,
        )
    minutes = math.ceil(exc.retry_after / 60)
    order_fewer = f"order at most {available} of it now, or " if available else ""
    if exc.extra.get("reason") == "lapsed":
        because = (
            f"Orders of {name} from your network recently lapsed unpaid, and too few are left to hold them again "
            "yet (shoppers on the same Wi-Fi or mobile network count together)."
        )
    else:
        because = (
            f"Orders awaiting payment from your network already hold as many of {name} as one network may "
            "(shoppers on the same Wi-Fi or mobile network count together)."
        )
    return CheckoutRefusedForNow(
        f"{because} Please {order_fewer}try again in about {minutes} minute{'s' if minutes != 1 else ''}.",
        retry_after=exc.retry_after,
    )


def _check_checkout_limits(request: HttpRequest, studio: Studio, caller: str, holder: HolderIn) -> None:
    """Refuse a new order while the session holds SHOP_OPEN_CHECKOUTS_PER_SESSION unpaid
    checkouts at the studio, else count it against the address's and the session's rates.
    The open checkouts are only looked at here, so such a refusal does not count against the
    rates; `checkout_create` decides under the session's lock. Raises CheckoutRefusedForNow."""
    held = open_checkouts(tenant_id=studio.id, session=holder.session)
    if holder.session and len(held) >= settings.SHOP_OPEN_CHECKOUTS_PER_SESSION:
        lapses_in = math.ceil((held[0].expires_at - timezone.now()).total_seconds()) if held else 1
        raise _open_checkouts_refused(studio, [checkout.id for checkout in held], max(1, lapses_in))
    wait = checkout_wait(request, tenant_id=studio.id, session_key=caller)
    if wait:
        raise CheckoutRefusedForNow(
            f"Too many orders placed from here. Please wait {wait} seconds before placing another.",
            retry_after=wait,
        )


def _cart_has_prints(studio: Studio, cart: Cart) -> bool:
    """Whether the cart holds a print (on sale or not: the service decides what is for sale)."""
    lines = cart.lines()
    products = products_by_ids(tenant_id=studio.id, product_ids=[line.product_id for line in lines])
    return any(product.kind == ProductKind.PRINT for product in products.values())


def _typed_shipping(request: HttpRequest) -> dict[str, str]:
    """The address fields as the shopper typed them (re-shown after a refusal)."""
    return {name: str(request.POST.get(name, ""))[:300] for name in SHIPPING_FORM_FIELDS}


def _shipping_field_errors(exc: InvalidShippingAddress) -> dict[str, list[str]]:
    """The service's `shipping.<field>` errors under the form's `shipping_<field>` names."""
    errors = exc.extra.get("errors")
    if not isinstance(errors, dict):
        return {}
    return {
        str(key).replace("shipping.", "shipping_", 1): [str(m) for m in (value if isinstance(value, list) else [value])]
        for key, value in errors.items()
        if str(key).replace("shipping.", "shipping_", 1) in SHIPPING_FORM_FIELDS
    }


def _shipping_fields(form: CheckoutForm, typed: dict[str, str], field_errors: dict[str, Any]) -> list[dict[str, Any]]:
    """What the template renders for each address field: id, label, value typed, errors."""
    autocomplete = {
        "shipping_name": "shipping name",
        "shipping_line1": "shipping address-line1",
        "shipping_line2": "shipping address-line2",
        "shipping_city": "shipping address-level2",
        "shipping_postal_code": "shipping postal-code",
        "shipping_region": "shipping address-level1",
        "shipping_country": "shipping country",
        "shipping_phone": "shipping tel",
    }
    rows: list[dict[str, Any]] = []
    for name in SHIPPING_FORM_FIELDS:
        field = form.fields[name]
        rows.append(
            {
                "name": name,
                "label": field.label or "Country",
                "value": typed.get(name, ""),
                "errors": list(field_errors.get(name) or []),
                "required": field.required,
                "max_length": getattr(field, "max_length", None),
                "autocomplete": autocomplete[name],
                "is_country": name == "shipping_country",
            }
        )
    return rows


def cart_page(
    request: HttpRequest,
    studio: Studio,
    *,
    error: str = "",
    field_errors: dict[str, Any] | None = None,
    email: str = "",
    provider: str = "",
    shipping: dict[str, str] | None = None,
    status: int = 200,
    retry_after: int | None = None,
    open_checkout_urls: list[str] | None = None,
) -> HttpResponse:
    cart = Cart(request.session, studio.id)
    view = _review(request, studio, cart)
    needs_shipping = any(row.is_print for row in view.rows)
    providers = offered_providers()
    response = render_page(
        request,
        "shop/cart.html",
        studio=studio,
        context={
            "cart": view,
            "error": error,
            "field_errors": field_errors or {},
            "email": email,
            "providers": providers,
            "provider": provider or (providers[0][0] if providers else ""),
            # The cart's version, not a fresh nonce: every form rendered of this cart (two tabs, a
            # reload while its order is placed) is one submission (`checkout_submit`).
            "nonce": cart.version() if len(cart) else form_nonce(),
            "digest": view.digest,
            "checkout_paused": not capability_enabled(Capability.CHECKOUT),
            # The address fields: rendered only for a cart with prints (server-side, no script).
            "needs_shipping": needs_shipping,
            # The e-mail address is asked for the downloads too only when the cart has some.
            "has_downloads": any(not row.is_print for row in view.rows),
            "shipping_fields": _shipping_fields(CheckoutForm(needs_shipping=True), shipping or {}, field_errors or {})
            if needs_shipping
            else [],
            "countries": COUNTRIES,
            "open_checkout_urls": open_checkout_urls or [],
            # Back to the gallery of the event the items are from, or to the studio's shop page.
            "continue_url": reverse("shop:event", kwargs={"studio_slug": studio.slug, "event_slug": view.event_slug})
            if view.event_slug
            else reverse("shop:studio", kwargs={"studio_slug": studio.slug}),
        },
        status=status,
    )
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


@require_GET
@shop_view
def cart_show(request: HttpRequest, studio: Studio) -> HttpResponse:
    return cart_page(request, studio)


@require_POST
@shop_view
def cart_update(request: HttpRequest, studio: Studio) -> HttpResponse:
    cart = Cart(request.session, studio.id)
    form = CartUpdateForm(request.POST)
    if not form.is_valid():
        return cart_page(request, studio, error="Choose a quantity.", status=400)
    product_id, quantity = form.cleaned_data["product"], form.cleaned_data["quantity"]
    if cart.quantity_of(product_id) == 0:
        return cart_page(request, studio, error="That item is not in your cart.", status=400)
    if quantity == 0:
        cart.remove(product_id)
        return HttpResponseRedirect(_cart_url(studio), status=303)
    product = products_by_ids(tenant_id=studio.id, product_ids=[product_id]).get(product_id)
    if product is None or not product.priced:
        # Taken off sale since the cart page was shown: the cart lists it with that problem.
        return cart_page(request, studio, error="That item is no longer on sale: remove it from your cart.", status=409)
    if product.kind != ProductKind.PRINT:
        return cart_page(request, studio, error="Only prints can be ordered more than once.", status=400)
    if quantity > settings.CHECKOUT_MAX_PRINT_QUANTITY:
        return cart_page(
            request,
            studio,
            error=f"At most {settings.CHECKOUT_MAX_PRINT_QUANTITY} of one print per order.",
            status=400,
        )
    # Stock left now, not when the menu was rendered: more than that is lowered, and said so.
    try:
        notes = cart_put(cart, product, quantity=quantity, known={})
    except CartItemRefused as exc:
        return cart_page(request, studio, error=f"{exc.detail} Remove it from your cart.", status=exc.status_code)
    for note in notes:
        messages.warning(request, note)
    return HttpResponseRedirect(_cart_url(studio), status=303)


@require_POST
@shop_view
def cart_remove(request: HttpRequest, studio: Studio) -> HttpResponse:
    form = CartRemoveForm(request.POST)
    if not form.is_valid():
        return cart_page(request, studio, error="Choose an item to remove.", status=400)
    Cart(request.session, studio.id).remove(form.cleaned_data["product"])
    return HttpResponseRedirect(_cart_url(studio), status=303)


def _checkout_id_of(url: str, studio: Studio) -> uuid.UUID | None:
    """The checkout a (replayed) redirect of this studio's checkout form points at."""
    try:
        match = resolve(url)
    except Resolver404:
        return None
    if match.view_name != "shop:checkout" or match.kwargs.get("studio_slug") != studio.slug:
        return None
    checkout_id = match.kwargs.get("checkout_id")
    return checkout_id if isinstance(checkout_id, uuid.UUID) else None


def _submit_cart_once(request: HttpRequest, studio: Studio, caller: str, effect: Callable[[], str]) -> HttpResponse:
    """`submit_once` of the checkout form, whose nonce is the cart's version: one checkout per
    version of the session's cart, whichever of its rendered forms comes first.

    Another form of the same cart still being placed is waited for (polling, outside any
    transaction, at most CART_SUBMISSION_WAIT_SECONDS), then this one lands where it did. One
    that already placed the order with other details typed (the other tab's e-mail address) is
    the order of this cart too: this submitter lands on it, told so. Raises SubmissionInFlight
    when the other is still not done, and whatever `submit_once` raises.
    """
    try:
        return submit_once(
            request, tenant_id=studio.id, caller=caller, effect=effect, wait_seconds=CART_SUBMISSION_WAIT_SECONDS
        )
    except SubmissionConflict:
        url = _placed_with(studio, caller, str(request.POST.get(NONCE_FIELD, "")))
        if url is None:
            raise
        messages.info(request, "This cart was already ordered (from another tab or window): this is that order.")
        return HttpResponseRedirect(url, status=303)


def _placed_with(studio: Studio, caller: str, nonce: str) -> str | None:
    """The checkout page the session's submission of the checkout form `nonce` went to, if any."""
    url = submitted_url(tenant_id=studio.id, caller=caller, nonce=nonce)
    return url if url is not None and _checkout_id_of(url, studio) is not None else None


@require_POST
@shop_view
def checkout_submit(request: HttpRequest, studio: Studio) -> HttpResponse:
    cart = Cart(request.session, studio.id)
    form = CheckoutForm(request.POST, needs_shipping=_cart_has_prints(studio, cart))
    email, provider = str(request.POST.get("email", "")), str(request.POST.get("provider", ""))
    typed = _typed_shipping(request)
    if not form.is_valid():
        return cart_page(
            request,
            studio,
            # A form without the cart's digest is not the page's (an old or forged one).
            error=FIX_FIELDS if set(form.errors) - {"cart"} else CART_CHANGED,
            field_errors=form.errors,
            email=email,
            provider=provider,
            shipping=typed,
            status=400,
        )
    posted_digest = form.cleaned_data["cart"]
    posted_version = str(request.POST.get(NONCE_FIELD, ""))
    address = form.shipping_values()
    caller = session_caller(request)
    holder = checkout_holder(request)

    def effect() -> str:
        ensure_enabled(Capability.CHECKOUT)
        lines = cart.lines()
        if not lines:
            raise EmptyCart("Your cart is empty: add a photo before checking out.")
        # A form of an earlier version of the cart (changed since, maybe back to the same items in
        # another tab) would be a second order of it under another key.
        if posted_version != cart.version():
            raise CartChanged(CART_CHANGED)
        _check_checkout_limits(request, studio, caller, holder)
        view = _review(request, studio, cart)
        # Before the digest: a page shown before the studio changed the event's code would
        # otherwise only say "your cart changed".
        check_access(view)
        if posted_digest != view.digest:
            raise CartChanged(CART_CHANGED)
        check_on_sale(view)
        check_included(view)
        check_stock(view)
        # Named up front so the provider can send the shopper back to this checkout's page.
        checkout_id = uuid.uuid4()
        page = reverse("shop:checkout", kwargs={"studio_slug": studio.slug, "checkout_id": checkout_id})
        try:
            checkout = checkout_create(
                tenant_id=studio.id,
                email=form.cleaned_data["email"],
                provider=form.cleaned_data["provider"],
                lines=[LineIn(product_id=line.product_id, quantity=line.quantity) for line in lines],
                return_url=settings.DARKROOM_PUBLIC_BASE_URL.rstrip("/") + page,
                checkout_id=checkout_id,
                shipping=ShippingIn(**address) if address is not None else None,
                holder=holder,
            )
        except OpenCheckoutsLimitReached as exc:
            raise _open_checkouts_refused(studio, exc.checkout_ids, exc.retry_after) from exc
        except PrintHoldLimitReached as exc:
            raise _print_hold_refused(exc, view) from exc
        # A price changed between the check above and the service's own read: the checkout is
        # not what the shopper reviewed. Raising rolls it back with the form's transaction.
        if not _priced_as_reviewed(checkout, view):
            raise CartChanged(CART_CHANGED)
        return page

    try:
        response = _submit_cart_once(request, studio, caller, effect)
    except CapabilityDisabled as exc:
        return message_page(
            request,
            studio=studio,
            title="Checkout is paused",
            message="We are not taking new orders for a few minutes. Your cart is kept; please try again shortly.",
            status=503,
            retry_after=exc.retry_after,
            back_url=_cart_url(studio),
        )
    except SubmissionInFlight:
        return message_page(
            request,
            studio=studio,
            title="Your order is being placed",
            message="This form is still being processed. Reload this page in a moment.",
            status=409,
            retry_after=1,
            back_url=_cart_url(studio),
        )
    except CheckoutRefusedForNow as exc:
        return cart_page(
            request,
            studio,
            error=exc.detail,
            email=email,
            provider=provider,
            shipping=typed,
            status=exc.status_code,
            retry_after=exc.retry_after,
            open_checkout_urls=exc.open_urls,
        )
    except InvalidShippingAddress as exc:
        field_errors = _shipping_field_errors(exc)
        return cart_page(
            request,
            studio,
            # The service's sentence is written for integrators too; with the fields marked on the
            # form, the shopper reads ours (an error no field carries keeps the service's).
            error=FIX_ADDRESS if field_errors else exc.detail,
            field_errors=field_errors,
            email=email,
            provider=provider,
            shipping=typed,
            status=exc.status_code,
        )
    except (InvalidCheckoutLine, PriceNotSet) as exc:
        # The service's words name internal ids (for integrators); the cart below names the item.
        return cart_page(
            request,
            studio,
            error=CART_NOT_SELLABLE,
            email=email,
            provider=provider,
            shipping=typed,
            status=exc.status_code,
        )
    except DomainError as exc:
        return cart_page(
            request, studio, error=exc.detail, email=email, provider=provider, shipping=typed, status=exc.status_code
        )
    # First submission or a replay of it: this session created the checkout the redirect names
    # (the key is scoped to the session), so it may see it, and the cart it bought is emptied;
    # a replay after the shopper filled the cart again leaves the new cart alone.
    checkout_id = _checkout_id_of(response["Location"], studio)
    if checkout_id is not None:
        remember_checkout(request, studio.id, checkout_id)
        if _review(request, studio, cart).digest == posted_digest:
            cart.clear()
    return response
