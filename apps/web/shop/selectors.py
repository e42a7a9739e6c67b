"""Reads of the shop pages (`/s/<studio>/...`).

Every selector here enters the tenant's context itself (the shopper has no membership, so the
request runs in nobody's context and RLS would show nothing) and returns evaluated values, like
the catalog's `public_*` selectors. None of them checks an event's access code: the views decide
who may see a protected event (a code unlocked in the session) before calling them. No selector
ever exposes an original's storage name or URL; downloads are signed tokens of a live
entitlement (`apps.commerce.selectors.download_token`).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import OuterRef, Q, QuerySet, Subquery, Sum

from apps.catalog.errors import EventNotFound
from apps.catalog.errors import PhotoNotFound as CatalogPhotoNotFound
from apps.catalog.models import Event, Photo, Price, Product, ProductKind, Stock
from apps.catalog.selectors import PublicEvent, PublicPhoto, access_code_fingerprint, public_event
from apps.catalog.storage import public_url
from apps.commerce.models import Checkout, CheckoutLine, Entitlement, Receipt, Refund
from apps.commerce.selectors import checkout_get, download_token, photos_covered
from apps.core.problems import NotFound
from apps.core.text import search_text
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Organization

# PostgreSQL bigint: an id in a URL or a form beyond it is simply unknown (never a query error).
MAX_ID = 2**63 - 1


class StudioNotFound(NotFound):
    """A shop address (/s/<studio>/) names no studio on Darkroom."""

    slug = "studio-not-found"
    title = "Studio not found"
    what_to_do = "Check the shop's address: use the one the studio gave out."


class PhotoNotFound(NotFound):
    """The catalog's problem type (one slug, one title and page), for a photo the event's shop
    pages do not show: unknown, of another event, or not ready."""

    slug = CatalogPhotoNotFound.slug
    title = CatalogPhotoNotFound.title


@dataclass(frozen=True)
class Studio:
    id: int
    slug: str
    name: str


# An event as the shop shows it: the catalog's shopper-side view.
ShopEvent = PublicEvent


@dataclass(frozen=True)
class NumberedPage:
    """Where a page sits: 1-based `number`, clamped into 1..`num_pages`, of `total` items."""

    number: int
    num_pages: int
    total: int

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.num_pages


def _page_bounds(*, total: int, page: int, per_page: int) -> tuple[int, int, int]:
    """(number, num_pages, offset of the first item) for `page` clamped into range."""
    num_pages = max(1, math.ceil(total / per_page))
    number = min(max(1, page), num_pages)
    return number, num_pages, (number - 1) * per_page


@dataclass(frozen=True)
class PhotoPage(NumberedPage):
    """One page of an event's gallery."""

    photos: list[PublicPhoto]


@dataclass(frozen=True)
class EventPage(NumberedPage):
    """One page of a studio's public events, found by `query` (empty: all of them)."""

    events: list[ShopEvent]
    query: str


@dataclass(frozen=True)
class ShopProduct:
    """An active product as a shopper sees it: its price (None: not for sale yet), its stock (prints
    only: units left, 0 when sold out or never stocked) and where it belongs."""

    id: int
    kind: str
    size: str
    photo_id: int | None
    event_id: int
    event_slug: str
    event_title: str
    event_protected: bool
    amount_minor: int | None
    currency: str | None
    stock_left: int | None
    thumbnail_url: str | None
    # The event's access-code fingerprint now ("" for a public event): a session that unlocked
    # the event with another code (`apps.web.shop.session.unlocked`) may no longer buy it.
    event_access_fingerprint: str = ""

    @property
    def priced(self) -> bool:
        return self.amount_minor is not None and self.currency is not None

    @property
    def sold_out(self) -> bool:
        return self.kind == ProductKind.PRINT and not self.stock_left


@dataclass(frozen=True)
class ShopItem:
    """What names a product in the cart when it is no longer on sale (inactive, unpriced, or of a
    withdrawn photo): its kind, size, photo and event, nothing about price or stock; and why it is
    off sale, as far as the product says (`active`, `photo_withdrawn`; neither: no price)."""

    id: int
    kind: str
    size: str
    photo_id: int | None
    event_id: int
    event_title: str
    active: bool = True
    photo_withdrawn: bool = False


@dataclass(frozen=True)
class ShopCheckoutLine:
    position: int
    kind: str
    size: str
    quantity: int
    photo_id: int | None
    event_slug: str
    thumbnail_url: str | None
    unit_amount_minor: int
    amount_minor: int
    currency: str
    state: str
    # The studio refunded this item alone (its refund landed): its download no longer works.
    refunded: bool = False
    # Its refund (the item's own, or the whole order's) landed, then failed at the provider, and
    # was not paid back another way yet: the shopper has neither the item nor the money.
    refund_owed: bool = False


@dataclass(frozen=True)
class ShopRefundOutside:
    """A refund of the order the provider did not complete: one that landed and then failed at
    the provider (the money went back to the studio), owed to the shopper while
    `settled_outside_at` is None; or one an operator paid back another way (`settled`)."""

    amount_minor: int
    currency: str
    settled_outside_at: datetime | None
    # It gives back the whole payment (a late payment's, the whole order's), not some items.
    whole_payment: bool = False

    @property
    def owed(self) -> bool:
        return self.settled_outside_at is None


@dataclass(frozen=True)
class ShopItemsRefund:
    """A refund of some items of a paid order that landed and is not owed back: what went back
    (`amount_minor`, in `currency`: the currency charged) and its lines' positions."""

    amount_minor: int
    currency: str
    positions: tuple[int, ...]


@dataclass(frozen=True)
class DownloadLink:
    photo_id: int
    token: str


@dataclass(frozen=True)
class ShopCheckout:
    """A checkout as its page shows it; `downloads` only once paid (live entitlements)."""

    checkout: Checkout
    lines: list[ShopCheckoutLine]
    downloads: list[DownloadLink]
    # Every photo the live entitlements cover (a bulk product covers the whole event); `downloads`
    # holds the links of one page of them.
    downloads_total: int = 0
    downloads_page: int = 1
    # Part of the payment the studio refunded in the provider's dashboard, naming no item: the
    # order and its downloads stay the shopper's. Not counting such a refund still owed.
    refunded_apart_minor: int = 0
    # The refunds still owed to the shopper and those paid back outside the provider, oldest first.
    refunds_outside: tuple[ShopRefundOutside, ...] = ()
    # A paid order's item refunds that went back to the shopper, in the order they landed.
    items_refunds: tuple[ShopItemsRefund, ...] = ()
    # A paid order's receipt: its status (`Receipt.Status`; "" without one) and when it was sent.
    receipt_status: str = ""
    receipt_sent_at: datetime | None = None

    @property
    def charged_minor(self) -> int:
        """What is (or will be) charged: the confirmed lines only (a sold-out line never is)."""
        return sum(line.amount_minor for line in self.lines if line.state == CheckoutLine.State.CONFIRMED)

    @property
    def total_minor(self) -> int:
        """The total the order page shows. Once the checkout was payable (it has its transaction),
        the amount it asked for: paid, refunded, or not charged (failed, expired), also when its
        prints' stock was released since (a released line stays in it). Still reserving: the
        confirmed lines so far. Closed before it was payable (sold out, expired while reserving):
        every line but the sold-out ones, none of it charged."""
        checkout = self.checkout
        if getattr(checkout, "transaction", None) is not None:
            return checkout.amount_minor
        if checkout.status in Checkout.OPEN_STATUSES:
            return self.charged_minor
        return sum(line.amount_minor for line in self.lines if line.state != CheckoutLine.State.SOLD_OUT)


# --- studio and events ----------------------------------------------------------------------


def studio_by_slug(*, slug: str) -> Studio:
    """Raises StudioNotFound. Organizations are not tenant rows: no context needed."""
    row = Organization.objects.filter(slug=slug).values_list("pk", "slug", "name").first()
    if row is None:
        raise StudioNotFound(f"No studio {slug!r}.")
    return Studio(id=row[0], slug=row[1], name=row[2])


EVENT_QUERY_MAX_LENGTH = 100


def shop_events_page(*, tenant_id: int, query: str = "", page: int = 1, per_page: int = 24) -> EventPage:
    """Page `page` (clamped) of the studio's public events, newest first, whose title contains
    `query` (case-insensitive, as `search_text` cleans it, at most EVENT_QUERY_MAX_LENGTH
    characters). Protected events are never listed, whatever the query."""
    query = search_text(query, max_length=EVENT_QUERY_MAX_LENGTH)
    with tenant_context(tenant_id):
        events = Event.objects.filter(tenant_id=tenant_id, visibility=Event.Visibility.PUBLIC)
        if query:
            events = events.filter(title__icontains=query)
        total = events.count()
        number, num_pages, start = _page_bounds(total=total, page=page, per_page=per_page)
        rows = list(events.order_by("-date", "-id")[start : start + per_page])
    return EventPage(
        events=[public_event(e) for e in rows], query=query, number=number, num_pages=num_pages, total=total
    )


def shop_event(*, tenant_id: int, event_slug: str) -> ShopEvent:
    """An event by slug, whatever its case (slugs are stored lower-case; an exact match first, for
    an event made before that), public or protected (the caller checks the unlock). Raises
    EventNotFound."""
    with tenant_context(tenant_id):
        event = (
            Event.objects.filter(tenant_id=tenant_id, slug=event_slug).first()
            or Event.objects.filter(tenant_id=tenant_id, slug=event_slug.lower()).first()
        )
    if event is None:
        raise EventNotFound(f"No event {event_slug!r}.")
    return public_event(event)


# --- photos ---------------------------------------------------------------------------------


def _ready_photos(*, tenant_id: int, event_id: int) -> QuerySet[Photo]:
    return (
        Photo.objects.published()
        .filter(tenant_id=tenant_id, event_id=event_id)
        .only("id", "width", "height", "preview", "thumbnail", "created_at")
    )


def _public_photo(photo: Photo) -> PublicPhoto:
    return PublicPhoto(
        id=photo.pk,
        width=photo.width,
        height=photo.height,
        preview_url=public_url(photo.preview.name),
        thumbnail_url=public_url(photo.thumbnail.name),
        created_at=photo.created_at,
    )


def event_photos_page(*, tenant_id: int, event_id: int, page: int, per_page: int) -> PhotoPage:
    """Page `page` (clamped) of the event's photos whose watermarked derivatives are ready."""
    with tenant_context(tenant_id):
        photos = _ready_photos(tenant_id=tenant_id, event_id=event_id).order_by("id")
        total = photos.count()
        number, num_pages, start = _page_bounds(total=total, page=page, per_page=per_page)
        rows = list(photos[start : start + per_page])
    return PhotoPage(photos=[_public_photo(p) for p in rows], number=number, num_pages=num_pages, total=total)


def event_photo(*, tenant_id: int, event_id: int, photo_id: int) -> PublicPhoto:
    """One ready photo of the event. Raises PhotoNotFound (unknown, other event, not ready)."""
    if not 0 < photo_id <= MAX_ID:
        raise PhotoNotFound(f"No photo {photo_id}.")
    with tenant_context(tenant_id):
        photo = _ready_photos(tenant_id=tenant_id, event_id=event_id).filter(pk=photo_id).first()
    if photo is None:
        raise PhotoNotFound(f"No photo {photo_id}.")
    return _public_photo(photo)


def event_photos_by_ids(*, tenant_id: int, event_id: int, photo_ids: Sequence[int]) -> list[PublicPhoto]:
    """The ready photos of the event among `photo_ids`, in the order given (others left out)."""
    wanted = [pid for pid in dict.fromkeys(photo_ids) if 0 < pid <= MAX_ID]
    if not wanted:
        return []
    with tenant_context(tenant_id):
        found = {p.pk: p for p in _ready_photos(tenant_id=tenant_id, event_id=event_id).filter(pk__in=wanted)}
    return [_public_photo(found[pid]) for pid in wanted if pid in found]


# --- products -------------------------------------------------------------------------------


def _products(*, tenant_id: int) -> QuerySet[Product]:
    """Active products with their event, photo, price and stock (one statement); a withdrawn
    photo's products are not on sale."""
    price = Price.objects.filter(
        tenant_id=OuterRef("tenant_id"), event_id=OuterRef("event_id"), kind=OuterRef("kind"), size=OuterRef("size")
    )
    stock = Stock.objects.filter(tenant_id=OuterRef("tenant_id"), product_id=OuterRef("pk"))
    return (
        Product.objects.filter(tenant_id=tenant_id, active=True)
        .filter(Q(photo__isnull=True) | Q(photo__withdrawn_at__isnull=True))
        .select_related("event", "photo")
        .annotate(
            price_amount_minor=Subquery(price.values("amount_minor")[:1]),
            price_currency=Subquery(price.values("currency")[:1]),
            stock_quantity=Subquery(stock.values("quantity")[:1]),
        )
    )


def _shop_product(product: Product) -> ShopProduct:
    photo = product.photo
    thumbnail = None
    if photo is not None and photo.derivatives_status == Photo.DerivativesStatus.READY:
        thumbnail = public_url(photo.thumbnail.name)
    is_print = product.kind == ProductKind.PRINT
    return ShopProduct(
        id=product.pk,
        kind=product.kind,
        size=product.size,
        photo_id=product.photo_id,
        event_id=product.event_id,
        event_slug=product.event.slug,
        event_title=product.event.title,
        event_protected=product.event.visibility == Event.Visibility.ACCESS_CODE,
        amount_minor=product.price_amount_minor,  # type: ignore[attr-defined]
        currency=product.price_currency,  # type: ignore[attr-defined]
        stock_left=(product.stock_quantity or 0) if is_print else None,  # type: ignore[attr-defined]
        thumbnail_url=thumbnail,
        event_access_fingerprint=access_code_fingerprint(product.event.access_code_hash),
    )


_KIND_ORDER = {ProductKind.DOWNLOAD: 0, ProductKind.PRINT: 1, ProductKind.BULK: 2}


def photo_products(*, tenant_id: int, event_id: int, photo_id: int) -> list[ShopProduct]:
    """What a shopper can buy on a photo's page: its download, its prints (by size) and the
    event's bulk product; priced products only, download first, then prints, then bulk."""
    with tenant_context(tenant_id):
        rows = list(
            _products(tenant_id=tenant_id).filter(Q(photo_id=photo_id) | Q(kind=ProductKind.BULK), event_id=event_id)
        )
    products = [_shop_product(row) for row in rows]
    return sorted(
        (p for p in products if p.priced), key=lambda p: (_KIND_ORDER.get(ProductKind(p.kind), 9), p.size, p.id)
    )


def products_by_ids(*, tenant_id: int, product_ids: Iterable[int]) -> dict[int, ShopProduct]:
    """Active products among `product_ids` (unknown, inactive or out-of-range ids are missing)."""
    wanted = sorted({pid for pid in product_ids if 0 < pid <= MAX_ID})
    if not wanted:
        return {}
    with tenant_context(tenant_id):
        rows = list(_products(tenant_id=tenant_id).filter(pk__in=wanted))
    return {row.pk: _shop_product(row) for row in rows}


def items_by_ids(*, tenant_id: int, product_ids: Iterable[int]) -> dict[int, ShopItem]:
    """The studio's products among `product_ids`, on sale or not (unknown or out-of-range ids
    are missing): how the cart names an item it can no longer sell."""
    wanted = sorted({pid for pid in product_ids if 0 < pid <= MAX_ID})
    if not wanted:
        return {}
    with tenant_context(tenant_id):
        rows = list(
            Product.objects.filter(tenant_id=tenant_id, pk__in=wanted).values_list(
                "pk", "kind", "size", "photo_id", "event_id", "event__title", "active", "photo__withdrawn_at"
            )
        )
    return {
        pk: ShopItem(
            id=pk,
            kind=kind,
            size=size,
            photo_id=photo_id,
            event_id=event_id,
            event_title=title,
            active=active,
            photo_withdrawn=withdrawn_at is not None,
        )
        for pk, kind, size, photo_id, event_id, title, active, withdrawn_at in rows
    }


# --- checkouts ------------------------------------------------------------------------------


def checkout_exists(*, tenant_id: int, checkout_id: uuid.UUID) -> bool:
    with tenant_context(tenant_id):
        return Checkout.objects.filter(tenant_id=tenant_id, pk=checkout_id).exists()


@dataclass(frozen=True)
class OpenCheckout:
    id: uuid.UUID
    expires_at: datetime


def open_checkouts(*, tenant_id: int, session: str) -> list[OpenCheckout]:
    """The studio's checkouts placed by the shop session whose digest is `session`
    (`Checkout.client_session`) that are still open (reserving stock or awaiting payment, so
    holding stock), soonest to lapse first; none for a blank digest."""
    if not session:
        return []
    with tenant_context(tenant_id):
        rows = (
            Checkout.objects.filter(tenant_id=tenant_id, client_session=session, status__in=Checkout.OPEN_STATUSES)
            .order_by("expires_at", "pk")
            .values_list("pk", "expires_at")
        )
        return [OpenCheckout(id=pk, expires_at=expires_at) for pk, expires_at in rows]


def shop_checkout(*, tenant_id: int, checkout_id: uuid.UUID | str, downloads_page: int = 1) -> ShopCheckout:
    """A checkout with its lines (event slug and thumbnail for each photo) and, once paid, a signed
    download link per photo its live entitlements cover, SHOP_DOWNLOADS_PER_PAGE at a time
    (`downloads_page`, clamped to the pages there are), the item refunds that went back and the
    receipt's state. Raises CheckoutNotFound."""
    with tenant_context(tenant_id):
        checkout = checkout_get(tenant_id=tenant_id, checkout_id=checkout_id)
        lines = checkout.lines_by_position
        slugs = dict(
            Event.objects.filter(tenant_id=tenant_id, pk__in={line.event_id for line in lines}).values_list(
                "pk", "slug"
            )
        )
        photo_ids = {line.photo_id for line in lines if line.photo_id is not None}
        thumbnails = {
            photo.pk: public_url(photo.thumbnail.name)
            for photo in Photo.objects.published().filter(tenant_id=tenant_id, pk__in=photo_ids).only("id", "thumbnail")
        }
        refund_ids = {line.refund_id for line in lines if line.refund_id is not None}
        landed_refunds = (
            list(
                Refund.objects.filter(pk__in=refund_ids, landed_at__isnull=False)
                .only("id", "amount_minor", "currency", "landed_at")
                .order_by("landed_at", "pk")
            )
            if refund_ids
            else []
        )
        landed = {r.pk for r in landed_refunds}
        outside = _refunds_outside(checkout)
        owed = {r.pk for r in outside if r.still_owed}
        paid = checkout.status == Checkout.Status.PAID
        receipt = (
            Receipt.objects.filter(checkout_id=checkout.pk).values_list("status", "sent_at").first() if paid else None
        )
        # A whole-order refund (it names no line) still owed: the order's charged items are its.
        whole_owed = checkout.status == Checkout.Status.REFUNDED and any(
            r.pk in owed and r.reason not in Refund.PARTIAL_REASONS for r in outside
        )
        refunded_apart = (
            Refund.objects.filter(
                transaction__checkout_id=checkout.pk, reason=Refund.Reason.PROVIDER_PARTIAL, landed_at__isnull=False
            )
            .exclude(pk__in=owed)
            .aggregate(total=Sum("amount_minor"))["total"]
            if checkout.status == Checkout.Status.PAID
            else None
        )
        downloads: list[DownloadLink] = []
        covered: dict[int, Entitlement] = {}  # photo -> the first entitlement covering it (listed once)
        if checkout.status == Checkout.Status.PAID:
            entitlements = Entitlement.objects.filter(
                tenant_id=tenant_id, checkout_id=checkout.pk, revoked_at__isnull=True
            ).order_by("id")
            for entitlement in entitlements:
                for photo_id in photos_covered(entitlement=entitlement):  # ids only; tokens for one page
                    covered.setdefault(photo_id, entitlement)
            per_page = settings.SHOP_DOWNLOADS_PER_PAGE
            pages = max(1, -(-len(covered) // per_page))
            downloads_page = min(max(1, downloads_page), pages)
            start = (downloads_page - 1) * per_page
            for photo_id, entitlement in list(covered.items())[start : start + per_page]:
                downloads.append(
                    DownloadLink(photo_id=photo_id, token=download_token(entitlement=entitlement, photo_id=photo_id))
                )
    return ShopCheckout(
        checkout=checkout,
        lines=[
            ShopCheckoutLine(
                position=line.position,
                kind=line.kind,
                size=line.size,
                quantity=line.quantity,
                photo_id=line.photo_id,
                event_slug=slugs.get(line.event_id, ""),
                thumbnail_url=thumbnails.get(line.photo_id) if line.photo_id is not None else None,
                unit_amount_minor=line.unit_amount_minor,
                amount_minor=line.amount_minor,
                currency=line.currency,
                state=line.state,
                refunded=line.refund_id in landed,
                refund_owed=line.refund_id in owed
                or (whole_owed and line.refund_id is None and line.state == CheckoutLine.State.CONFIRMED),
            )
            for line in lines
        ],
        downloads=downloads,
        downloads_total=len(covered),
        downloads_page=downloads_page,
        refunded_apart_minor=int(refunded_apart or 0),
        items_refunds=tuple(
            ShopItemsRefund(
                amount_minor=r.amount_minor,
                currency=r.currency,
                positions=tuple(line.position for line in lines if line.refund_id == r.pk),
            )
            for r in landed_refunds
            if paid and r.pk not in owed
        ),
        receipt_status=receipt[0] if receipt else "",
        receipt_sent_at=receipt[1] if receipt else None,
        refunds_outside=tuple(
            ShopRefundOutside(
                amount_minor=r.amount_minor,
                currency=r.currency,
                settled_outside_at=r.settled_outside_at,
                whole_payment=r.reason not in Refund.PARTIAL_REASONS,
            )
            for r in outside
        ),
    )


def _refunds_outside(checkout: Checkout) -> list[Refund]:
    """The checkout's refunds that landed and then failed at the provider and are owed still
    (`Refund.still_owed`) and those paid back outside the provider (`settled`), oldest first.
    None while the checkout is open (it has no refund then). In the tenant's context."""
    if checkout.status in Checkout.OPEN_STATUSES:
        return []
    return list(
        Refund.objects.filter(Refund.STILL_OWED | Q(status=Refund.Status.SETTLED), transaction__checkout_id=checkout.pk)
        .only(
            "id",
            "reason",
            "amount_minor",
            "currency",
            "status",
            "landed_at",
            "provider_failed_at",
            "settled_outside_at",
        )
        .order_by("pk")
    )
