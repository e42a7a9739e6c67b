"""Writes of the catalog: events, photo uploads and derivatives, products with stock, prices.

Services called from API views use plain `@transaction.atomic`: they join the one transaction
the Idempotency-Key protocol opens around the request (their rows commit with the key row), or
open their own when called elsewhere. Each runs in `tenant_context(tenant_id)`, so RLS scopes
every statement to that tenant whoever calls it (API, task, command, test). Changing a product
later (deactivate, restock) lives in `apps.catalog.products`, offering every photo as a download
(now and at upload) in `apps.catalog.downloads`, changing an event (title, date,
visibility, access code) in `apps.catalog.events`, uploads (the original stored
outside any transaction, then the rows; the orphan sweep) in `apps.catalog.uploads`, all
re-exported here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Value
from django.db.models.functions import Lower
from django.utils.text import slugify

from apps.catalog import images, storage
from apps.catalog.downloads import download_products_ensure as download_products_ensure
from apps.catalog.downloads import downloads_for_new_photos_stop as downloads_for_new_photos_stop
from apps.catalog.errors import (
    EventNotFound,
    EventSlugTaken,
    PriceListCurrencyChanged,
    PriceListCurrencyMismatch,
    PriceListMissing,
    ProductConflict,
)
from apps.catalog.events import ACCESS_CODE_MIN_LENGTH as ACCESS_CODE_MIN_LENGTH
from apps.catalog.events import EVENT_UPDATED as EVENT_UPDATED
from apps.catalog.events import TITLE_MAX_LENGTH, access_code_hash, event_date_problem
from apps.catalog.events import event_update as event_update
from apps.catalog.models import RESERVED_EVENT_SLUGS, Event, Photo, Price, PriceList, ProductKind, Stock
from apps.catalog.models import Product as ProductModel
from apps.catalog.products import Actor as Actor
from apps.catalog.products import product_set_active as product_set_active
from apps.catalog.products import stock_restock as stock_restock
from apps.catalog.uploads import PHOTO_UPLOADED_TOPIC as PHOTO_UPLOADED_TOPIC
from apps.catalog.uploads import OrphanSweepReport as OrphanSweepReport
from apps.catalog.uploads import StoredOriginal as StoredOriginal
from apps.catalog.uploads import originals_sweep_orphans as originals_sweep_orphans
from apps.catalog.uploads import photo_create as photo_create
from apps.catalog.uploads import photo_original_check as photo_original_check
from apps.catalog.uploads import photo_original_store as photo_original_store
from apps.catalog.uploads import photo_originals_discard as photo_originals_discard
from apps.catalog.uploads import photo_upload as photo_upload
from apps.catalog.uploads import request_derivatives
from apps.core.currencies import currency_supported, unsupported_currency_message
from apps.core.problems import InvalidInput
from apps.core.text import text_field_problem, title_problem
from apps.dropin.services import photo_matches_notify
from apps.outbox.requeue import requeue_stale
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Organization
from apps.tenancy.services import audit_record

logger = logging.getLogger("darkroom.catalog")


def _constraint_name(exc: IntegrityError) -> str:
    diag = getattr(exc.__cause__, "diag", None)
    return str(getattr(diag, "constraint_name", "") or "")


def _event_for_write(*, tenant_id: int, event_id: int) -> Event:
    """The event, visible under RLS only if it belongs to the tenant. Raises EventNotFound."""
    event = Event.objects.filter(tenant_id=tenant_id, pk=event_id).first()
    if event is None:
        raise EventNotFound(f"Event {event_id} does not exist.")
    return event


# --- events -------------------------------------------------------------------------------


@transaction.atomic
def event_create(
    *,
    tenant_id: int,
    title: str,
    date: date,
    slug: str,
    visibility: str = Event.Visibility.PUBLIC,
    access_code: str | None = None,
) -> Event:
    """Create an event; an access-code event stores only a password hash of its code.

    The slug is stored lower-cased (shop links are typed by hand: `/s/<studio>/Gala/` and
    `/gala/` are one event, which the shop finds whatever the case). Joins the caller's
    transaction (a savepoint guards the insert). Raises InvalidInput when the title is empty,
    too long or holds control characters (`title_problem`), the date is outside EVENT_YEARS,
    the access code does not match the visibility or the slug is reserved
    (RESERVED_EVENT_SLUGS), EventSlugTaken when the tenant already has an event with this slug.
    """
    slug = slug.lower()
    if problem := title_problem(title, max_length=TITLE_MAX_LENGTH):
        raise InvalidInput(f"Title: {problem}", extra={"errors": {"title": [problem]}})
    if problem := event_date_problem(date):
        raise InvalidInput(f"Date: {problem}", extra={"errors": {"date": [problem]}})
    if slug in RESERVED_EVENT_SLUGS:
        raise InvalidInput(
            f"The slug {slug!r} is reserved for the shop's own pages.",
            extra={"errors": {"slug": [f"Not one of: {', '.join(RESERVED_EVENT_SLUGS)}."]}},
        )
    with tenant_context(tenant_id):
        code_hash = access_code_hash(visibility=visibility, access_code=access_code)
        try:
            with transaction.atomic():
                return Event.objects.create(
                    tenant_id=tenant_id,
                    title=title,
                    date=date,
                    slug=slug,
                    visibility=visibility,
                    access_code_hash=code_hash,
                )
        except IntegrityError as exc:
            if _constraint_name(exc) == "catalog_event_unique_tenant_slug":
                raise EventSlugTaken(f"The slug {slug!r} is already used by another event.") from exc
            raise


# --- photo derivatives --------------------------------------------------------------------


@transaction.atomic(durable=True)
def photo_derivatives_requeue_stale(*, older_than_seconds: float, limit: int = 500) -> list[int]:
    """Ask again for the derivatives of photos still `pending` more than `older_than_seconds`
    after they were last asked for (`apps.outbox.requeue`: the broker lost that message).
    Returns the photo ids.

    Outermost transaction, in the system context (the beat task's): photos of every studio.
    Harmless when the render was only slow: it is idempotent.
    """
    photos = requeue_stale(
        Photo.objects.filter(derivatives_status=Photo.DerivativesStatus.PENDING, withdrawn_at__isnull=True),
        queued_field="derivatives_requested_at",
        fallback_field="created_at",
        older_than_seconds=older_than_seconds,
        limit=limit,
        requeue=request_derivatives,
        flow="photo_renders",
    )
    return [photo.pk for photo in photos]


def photo_generate_derivatives(*, tenant_id: int, photo_id: int) -> str:
    """Render the watermarked preview and the thumbnail of a photo and mark it ready.

    Idempotent: derivative names are deterministic and rewritten in place, so a re-run (a
    redelivered task, a manual repair) replaces the same two files with identical bytes.
    Pillow work happens outside any transaction; the files are written and the row updated
    under the photo's row lock in one short transaction of its own (outermost, durable), so
    concurrent runs for one photo serialise. When the photo turns ready, the same transaction
    tells the attendees drop-in matched in it so far (`photo_matches_notify`: a drop-in run
    tells them itself only once the photo is ready, so each is told once, whichever commits first).
    An original Pillow cannot decode marks the photo `failed` (no retry helps); storage and
    database errors propagate for the task to retry.
    Returns the resulting status ("ready", "failed", "missing" for a deleted photo, or
    "withdrawn": a withdrawn photo is neither read nor written, checked again under the row lock;
    the stale-render sweep leaves withdrawn photos alone).
    """
    with tenant_context(tenant_id):
        photo = Photo.objects.filter(tenant_id=tenant_id, pk=photo_id).first()
        if photo is None:
            logger.warning("derivatives requested for a missing photo", extra={"photo_id": photo_id})
            return "missing"
        if photo.withdrawn_at is not None:
            return "withdrawn"
        organization = Organization.objects.get(pk=tenant_id)
        try:
            original = storage.read_bytes(photo.original.name or "")
            rendered = images.render_derivatives(
                original,
                watermark_text=organization.name or organization.slug,
                preview_max_px=settings.CATALOG_PREVIEW_MAX_PX,
                thumbnail_max_px=settings.CATALOG_THUMBNAIL_MAX_PX,
                quality=settings.CATALOG_DERIVATIVE_JPEG_QUALITY,
            )
        except (FileNotFoundError, images.ImageRejected) as exc:
            logger.warning("derivatives failed", extra={"photo_id": photo_id, "error": str(exc)})
            with transaction.atomic(durable=True):
                Photo.objects.filter(tenant_id=tenant_id, pk=photo_id).update(
                    derivatives_status=Photo.DerivativesStatus.FAILED, derivatives_error=str(exc)[:2000]
                )
            return Photo.DerivativesStatus.FAILED.value

        names = {
            kind: storage.derivative_name(
                kind=kind, tenant_id=tenant_id, event_id=photo.event_id, public_token=photo.public_token
            )
            for kind in ("previews", "thumbnails")
        }
        with transaction.atomic(durable=True):
            locked = Photo.objects.select_for_update().filter(tenant_id=tenant_id, pk=photo_id).first()
            if locked is None:
                return "missing"
            if locked.withdrawn_at is not None:  # its files are being deleted: write none back
                return "withdrawn"
            storage.write_exact(name=names["previews"], data=rendered.preview)
            storage.write_exact(name=names["thumbnails"], data=rendered.thumbnail)
            turns_ready = locked.derivatives_status != Photo.DerivativesStatus.READY
            locked.preview.name = names["previews"]
            locked.thumbnail.name = names["thumbnails"]
            locked.derivatives_status = Photo.DerivativesStatus.READY
            locked.derivatives_error = ""
            locked.save(update_fields=["preview", "thumbnail", "derivatives_status", "derivatives_error"])
            if turns_ready:  # its shop page is up: drop-in's matches so far may be told now
                photo_matches_notify(photo=locked)
        return Photo.DerivativesStatus.READY.value


# --- products, stock and prices -----------------------------------------------------------


def _product_exists(*, event: Event, kind: str, photo_id: int | None, size: str) -> bool:
    """Whether the event has a product of this kind, photo and size (the bulk one: no photo)."""
    products = ProductModel.objects.filter(tenant_id=event.tenant_id, event=event, kind=kind)
    if photo_id is not None:
        products = products.filter(photo_id=photo_id, size=size)
    return products.exists()


# Unique on (tenant, lower(sku)): a studio's SKUs are unique whatever their case.
SKU_UNIQUE_CONSTRAINT = "catalog_product_unique_tenant_sku"


def _sku_taken_message(*, tenant_id: int, sku: str) -> str:
    """Why `sku` was refused, naming the SKU the studio already has as it is stored (it may differ
    from `sku` in case). In the tenant's context, after the refused insert's savepoint rolled back."""
    stored = (
        ProductModel.objects.filter(tenant_id=tenant_id)
        .alias(sku_lower=Lower("sku"))
        .filter(sku_lower=Lower(Value(sku)))
        .values_list("sku", flat=True)
        .first()
    )
    if stored is None or stored == sku:
        return f"The SKU {sku!r} is already used."
    return f"The SKU {stored!r} is already used, and SKUs are unique whatever their case: {sku!r} is the same SKU."


def _default_sku(*, event: Event, kind: str, photo_id: int | None, size: str) -> str:
    parts = [f"E{event.pk}", kind.upper()]
    parts.append(f"P{photo_id}" if photo_id else "ALL")
    if size:
        parts.append(slugify(size).upper() or "SIZE")
    return "-".join(parts)[:64]


SIZE_MAX_LENGTH = 32  # Product.size, Price.size: one line of printable text (`text_field_problem`)


@transaction.atomic
def product_create(
    *,
    tenant_id: int,
    event_id: int,
    kind: str,
    photo_id: int | None = None,
    size: str = "",
    sku: str | None = None,
    stock_quantity: int | None = None,
    active: bool = True,
) -> ProductModel:
    """Create a product of an event; a print also gets its Stock row (quantity = initial).

    A download or print names a photo of the same event; a print has a size and a stock
    quantity (its size, matched case-insensitively to one the event already uses, takes that
    spelling); a bulk product ("all my photos of this event") has neither. Joins the caller's
    transaction (a savepoint guards the inserts). An SKU is unique in the studio whatever its
    case ("print-a4" is refused where "PRINT-A4" exists). Raises EventNotFound, InvalidInput,
    ProductConflict (sku taken, naming the SKU as stored, or the same photo/kind/size or bulk
    product exists).
    """
    with tenant_context(tenant_id):
        event = _event_for_write(tenant_id=tenant_id, event_id=event_id)
        errors: dict[str, list[str]] = {}
        if kind in (ProductKind.DOWNLOAD, ProductKind.PRINT):
            if photo_id is None:
                errors["photo_id"] = ["Required for this kind."]
            else:
                photo = Photo.objects.filter(tenant_id=tenant_id, event_id=event.pk, pk=photo_id).first()
                if photo is None:
                    errors["photo_id"] = ["No such photo in this event."]
                elif photo.withdrawn_at is not None:
                    # (A product made while a withdrawal commits is harmless: nothing sells it.)
                    errors["photo_id"] = ["This photo was withdrawn: it is not sold any more."]
        elif photo_id is not None:
            errors["photo_id"] = ["A bulk product covers the whole event: it names no photo."]
        if kind == ProductKind.PRINT:
            if not size:
                errors["size"] = ["Required for prints."]
            elif problem := text_field_problem(size, required=True, max_length=SIZE_MAX_LENGTH):
                errors["size"] = [problem]
            if stock_quantity is None:
                errors["stock_quantity"] = ["Required for prints."]
        else:
            if size:
                errors["size"] = ["Only prints have a size."]
            if stock_quantity is not None:
                errors["stock_quantity"] = ["Only prints have stock."]
        if errors:
            raise InvalidInput("The product is not well formed; see `errors`.", extra={"errors": errors})

        if kind == ProductKind.PRINT:
            size = _print_size_spelling(tenant_id=tenant_id, event=event).get(size.casefold(), size)
        made_up_sku = not sku
        sku = sku or _default_sku(event=event, kind=kind, photo_id=photo_id, size=size)
        try:
            with transaction.atomic():
                product = ProductModel.objects.create(
                    tenant_id=tenant_id, event=event, kind=kind, photo_id=photo_id, size=size, sku=sku, active=active
                )
                if kind == ProductKind.PRINT:
                    assert stock_quantity is not None
                    Stock.objects.create(
                        tenant_id=tenant_id, product=product, quantity=stock_quantity, initial_quantity=stock_quantity
                    )
        except IntegrityError as exc:
            constraint = _constraint_name(exc)
            if constraint == SKU_UNIQUE_CONSTRAINT:
                # A made-up SKU is the same for the same product: say that it exists, not that
                # an SKU nobody typed is taken.
                if made_up_sku and _product_exists(event=event, kind=kind, photo_id=photo_id, size=size):
                    raise ProductConflict("This event already sells that product.") from exc
                raise ProductConflict(_sku_taken_message(tenant_id=tenant_id, sku=sku)) from exc
            if constraint in ("catalog_product_unique_photo_kind_size", "catalog_product_unique_bulk_per_event"):
                raise ProductConflict("This event already sells that product.") from exc
            raise
        return product


# The highest price of one unit, in minor units of the event's currency (the API's bound too).
PRICE_MAX_MINOR = 10**12


@dataclass(frozen=True)
class PriceIn:
    kind: str
    amount_minor: int
    size: str = ""


PRICE_LIST_CURRENCY_CHANGED = "catalog.price_list_currency_change"


@transaction.atomic
def price_list_set(*, tenant_id: int, event_id: int, currency: str, prices: Sequence[PriceIn]) -> PriceList:
    """Set prices of an event: one upsert per (kind, size); other prices stay as they are.

    `currency` must be one Darkroom sells in (`apps.core.currencies`, uppercase ISO 4217): it
    decides how every amount of the event is read, shown and charged. The event's price list is
    created with it on first use; its currency changes only through
    `price_list_currency_change` (a composite foreign key ties every price to it). Each amount
    is 1..PRICE_MAX_MINOR minor units. A print size is matched case-insensitively to one the event
    already uses and stored in that spelling (`_print_size_spelling`). Concurrent setters are safe: the upsert is
    `INSERT ... ON CONFLICT (tenant, event, kind, size) DO UPDATE`, under the price list's row
    lock (so a currency change cannot slip in between check and insert).
    Joins the caller's transaction; a refusal writes nothing. Raises EventNotFound,
    InvalidInput (`errors` by field: `currency`, `prices.<i>...`), PriceListCurrencyMismatch.
    """
    with tenant_context(tenant_id):
        event = _event_for_write(tenant_id=tenant_id, event_id=event_id)
        seen: set[tuple[str, str]] = set()
        errors: dict[str, list[str]] = {}
        if not currency_supported(currency):
            errors["currency"] = [unsupported_currency_message(currency)]
        for index, price in enumerate(prices):
            key = (price.kind, price.size.casefold())
            if key in seen:
                errors[f"prices.{index}"] = [
                    "Duplicate kind and size in this request (sizes are compared without case)."
                ]
            seen.add(key)
            if (price.kind == ProductKind.PRINT) != bool(price.size):
                errors[f"prices.{index}.size"] = ["Prints need a size; other kinds have none."]
            elif problem := text_field_problem(price.size, required=False, max_length=SIZE_MAX_LENGTH):
                errors[f"prices.{index}.size"] = [problem]
            if not 0 < price.amount_minor <= PRICE_MAX_MINOR:
                errors[f"prices.{index}.amount_minor"] = [f"A price is 1 to {PRICE_MAX_MINOR} minor units."]
        if list(errors) == ["currency"]:
            raise InvalidInput(errors["currency"][0], extra={"errors": errors})
        if errors:
            raise InvalidInput("The prices are not well formed; see `errors`.", extra={"errors": errors})

        price_list = _price_list_locked(tenant_id=tenant_id, event=event, currency=currency)
        if price_list.currency != currency:
            raise PriceListCurrencyMismatch(
                f"This event is priced in {price_list.currency}; prices in {currency} cannot be added. "
                "To price it in another currency, change its currency first (every price is removed)."
            )
        known = _print_size_spelling(tenant_id=tenant_id, event=event)
        prices = [
            PriceIn(kind=price.kind, amount_minor=price.amount_minor, size=known.get(price.size.casefold(), price.size))
            if price.kind == ProductKind.PRINT
            else price
            for price in prices
        ]
        Price.objects.bulk_create(
            [
                Price(
                    tenant_id=tenant_id,
                    price_list=price_list,
                    event=event,
                    kind=price.kind,
                    size=price.size,
                    amount_minor=price.amount_minor,
                    currency=currency,
                )
                for price in prices
            ],
            update_conflicts=True,
            unique_fields=["tenant", "event", "kind", "size"],
            update_fields=["amount_minor", "updated_at"],
        )
        return price_list


def _print_size_spelling(*, tenant_id: int, event: Event) -> dict[str, str]:
    """The print sizes the event already uses (its prices' and print products'), by case-folded
    size: "a4" typed for an event that has "A4" is A4, so the product and its price meet (they
    are matched by exact size). The first spelling in sort order wins for legacy duplicates."""
    sizes = set(
        Price.objects.filter(tenant_id=tenant_id, event=event, kind=ProductKind.PRINT).values_list("size", flat=True)
    )
    sizes |= set(
        ProductModel.objects.filter(tenant_id=tenant_id, event=event, kind=ProductKind.PRINT).values_list(
            "size", flat=True
        )
    )
    spelling: dict[str, str] = {}
    for size in sorted(sizes):
        spelling.setdefault(size.casefold(), size)
    return spelling


def _price_list_locked(*, tenant_id: int, event: Event, currency: str) -> PriceList:
    """The event's price list (created in `currency` if it has none), locked FOR UPDATE."""
    created = PriceList.objects.get_or_create(tenant_id=tenant_id, event=event, defaults={"currency": currency})[0]
    return PriceList.objects.select_for_update().get(pk=created.pk)


def _price_list_locked_if_any(*, tenant_id: int, event: Event) -> PriceList | None:
    """The event's price list locked FOR UPDATE, or None when it has none (nothing is created).
    Assumes a transaction."""
    return PriceList.objects.select_for_update().filter(tenant_id=tenant_id, event=event).first()


@transaction.atomic
def price_list_currency_change(
    *, tenant_id: int, event_id: int, currency: str, actor: Actor, expected_currency: str | None = None
) -> PriceList:
    """Price the event in another currency: every price of it is removed (an amount in one
    currency means nothing in another), so its products are not offered until prices are set
    again in the new currency (`price_list_set`). The way out of a wrong first choice.

    Joins the caller's transaction; locks the price list row, so setters wait and then see the new
    currency. Sales already made, checkouts already open and the amounts they recorded are not
    touched (each line keeps its own amount and currency); a shopper's cart shows the products as
    no longer on sale. Audited (`catalog.price_list_currency_change`, with the prices removed). The
    same currency changes nothing. An event without a price list has no currency to change: its
    first prices choose one, so it is refused (nothing is created). `expected_currency` is the
    currency the caller saw (a form's page, an API client's last read): checked under the lock, so
    prices set meanwhile in another currency are never removed unseen. Raises EventNotFound,
    InvalidInput (`currency`), PriceListMissing (no price list), PriceListCurrencyChanged
    (`expected_currency` given and not the event's); every refusal writes nothing.
    """
    if not currency_supported(currency):
        message = unsupported_currency_message(currency)
        raise InvalidInput(message, extra={"errors": {"currency": [message]}})
    with tenant_context(tenant_id):
        event = _event_for_write(tenant_id=tenant_id, event_id=event_id)
        price_list = _price_list_locked_if_any(tenant_id=tenant_id, event=event)
        if price_list is None:
            raise PriceListMissing(PriceListMissing.message)
        if expected_currency is not None and price_list.currency != expected_currency:
            raise PriceListCurrencyChanged(
                f"This event is priced in {price_list.currency} now, not {expected_currency}: its currency was "
                f"changed meanwhile. Nothing was changed; check its prices in {price_list.currency} before "
                "changing its currency."
            )
        previous = price_list.currency
        if previous == currency:
            return price_list
        removed = [
            {"kind": price.kind, "size": price.size, "amount_minor": price.amount_minor}
            for price in Price.objects.filter(price_list=price_list).order_by("kind", "size")
        ]
        Price.objects.filter(price_list=price_list).delete()
        price_list.currency = currency
        price_list.save(update_fields=["currency"])
        audit_record(
            action=PRICE_LIST_CURRENCY_CHANGED,
            tenant_id=tenant_id,
            actor_user=actor.user,
            actor_label=actor.label,
            target_type="event",
            target_id=str(event.pk),
            data={"currency": currency, "previous_currency": previous, "prices_removed": removed},
        )
        return price_list
