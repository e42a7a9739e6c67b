"""Browsing: the studio's events, an event's gallery (and its access-code form), a photo's page
with what can be bought of it.

* `GET /s/<studio>/?q=...&page=N`: the public events, newest first, found by title, paginated.
* `GET /s/<studio>/<event>/?page=N`: thumbnails, paginated; a protected event whose code this
  session has not entered shows the code form instead (never a photo).
* `POST /s/<studio>/<event>/` (`code`, `next`): check the code (rate-limited per event and client
  address, and per event by its wrong codes from every address: `apps.web.shop.limits`); a right
  one is remembered in the session, then 303 to `next` (a page of this event) or the gallery; a
  wrong one is the form again with 403, too many attempts 429 + Retry-After (the code unchecked).
  A session that already entered the code is never asked again, whatever the limits say.
* `GET /s/<studio>/<event>/photos/<id>/`: the watermarked preview and its offers (download,
  prints with stock left, the event's bulk product), priced ones only.
* `POST` the same URL (`product`, `quantity`): put the product in the session cart (setting its
  quantity, so a resubmission changes nothing), then 303 to the cart; a product that is not
  one of this page's offers, a sold-out print, a quantity over what can be bought now
  (`print_shortfall`), a download that the cart's "All photos of this event" already
  includes or a new item for a full cart (CHECKOUT_MAX_LINES) is the page again with a 4xx and
  the reason. Adding "All photos of this event" takes the event's downloads out of the cart,
  and the cart page says so (`apps.web.shop.cart_rules`).
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from apps.catalog.errors import AccessCodeRequired
from apps.catalog.models import ProductKind
from apps.catalog.selectors import PublicPhoto, public_event_by_slug
from apps.web.shop.cart_rules import CartItemRefused, cart_put
from apps.web.shop.forms import AccessCodeForm, AddToCartForm
from apps.web.shop.limits import access_code_wait, access_code_wrong
from apps.web.shop.presenters import offer_rows, print_shortfall
from apps.web.shop.selectors import (
    ShopEvent,
    ShopProduct,
    Studio,
    event_photo,
    event_photos_page,
    photo_products,
    products_by_ids,
    shop_event,
    shop_events_page,
)
from apps.web.shop.session import Cart, unlock
from apps.web.shop.views.common import is_locked, locked_page, render_page, safe_next, shop_view

GALLERY_PAGE_SIZE = 48
EVENTS_PAGE_SIZE = 24


@require_GET
@shop_view
def studio_home(request: HttpRequest, studio: Studio) -> HttpResponse:
    page = shop_events_page(
        tenant_id=studio.id, query=str(request.GET.get("q", "")), page=_page_number(request), per_page=EVENTS_PAGE_SIZE
    )
    return render_page(request, "shop/studio.html", studio=studio, context={"page": page})


def _page_number(request: HttpRequest) -> int:
    """`?page=`: ASCII digits only (`str.isdigit` admits "²", which `int` refuses), else 1."""
    raw = request.GET.get("page", "1")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else 1


@require_http_methods(["GET", "POST"])
@shop_view
def event_gallery(request: HttpRequest, studio: Studio, event_slug: str) -> HttpResponse:
    event = shop_event(tenant_id=studio.id, event_slug=event_slug)
    if request.method == "POST":
        return _unlock(request, studio, event)
    if is_locked(request, event):
        return locked_page(request, studio, event, status=200)
    page = event_photos_page(
        tenant_id=studio.id, event_id=event.id, page=_page_number(request), per_page=GALLERY_PAGE_SIZE
    )
    return render_page(request, "shop/gallery.html", studio=studio, context={"event": event, "page": page})


def _unlock(request: HttpRequest, studio: Studio, event: ShopEvent) -> HttpResponse:
    form = AccessCodeForm(request.POST)
    next_url = safe_next(request, studio, event, str(request.POST.get("next", "")))
    if not is_locked(request, event):
        return HttpResponseRedirect(next_url, status=303)
    wait = access_code_wait(request, tenant_id=studio.id, event_id=event.id)
    if wait:
        return locked_page(
            request,
            studio,
            event,
            status=429,
            error=f"Too many attempts. Please wait {wait} seconds before trying again.",
            next_url=next_url,
            retry_after=wait,
        )
    if not form.is_valid():
        return locked_page(
            request, studio, event, status=400, error="Enter the event's access code.", next_url=next_url
        )
    try:
        checked = public_event_by_slug(
            tenant_slug=studio.slug, event_slug=event.slug, access_code=form.cleaned_data["code"]
        )
    except AccessCodeRequired:
        access_code_wrong(tenant_id=studio.id, event_id=event.id)
        return locked_page(
            request, studio, event, status=403, error="That access code is not correct.", next_url=next_url
        )
    # The fingerprint of the code just checked (it may have changed since `event` was read).
    unlock(request, checked.id, checked.access_fingerprint)
    return HttpResponseRedirect(next_url, status=303)


@require_http_methods(["GET", "POST"])
@shop_view
def photo_detail(request: HttpRequest, studio: Studio, event_slug: str, photo_id: int) -> HttpResponse:
    event = shop_event(tenant_id=studio.id, event_slug=event_slug)
    if is_locked(request, event):
        return locked_page(request, studio, event, status=403, next_url=request.path)
    photo = event_photo(tenant_id=studio.id, event_id=event.id, photo_id=photo_id)
    products = photo_products(tenant_id=studio.id, event_id=event.id, photo_id=photo.id)
    if request.method == "GET":
        return _photo_page(request, studio, event, photo, products)
    cart = Cart(request.session, studio.id)
    form = AddToCartForm(request.POST)
    if not form.is_valid():
        return _photo_page(request, studio, event, photo, products, error="Choose what to buy.", status=400)
    product = next((p for p in products if p.id == form.cleaned_data["product"]), None)
    if product is None:
        return _photo_page(
            request, studio, event, photo, products, error="That item is not for sale on this page.", status=400
        )
    quantity = 1
    if product.kind == ProductKind.PRINT:
        quantity = form.cleaned_data["quantity"] or 1
        if product.sold_out:
            return _photo_page(request, studio, event, photo, products, error="This print is sold out.", status=409)
        shortfall = print_shortfall(product, quantity)
        if shortfall is not None:
            limit, cap_binds = shortfall
            return _photo_page(
                request,
                studio,
                event,
                photo,
                products,
                error=f"You can order at most {limit} of this print."
                if cap_binds
                else f"Only {limit} left of this print: choose at most {limit}.",
                status=409,
            )
    # The page's offers hold this event's bulk item (what covers a download); adding the bulk item
    # needs the cart's other products too (the event's downloads it takes out).
    known = {p.id: p for p in products}
    if product.kind == ProductKind.BULK:
        known.update(products_by_ids(tenant_id=studio.id, product_ids=[line.product_id for line in cart.lines()]))
    try:
        notes = cart_put(cart, product, quantity=quantity, known=known)
    except CartItemRefused as exc:
        return _photo_page(request, studio, event, photo, products, error=exc.detail, status=exc.status_code)
    for note in notes:
        messages.info(request, note)
    return HttpResponseRedirect(reverse("shop:cart", kwargs={"studio_slug": studio.slug}), status=303)


def _photo_page(
    request: HttpRequest,
    studio: Studio,
    event: ShopEvent,
    photo: PublicPhoto,
    products: list[ShopProduct],
    *,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    cart = Cart(request.session, studio.id)
    in_cart = {line.product_id: line.quantity for line in cart.lines()}
    return render_page(
        request,
        "shop/photo.html",
        studio=studio,
        context={"event": event, "photo": photo, "offers": offer_rows(products, in_cart), "error": error},
        status=status,
    )
