"""A checkout's page, for a session that created it or opened its signed order link
(apps/web/shop/views/orders.py); any other gets the 404 page.

* `GET /s/<studio>/checkouts/<id>/`: lines (reserved, confirmed, sold out, released), the total
  (`ShopCheckout.total_minor`: what the checkout asked for once payable, so a failed or expired
  order's total still covers its released prints; a sold-out line never counts), the provider's
  "Pay" link once its session exists, the final state,
  and once paid a signed download link per photo bought. An order closed because the studio
  withdrew a photo in it says so (and, when a payment arrived, that it is being or has been
  refunded) instead of a bare "expired". A refund that landed and then failed at the provider
  (the money went back to the studio) is said not to have reached the shopper, its items no
  longer read "Refunded", until an operator records it paid back another way; then the page
  says when. A refunded order says what was paid and that it went back, in the currency
  charged (less a refund still owed). Prints are spoken of (reserved, released) only in an
  order that has some, downloads only in one that has some.
  The provider sends the shopper back here (`apps.payments.providers.returns`). A return that
  says they paid (`return_says_paid`: `darkroom_return=paid`, Flutterwave's `status=successful`)
  is redirected (303) to `?confirming=<stamp>`, a signed note of this checkout and the time it
  came back (`payment_return_stamp`), which reloads and the poll keep: while the checkout awaits
  payment the page says "Confirming your payment…" and offers no Pay button, for
  PAYMENT_CONFIRMATION_WAIT_SECONDS; then it says the payment is not confirmed yet, that one may
  still be on its way, and offers Pay again. The return proves nothing and writes nothing (anyone
  can open that URL): the webhook alone pays, and its outcome (paid, failed, expired, a refused
  capture's error) shows as soon as it lands. A return after cancelling is the plain page.
* `GET /s/<studio>/checkouts/<id>/status?since=<version>&said=<..>&alerted=<..>[&confirming=<..>]`: the same
  status block alone. While the checkout is open the block asks for itself every few seconds
  (htmx) and is swapped into its container. What a screen reader hears comes from two live
  regions of the page outside that container, which stay in the DOM (a region inserted with its
  text is announced unreliably): a polite status ("Order status: ...") and an assertive alert
  (a payment the provider refused to take). The answer carries a region's new text (htmx
  out-of-band, its content only) just when it differs from what the page says (`said`,
  `alerted`), and is an empty 204 (htmx swaps nothing) while nothing at all changed, so a
  screen reader hears of real changes only, once. A final block stops asking, and its answer
  replaces the page's shipping block too (out of band), which said the prints are sent once
  paid. Without JavaScript the page offers a refresh link.
* `POST /s/<studio>/checkouts/<id>/refill`: a failed, expired or sold-out order's items back in
  the cart, by the cart's own rules (`apps.web.shop.cart_rules`: a print at most what is left
  now, a sold-out one left out), leaving out what is no longer on sale or has no price now; each
  item left out or lowered is said on the cart page.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core import signing
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from apps.catalog.models import ProductKind
from apps.commerce.models import Checkout, CheckoutLine
from apps.commerce.services.refund_mail import refunded_items_said
from apps.payments.providers.base import money_text
from apps.payments.providers.registry import provider_class
from apps.web.shop.cart_rules import CartItemRefused, cart_put
from apps.web.shop.presenters import line_state_text, not_put_back_note, product_label, status_text
from apps.web.shop.selectors import (
    ShopCheckout,
    ShopCheckoutLine,
    ShopItem,
    Studio,
    items_by_ids,
    products_by_ids,
    shop_checkout,
)
from apps.web.shop.session import Cart, owns_checkout
from apps.web.shop.shipping import shipping_context
from apps.web.shop.views.common import not_found, render_page, shop_view

POLL_SECONDS = 2
# How long a return from the provider's page after paying is taken at its word, while the webhook
# has not landed (it takes seconds, longer with a slow provider), before the page says the payment
# is not confirmed yet.
PAYMENT_CONFIRMATION_WAIT_SECONDS = 120
_PAYMENT_RETURN_SALT = "shop.checkout.payment-return"
CONFIRMING = "confirming"
UNCONFIRMED = "unconfirmed"


def payment_return_stamp(*, checkout_id: uuid.UUID | str, at: datetime) -> str:
    """A signed note that the shopper came back from paying for `checkout_id` at `at`, carried in
    the page's URL and its poll so that reloading does not start the wait again. It proves nothing
    about a payment."""
    return signing.dumps({"checkout": str(checkout_id), "at": int(at.timestamp())}, salt=_PAYMENT_RETURN_SALT)


def _payment_return(stamp: str, checkout: Checkout) -> str:
    """What a `confirming` stamp makes the page say while the checkout awaits payment without a
    refused payment to show: CONFIRMING within PAYMENT_CONFIRMATION_WAIT_SECONDS of the return,
    UNCONFIRMED after; "" for anything else (no stamp, a stamp tampered with or of another
    checkout, a checkout whose webhook's outcome is in)."""
    if not stamp or len(stamp) > 500 or checkout.status != Checkout.Status.AWAITING_PAYMENT or checkout.payment_error:
        return ""
    try:
        note = signing.loads(stamp, salt=_PAYMENT_RETURN_SALT)
    except signing.BadSignature:
        return ""
    if not isinstance(note, dict) or note.get("checkout") != str(checkout.pk) or type(note.get("at")) is not int:
        return ""
    waited = timezone.now().timestamp() - note["at"]
    return CONFIRMING if waited <= PAYMENT_CONFIRMATION_WAIT_SECONDS else UNCONFIRMED


def _version(view: ShopCheckout, payment_return: str = "") -> str:
    """A fingerprint of what the status block shows (download tokens aside: a paid block is final)."""
    checkout = view.checkout
    shown = [
        payment_return,
        checkout.status,
        checkout.payment_url,
        checkout.payment_error,
        checkout.payment_session_error,
        *(f"{line.position}:{line.state}:{line.refunded}:{line.refund_owed}" for line in view.lines),
        str(view.refunded_apart_minor),
        *(f"{r.amount_minor}:{r.settled_outside_at}" for r in view.refunds_outside),
    ]
    return _fingerprint("\n".join(shown))


def _fingerprint(text: str) -> str:
    """A short fingerprint of what a page shows (the block, a live region's text), carried by
    the poll (see `checkout_status`)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _status_heading(
    status: str, late_payment: str, photo_withdrawn: bool, refund_owed: bool = False, payment_return: str = ""
) -> str:
    """The status block's heading, which the status live region announces too. `refund_owed`: a
    refund of the order landed, then failed at the provider, and is not paid back yet.
    `payment_return`: see `_payment_return`."""
    if payment_return == CONFIRMING:
        return "Confirming your payment…"
    if payment_return == UNCONFIRMED:
        return "Payment not confirmed yet"
    if refund_owed and status == Checkout.Status.REFUNDED:
        return "Refund did not reach you"
    if photo_withdrawn:
        refund = {"refunded": ", payment refunded", "refunding": ", payment being refunded"}.get(late_payment, "")
        return f"Closed: a photo was withdrawn{refund}"
    if late_payment == "refunded":
        return "Expired, payment refunded"
    if late_payment == "refunding":
        return "Expired, payment being refunded"
    return status_text(status)


def _late_payment(checkout: Checkout, refund_owed: bool = False, paid_back_outside: bool = False) -> str:
    """For an expired checkout whose payment arrived after its expiry: "refunded" once the
    provider's refund webhook landed or an operator paid it back outside the provider
    (`paid_back_outside`), "refunding" while the refund is asked for, or while it is owed
    (`refund_owed`: it landed, then failed at the provider; the studio pays it back another
    way); else "". (`checkout.transaction` is loaded with the checkout by `checkout_get`: no
    query here.)"""
    txn = getattr(checkout, "transaction", None)
    if checkout.status != Checkout.Status.EXPIRED or txn is None:
        return ""
    if refund_owed:
        return "refunding"
    if txn.refunded_at or paid_back_outside:
        return "refunded"
    return "refunding" if txn.refund_requested_at else ""


def _photo_withdrawn(checkout: Checkout) -> bool:
    """The checkout was closed unpaid because the studio withdrew a photo in it (its payment, if
    one arrived, is refunded: `_late_payment` says how far)."""
    closed_early = checkout.closed_reason == Checkout.ClosedReason.PHOTO_WITHDRAWN
    return checkout.status == Checkout.Status.EXPIRED and closed_early


def _total_label(status: str, late_payment: str = "", photo_withdrawn: bool = False) -> str:
    if photo_withdrawn and late_payment:
        return "Total paid (refunded)" if late_payment == "refunded" else "Total paid (being refunded)"
    if late_payment == "refunded":
        return "Total paid late (refunded)"
    if late_payment == "refunding":
        return "Total paid late (being refunded)"
    if status in (Checkout.Status.PAID, Checkout.Status.REFUNDED):
        return "Total charged"
    if status == Checkout.Status.RESERVING:
        return "Total so far (prints still being reserved)"
    if status in Checkout.OPEN_STATUSES:
        return "Total to pay"
    return "Total (not charged)"


# An order closed unpaid: its items were not bought, whatever their reservation's state (a
# download's line stays "confirmed"; a print's is "released" when its stock went back).
_NOT_BOUGHT_STATUSES = frozenset({Checkout.Status.FAILED, Checkout.Status.EXPIRED})


def _line_state_text(checkout: Checkout, line: ShopCheckoutLine) -> str:
    """An item's state: "Refunded" once its refund (or the whole order's) landed, unless that
    refund then failed at the provider and is owed still; "Not bought" in an order whose payment
    failed or that expired unpaid (a print whose stock went back: "Released"); else its
    reservation's state."""
    if line.refund_owed:
        return "Refund did not reach you"
    if line.refunded or (checkout.status == Checkout.Status.REFUNDED and line.state == CheckoutLine.State.CONFIRMED):
        return "Refunded"
    if checkout.status in _NOT_BOUGHT_STATUSES and line.state in (
        CheckoutLine.State.CONFIRMED,
        CheckoutLine.State.RESERVED,
    ):
        return "Not bought"
    return line_state_text(line.state)


def _items_refunded_said(view: ShopCheckout) -> str:
    """What became of the items refunded apart (their refunds landed and are not owed), as the
    refund e-mails say it (`refunded_items_said`): a download no longer works, a print is not
    sent or had been shipped already; the rest of the order stands. "" when none was."""
    positions = {line.position for line in view.lines if line.refunded and not line.refund_owed}
    if not positions:
        return ""
    lines = [line for line in view.checkout.lines_by_position if line.position in positions]
    shipping = getattr(view.checkout, "shipping", None)
    said = refunded_items_said(lines, shipping=shipping, then="; the rest of the order is yours as before.")
    return said or "The rest of the order is yours as before."


def _items_text(view: ShopCheckout, positions: tuple[int, ...]) -> str:
    """The order's lines at `positions` as the shopper reads them, as the table names them:
    "Print A4, photo 7 (quantity 2); Digital download, photo 8"."""
    named = []
    for line in view.lines:
        if line.position in positions:
            label = product_label(line.kind, line.size)
            if line.photo_id is not None:
                label = f"{label}, photo {line.photo_id}"
            named.append(f"{label} (quantity {line.quantity})" if line.quantity > 1 else label)
    return "; ".join(named)


def _context(studio: Studio, view: ShopCheckout, return_stamp: str = "") -> dict[str, Any]:
    """The page's values; `return_stamp` is the request's `confirming` (`_payment_return`)."""
    checkout = view.checkout
    kwargs = {"studio_slug": studio.slug, "checkout_id": checkout.pk}
    payment_return = _payment_return(return_stamp, checkout)
    page_url = reverse("shop:checkout", kwargs=kwargs)
    is_open = checkout.status in Checkout.OPEN_STATUSES
    refund_owed = any(r.owed for r in view.refunds_outside)
    late_payment = _late_payment(
        checkout,
        refund_owed,
        paid_back_outside=any(r.whole_payment and not r.owed for r in view.refunds_outside),
    )
    photo_withdrawn = _photo_withdrawn(checkout)
    status_heading = _status_heading(checkout.status, late_payment, photo_withdrawn, refund_owed, payment_return)
    payment_error = checkout.payment_error if checkout.status == Checkout.Status.AWAITING_PAYMENT else ""
    # What went back of a paid order's payment: its item refunds and the parts refunded apart. Of
    # a refunded order's: all of it (its transaction is refunded), but for a refund still owed
    # (it landed, then failed at the provider).
    refunded_minor = sum(r.amount_minor for r in view.items_refunds) + view.refunded_apart_minor
    if checkout.status == Checkout.Status.REFUNDED:
        owed_minor = sum(r.amount_minor for r in view.refunds_outside if r.owed)
        refunded_minor = max(0, view.total_minor - owed_minor)
    announcement = f"Order status: {status_heading}"
    alert_text = f"Your payment was not taken: {payment_error}" if payment_error else ""
    return {
        "checkout": checkout,
        "status_heading": status_heading,
        "announcement": announcement,
        "alert_text": alert_text,
        "said": _fingerprint(announcement),
        "alerted": _fingerprint(alert_text),
        "late_payment": late_payment,
        "photo_withdrawn": photo_withdrawn,
        "has_prints": any(line.kind == ProductKind.PRINT for line in view.lines),
        "has_downloads": any(line.kind != ProductKind.PRINT for line in view.lines),
        "is_open": is_open,
        "items_refunded": _items_refunded_said(view) if checkout.status == Checkout.Status.PAID else "",
        "refund_owed": refund_owed,
        "refunds_outside": [
            {
                "amount": money_text(r.amount_minor, r.currency),
                "owed": r.owed,
                "settled_outside_at": r.settled_outside_at,
            }
            for r in view.refunds_outside
        ],
        "refunded_apart": money_text(view.refunded_apart_minor, checkout.currency) if view.refunded_apart_minor else "",
        "items_refunds": [
            {"amount": money_text(r.amount_minor, r.currency), "items": _items_text(view, r.positions)}
            for r in view.items_refunds
        ],
        "refunded_total": money_text(refunded_minor, checkout.currency) if refunded_minor else "",
        "after_refunds": money_text(view.total_minor - refunded_minor, checkout.currency) if refunded_minor else "",
        "receipt_status": view.receipt_status,
        "receipt_sent_at": view.receipt_sent_at,
        "lines": [
            {
                "line": line,
                "label": product_label(line.kind, line.size),
                "state_text": _line_state_text(checkout, line),
                "amount": money_text(line.amount_minor, line.currency),
                "photo_url": reverse(
                    "shop:photo",
                    kwargs={"studio_slug": studio.slug, "event_slug": line.event_slug, "photo_id": line.photo_id},
                )
                if line.photo_id is not None and line.event_slug
                else "",
            }
            for line in view.lines
        ],
        "charged": money_text(view.total_minor, checkout.currency),
        "total_label": _total_label(checkout.status, late_payment, photo_withdrawn),
        "version": _version(view, payment_return),
        # No Pay button while a return after paying waits for its webhook: the shopper may have paid.
        "pay_url": checkout.payment_url
        if checkout.status == Checkout.Status.AWAITING_PAYMENT and checkout.payment_url and payment_return != CONFIRMING
        else "",
        "payment_return": payment_return,
        "return_query": urlencode({"confirming": return_stamp}) if payment_return else "",
        "payment_error": payment_error,
        "session_error": checkout.payment_session_error
        if checkout.status == Checkout.Status.AWAITING_PAYMENT_SESSION
        else "",
        "downloads": [
            {"photo_id": d.photo_id, "url": reverse("commerce-download", kwargs={"token": d.token})}
            for d in view.downloads
        ],
        "downloads_total": view.downloads_total,
        "downloads_pager": _downloads_pager(view),
        "page_url": page_url,
        "refresh_url": f"{page_url}?{urlencode({'confirming': return_stamp})}" if payment_return else page_url,
        "status_url": reverse("shop:checkout-status", kwargs=kwargs),
        "poll_seconds": POLL_SECONDS,
    }


def _downloads_pager(view: ShopCheckout) -> dict[str, int] | None:
    """Page numbers of the download links, when there is more than one page."""
    pages = -(-view.downloads_total // settings.SHOP_DOWNLOADS_PER_PAGE)
    if pages <= 1:
        return None
    page = view.downloads_page
    return {
        "page": page,
        "pages": pages,
        "previous": page - 1 if page > 1 else 0,
        "next": page + 1 if page < pages else 0,
    }


def _downloads_page(request: HttpRequest) -> int:
    raw = request.GET.get("downloads_page", "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 6 else 1


def _mine(request: HttpRequest, studio: Studio, checkout_id: uuid.UUID) -> ShopCheckout | None:
    if not owns_checkout(request, studio.id, checkout_id):
        return None
    return shop_checkout(tenant_id=studio.id, checkout_id=checkout_id, downloads_page=_downloads_page(request))


@require_GET
@shop_view
def checkout_page(request: HttpRequest, studio: Studio, checkout_id: uuid.UUID) -> HttpResponse:
    view = _mine(request, studio, checkout_id)
    if view is None:
        return not_found(request, studio)
    if provider_class(view.checkout.provider).return_says_paid(request.GET):
        stamp = payment_return_stamp(checkout_id=checkout_id, at=timezone.now())
        page = reverse("shop:checkout", kwargs={"studio_slug": studio.slug, "checkout_id": checkout_id})
        return HttpResponseRedirect(f"{page}?{urlencode({'confirming': stamp})}", status=303)
    context = _context(studio, view, request.GET.get("confirming", ""))
    # Shipping (orders with prints): the address and, once shipped, carrier and tracking, shown by
    # templates/shop/_checkout_shipping.html below the polled status block (which is about
    # payment; its final answer brings this block up to date: `checkout_status`).
    context["shipping"] = shipping_context(view.checkout)
    return render_page(request, "shop/checkout.html", studio=studio, context=context)


@require_GET
@shop_view
def checkout_status(request: HttpRequest, studio: Studio, checkout_id: uuid.UUID) -> HttpResponse:
    view = _mine(request, studio, checkout_id)
    if view is None:
        return not_found(request, studio)
    context = _context(studio, view, request.GET.get("confirming", ""))
    context["announce_status"] = request.GET.get("said") != context["said"]
    context["announce_alert"] = request.GET.get("alerted") != context["alerted"]
    unchanged = request.GET.get("since") == context["version"]
    if unchanged and not context["announce_status"] and not context["announce_alert"]:
        return HttpResponse(status=204)
    if not context["is_open"]:
        # The shipping block outside the polled one says "sent once your payment is confirmed"
        # while the order is open; the final answer replaces it (htmx out of band), so a paid
        # order does not go on saying so, nor a failed one that its prints will be sent.
        context["shipping"] = shipping_context(view.checkout)
        context["shipping_oob"] = context["shipping"] is not None
    return render_page(request, "shop/_checkout_status.html", studio=studio, context=context)


REFILLABLE_STATUSES = frozenset({Checkout.Status.FAILED, Checkout.Status.EXPIRED, Checkout.Status.SOLD_OUT})


@require_POST
@shop_view
def checkout_refill_cart(request: HttpRequest, studio: Studio, checkout_id: uuid.UUID) -> HttpResponse:
    """Put a failed, expired or sold-out order's items back in the cart (the checkout form had
    emptied it), then show the cart. Quantities are set, not added, so pressing it twice changes
    nothing; an item no longer on sale (photo withdrawn, product deactivated) or without a price
    now is left out, and the cart's rules apply as to any item put in (a print lowered to what is
    left now, a sold-out print left out: an order that sold out must not come back asking for the
    same again). Every item left out or lowered is named on the cart, with why. Any other order:
    back to its page."""
    view = _mine(request, studio, checkout_id)
    if view is None:
        return not_found(request, studio)
    if view.checkout.status not in REFILLABLE_STATUSES:
        page = reverse("shop:checkout", kwargs={"studio_slug": studio.slug, "checkout_id": checkout_id})
        return HttpResponseRedirect(page, status=303)
    ordered = {line.product_id: line for line in view.checkout.lines_by_position}
    cart = Cart(request.session, studio.id)
    known = products_by_ids(tenant_id=studio.id, product_ids=[*ordered, *(line.product_id for line in cart.lines())])
    off_sale = [pid for pid in ordered if not (pid in known and known[pid].priced)]
    items = items_by_ids(tenant_id=studio.id, product_ids=off_sale) if off_sale else {}
    for product_id, line in ordered.items():
        product = known.get(product_id)
        if product is None or not product.priced:
            item = items.get(product_id) or ShopItem(
                id=product_id,
                kind=line.kind,
                size=line.size,
                photo_id=line.photo_id,
                event_id=line.event_id,
                event_title="",
                active=False,
            )
            messages.warning(request, not_put_back_note(item, unpriced=product is not None))
            continue
        try:
            notes = cart_put(cart, product, quantity=line.quantity, known=known)
        except CartItemRefused as exc:
            notes = [f"{exc.detail} It was not put back."]
        for note in notes:
            messages.warning(request, note)
    return HttpResponseRedirect(reverse("shop:cart", kwargs={"studio_slug": studio.slug}), status=303)
