"""Reads of the catalog.

Studio-side selectors return lazy querysets filtered by `tenant_id` explicitly (defence in
depth on top of RLS); evaluate them inside that tenant's context (TenantApi provides it).
Shopper-side (`public_*`) selectors and `product_price` enter the tenant's context themselves
and return evaluated values, so they are safe to call from views with no tenant context.
No selector ever exposes an original's storage name or URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from django.contrib.auth.hashers import check_password
from django.db.models import OuterRef, QuerySet, Subquery
from django.utils.crypto import salted_hmac

from apps.catalog.errors import AccessCodeRequired, EventNotFound, PriceNotSet, ProductNotFound
from apps.catalog.models import Event, Photo, Price, PriceList, Product, ProductKind, Stock, StockRestock
from apps.catalog.storage import public_url
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Organization

# --- studio side --------------------------------------------------------------------------


def events_list(*, tenant_id: int) -> QuerySet[Event]:
    return Event.objects.filter(tenant_id=tenant_id).order_by("-date", "-id")


def event_get(*, tenant_id: int, event_id: int) -> Event:
    """Raises EventNotFound (also for another tenant's event: RLS hides it)."""
    event = Event.objects.filter(tenant_id=tenant_id, pk=event_id).first()
    if event is None:
        raise EventNotFound(f"Event {event_id} does not exist.")
    return event


def photos_of_event(*, tenant_id: int, event_id: int) -> QuerySet[Photo]:
    return Photo.objects.filter(tenant_id=tenant_id, event_id=event_id).order_by("id")


def _products_with_price_and_stock(*, tenant_id: int) -> QuerySet[Product]:
    price = Price.objects.filter(
        tenant_id=OuterRef("tenant_id"), event_id=OuterRef("event_id"), kind=OuterRef("kind"), size=OuterRef("size")
    )
    stock = Stock.objects.filter(tenant_id=OuterRef("tenant_id"), product_id=OuterRef("pk"))
    return Product.objects.filter(tenant_id=tenant_id).annotate(
        price_amount_minor=Subquery(price.values("amount_minor")[:1]),
        price_currency=Subquery(price.values("currency")[:1]),
        stock_quantity=Subquery(stock.values("quantity")[:1]),
        stock_initial_quantity=Subquery(stock.values("initial_quantity")[:1]),
    )


def products_of_event(*, tenant_id: int, event_id: int) -> QuerySet[Product]:
    """Products annotated with their price (`price_amount_minor`, `price_currency`, None when
    unpriced) and stock (`stock_quantity`, `stock_initial_quantity`, None unless a print)."""
    return _products_with_price_and_stock(tenant_id=tenant_id).filter(event_id=event_id).order_by("id")


def product_get(*, tenant_id: int, product_id: int) -> Product:
    """One product of the studio, active or not, annotated as in `products_of_event`.
    Raises ProductNotFound (also for another tenant's product: RLS hides it)."""
    product = _products_with_price_and_stock(tenant_id=tenant_id).filter(pk=product_id).first()
    if product is None:
        raise ProductNotFound(f"Product {product_id} does not exist.")
    return product


def stock_restocks_of_product(*, tenant_id: int, product_id: int) -> QuerySet[StockRestock]:
    """A product's restocks, newest first."""
    return StockRestock.objects.filter(tenant_id=tenant_id, product_id=product_id).order_by("-created_at", "-id")


def prices_of_event(*, tenant_id: int, event_id: int) -> QuerySet[Price]:
    return Price.objects.filter(tenant_id=tenant_id, event_id=event_id).order_by("kind", "size")


def price_list_of_event(*, tenant_id: int, event_id: int) -> PriceList | None:
    """The event's price list, whose currency is fixed; None until its first price is set."""
    return PriceList.objects.filter(tenant_id=tenant_id, event_id=event_id).first()


def product_price(*, tenant_id: int, product_id: int) -> tuple[int, str]:
    """(amount_minor, currency) a shopper pays for one unit of an active product.

    The price is the event's price row for the product's (kind, size). Raises ProductNotFound
    (unknown, other tenant's, or inactive product) and PriceNotSet.
    """
    with tenant_context(tenant_id):
        product = (
            Product.objects.filter(tenant_id=tenant_id, pk=product_id, active=True)
            .values("event_id", "kind", "size")
            .first()
        )
        if product is None:
            raise ProductNotFound(f"Product {product_id} is not for sale.")
        row = Price.objects.filter(tenant_id=tenant_id, **product).values_list("amount_minor", "currency").first()
    if row is None:
        raise PriceNotSet(f"Product {product_id} has no price yet.")
    return row[0], row[1]


# --- shopper side -------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicEvent:
    tenant_id: int
    id: int
    slug: str
    title: str
    date: date
    protected: bool
    # Changes whenever the event's access code does ("" for a public event): what the shop keeps
    # in a session that unlocked the event, so a new code locks that session out again.
    access_fingerprint: str = ""


@dataclass(frozen=True)
class PublicPhoto:
    id: int
    width: int
    height: int
    preview_url: str | None
    thumbnail_url: str | None
    created_at: datetime


def access_code_fingerprint(access_code_hash: str) -> str:
    """A short keyed fingerprint of an access-code hash ("" for none). Every new code gets a new
    hash (make_password salts it), hence a new fingerprint; being an HMAC under SECRET_KEY it
    tells nothing about the hash or the code to whoever reads it."""
    if not access_code_hash:
        return ""
    return salted_hmac("darkroom.catalog.event-access-code", access_code_hash, algorithm="sha256").hexdigest()[:32]


def public_event(event: Event) -> PublicEvent:
    """What a shopper may see of an event (no access-code hash; only its keyed fingerprint)."""
    return PublicEvent(
        tenant_id=event.tenant_id,
        id=event.pk,
        slug=event.slug,
        title=event.title,
        date=event.date,
        protected=event.visibility == Event.Visibility.ACCESS_CODE,
        access_fingerprint=access_code_fingerprint(event.access_code_hash),
    )


def _tenant_id_of(tenant_slug: str) -> int:
    tenant_id = Organization.objects.filter(slug=tenant_slug).values_list("pk", flat=True).first()
    if tenant_id is None:
        raise EventNotFound(f"No studio {tenant_slug!r}.")
    return tenant_id


def public_events_of_tenant(*, tenant_slug: str) -> list[PublicEvent]:
    """A studio's public events, newest first (access-code events are not listed)."""
    tenant_id = _tenant_id_of(tenant_slug)
    with tenant_context(tenant_id):
        events = list(
            Event.objects.filter(tenant_id=tenant_id, visibility=Event.Visibility.PUBLIC).order_by("-date", "-id")
        )
    return [public_event(event) for event in events]


def public_event_by_slug(*, tenant_slug: str, event_slug: str, access_code: str | None = None) -> PublicEvent:
    """An event as a shopper may see it: public, or protected and unlocked by its code.

    The code is compared with `check_password` (constant time, and deliberately slow with the
    production hasher): a caller should remember an unlocked event in the shopper's session
    rather than re-check on every request, and rate-limit attempts. Raises EventNotFound and
    AccessCodeRequired (missing or wrong code).
    """
    tenant_id = _tenant_id_of(tenant_slug)
    with tenant_context(tenant_id):
        event = Event.objects.filter(tenant_id=tenant_id, slug=event_slug).first()
    if event is None:
        raise EventNotFound(f"No event {event_slug!r}.")
    if event.visibility == Event.Visibility.ACCESS_CODE:
        if not access_code:
            raise AccessCodeRequired("This event needs its access code.")
        # A code pasted from an e-mail often brings a space or line break along; a new code never
        # begins or ends with one (`access_code_hash`), so the trimmed one is tried too.
        trimmed = access_code.strip()
        if not check_password(access_code, event.access_code_hash) and not (
            trimmed and trimmed != access_code and check_password(trimmed, event.access_code_hash)
        ):
            raise AccessCodeRequired("The access code is not correct.", extra={"reason": "invalid-code"})
    return public_event(event)


def public_event_photos(*, tenant_slug: str, event_slug: str, access_code: str | None = None) -> list[PublicPhoto]:
    """The event's published photos (watermarked derivatives ready, not withdrawn): preview and
    thumbnail URLs only. Same access rules and errors as `public_event_by_slug`."""
    event = public_event_by_slug(tenant_slug=tenant_slug, event_slug=event_slug, access_code=access_code)
    with tenant_context(event.tenant_id):
        photos = list(
            Photo.objects.published()
            .filter(tenant_id=event.tenant_id, event_id=event.id)
            .order_by("id")
            .only("id", "width", "height", "preview", "thumbnail", "created_at")
        )
    return [
        PublicPhoto(
            id=photo.pk,
            width=photo.width,
            height=photo.height,
            preview_url=public_url(photo.preview.name),
            thumbnail_url=public_url(photo.thumbnail.name),
            created_at=photo.created_at,
        )
        for photo in photos
    ]


def photos_without_download(
    *, tenant_id: int, event_id: int, photo_ids: Sequence[int] | None = None
) -> QuerySet[Photo, int]:
    """The ids of the live photos of the event (or among `photo_ids`) that have no download
    product, active or not, in id order: the photos not sold on their own, which "Sell every
    photo as a download" offers (`apps.catalog.downloads`)."""
    photos = Photo.objects.filter(tenant_id=tenant_id, event_id=event_id, withdrawn_at__isnull=True).exclude(
        products__kind=ProductKind.DOWNLOAD
    )
    if photo_ids is not None:
        photos = photos.filter(pk__in=list(photo_ids))
    return photos.order_by("pk").values_list("pk", flat=True)
