"""Writes of the catalog: events, photo uploads and derivatives, products with stock, prices.

Services called from API views use plain `@transaction.atomic`: they join the one transaction
the Idempotency-Key protocol opens around the request (their rows commit with the key row), or
open their own when called elsewhere. Each runs in `tenant_context(tenant_id)`, so RLS scopes
every statement to that tenant whoever calls it (API, task, command, test). Changing a product
later (deactivate, restock) lives in `apps.catalog.products`, re-exported here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import IO

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from apps.catalog import images, storage
from apps.catalog.errors import (
    EventNotFound,
    EventSlugTaken,
    NotAPhotographer,
    PriceListCurrencyMismatch,
    ProductConflict,
    UploadRefused,
    UploadTooLarge,
)
from apps.catalog.models import RESERVED_EVENT_SLUGS, Event, Photo, Price, PriceList, ProductKind, Stock
from apps.catalog.models import Product as ProductModel
from apps.catalog.products import Actor as Actor
from apps.catalog.products import product_set_active as product_set_active
from apps.catalog.products import stock_restock as stock_restock
from apps.core.problems import InvalidInput
from apps.dropin.services import dropin_job_enqueue
from apps.outbox.requeue import requeue_stale
from apps.outbox.services import outbox_publish
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Membership, Organization, User

logger = logging.getLogger("darkroom.catalog")

ACCESS_CODE_MIN_LENGTH = 4
UPLOADER_ROLES = (Membership.Role.OWNER, Membership.Role.PHOTOGRAPHER)


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

    Joins the caller's transaction (a savepoint guards the insert). Raises InvalidInput when
    the access code does not match the visibility or the slug is reserved (RESERVED_EVENT_SLUGS),
    EventSlugTaken when the tenant already has an event with this slug.
    """
    if slug in RESERVED_EVENT_SLUGS:
        raise InvalidInput(
            f"The slug {slug!r} is reserved for the shop's own pages.",
            extra={"errors": {"slug": [f"Not one of: {', '.join(RESERVED_EVENT_SLUGS)}."]}},
        )
    with tenant_context(tenant_id):
        if visibility == Event.Visibility.ACCESS_CODE:
            if not access_code or len(access_code) < ACCESS_CODE_MIN_LENGTH:
                raise InvalidInput(
                    "An access-code event needs an access code.",
                    extra={"errors": {"access_code": [f"At least {ACCESS_CODE_MIN_LENGTH} characters."]}},
                )
            code_hash = make_password(access_code)
        else:
            if access_code:
                raise InvalidInput(
                    "A public event has no access code.",
                    extra={"errors": {"access_code": ["Only for visibility 'access_code'."]}},
                )
            code_hash = ""
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


# --- photos -------------------------------------------------------------------------------


@transaction.atomic
def photo_upload(
    *,
    tenant_id: int,
    event_id: int,
    uploaded_by: User,
    image: IO[bytes],
    image_size: int,
    photographer_id: int | None = None,
) -> Photo:
    """Store an original privately, create its Photo (derivatives pending) and request them.

    The photographer is the uploader unless an owner names another member with the owner or
    photographer role. The file is probed with Pillow before anything is written. Joins the
    caller's transaction; the original is stored before the row, so a row never points at a
    missing file (a rolled-back transaction can leave an unreferenced private original).
    Raises EventNotFound, NotAPhotographer, UploadTooLarge, UploadRefused.
    """
    with tenant_context(tenant_id):
        event = _event_for_write(tenant_id=tenant_id, event_id=event_id)
        roles = dict(
            Membership.objects.filter(
                tenant_id=tenant_id, user_id__in={uploaded_by.pk, photographer_id or uploaded_by.pk}
            ).values_list("user_id", "role")
        )
        if roles.get(uploaded_by.pk) not in UPLOADER_ROLES:
            raise NotAPhotographer("Only owners and photographers of this studio upload photos.")
        photographer = photographer_id or uploaded_by.pk
        if photographer != uploaded_by.pk:
            if roles[uploaded_by.pk] != Membership.Role.OWNER:
                raise NotAPhotographer("Only an owner may upload on behalf of another photographer.")
            if roles.get(photographer) not in UPLOADER_ROLES:
                raise InvalidInput(
                    "The photographer is not an owner or photographer of this studio.",
                    extra={"errors": {"photographer_id": ["Not a photographer of this studio."]}},
                )
        if image_size > settings.CATALOG_MAX_UPLOAD_BYTES:
            raise UploadTooLarge(f"The image is {image_size} bytes; the limit is {settings.CATALOG_MAX_UPLOAD_BYTES}.")
        try:
            probed = images.probe_image(
                image,
                allowed_formats=settings.CATALOG_UPLOAD_FORMATS,
                max_pixels=settings.CATALOG_MAX_IMAGE_PIXELS,
            )
        except images.ImageRejected as exc:
            raise UploadRefused(str(exc), extra={"errors": {"image": [str(exc)]}}) from exc

        name = storage.save_original(
            name=storage.original_name(tenant_id=tenant_id, event_id=event.pk, extension=probed.extension),
            content=image,
        )
        photo = Photo.objects.create(
            tenant_id=tenant_id,
            event=event,
            photographer_id=photographer,
            original=name,
            width=probed.width,
            height=probed.height,
            derivatives_requested_at=timezone.now(),
        )
        request_derivatives(photo)
        dropin_job_enqueue(photo=photo)
        return photo


PHOTO_UPLOADED_TOPIC = "catalog.photo_uploaded"


def request_derivatives(photo: Photo) -> None:
    """Ask for the photo's preview and thumbnail, durably: an outbox row in the upload's own
    transaction, relayed to `catalog.generate_derivatives` after commit (at least once; the
    consumer is idempotent). Assumes the caller's transaction.
    """
    outbox_publish(
        topic=PHOTO_UPLOADED_TOPIC,
        tenant_id=photo.tenant_id,
        aggregate_type="photo",
        aggregate_id=photo.pk,
        payload={"tenant_id": photo.tenant_id, "photo_id": photo.pk},
    )


@transaction.atomic(durable=True)
def photo_derivatives_requeue_stale(*, older_than_seconds: float, limit: int = 500) -> list[int]:
    """Ask again for the derivatives of photos still `pending` more than `older_than_seconds`
    after they were last asked for (`apps.outbox.requeue`: the broker lost that message).
    Returns the photo ids.

    Outermost transaction, in the system context (the beat task's): photos of every studio.
    Harmless when the render was only slow: it is idempotent.
    """
    photos = requeue_stale(
        Photo.objects.filter(derivatives_status=Photo.DerivativesStatus.PENDING),
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
    concurrent runs for one photo serialise. An original Pillow cannot decode marks the photo
    `failed` (no retry helps); storage and database errors propagate for the task to retry.
    Returns the resulting status ("ready", "failed", or "missing" for a deleted photo).
    """
    with tenant_context(tenant_id):
        photo = Photo.objects.filter(tenant_id=tenant_id, pk=photo_id).first()
        if photo is None:
            logger.warning("derivatives requested for a missing photo", extra={"photo_id": photo_id})
            return "missing"
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
            storage.write_exact(name=names["previews"], data=rendered.preview)
            storage.write_exact(name=names["thumbnails"], data=rendered.thumbnail)
            locked.preview.name = names["previews"]
            locked.thumbnail.name = names["thumbnails"]
            locked.derivatives_status = Photo.DerivativesStatus.READY
            locked.derivatives_error = ""
            locked.save(update_fields=["preview", "thumbnail", "derivatives_status", "derivatives_error"])
        return Photo.DerivativesStatus.READY.value


# --- products, stock and prices -----------------------------------------------------------


def _default_sku(*, event: Event, kind: str, photo_id: int | None, size: str) -> str:
    parts = [f"E{event.pk}", kind.upper()]
    parts.append(f"P{photo_id}" if photo_id else "ALL")
    if size:
        parts.append(slugify(size).upper() or "SIZE")
    return "-".join(parts)[:64]


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
    quantity; a bulk product ("all my photos of this event") has neither. Joins the caller's
    transaction (a savepoint guards the inserts). Raises EventNotFound, InvalidInput,
    ProductConflict (sku taken, or the same photo/kind/size or bulk product exists).
    """
    with tenant_context(tenant_id):
        event = _event_for_write(tenant_id=tenant_id, event_id=event_id)
        errors: dict[str, list[str]] = {}
        if kind in (ProductKind.DOWNLOAD, ProductKind.PRINT):
            if photo_id is None:
                errors["photo_id"] = ["Required for this kind."]
            elif not Photo.objects.filter(tenant_id=tenant_id, event_id=event.pk, pk=photo_id).exists():
                errors["photo_id"] = ["No such photo in this event."]
        elif photo_id is not None:
            errors["photo_id"] = ["A bulk product covers the whole event; omit photo_id."]
        if kind == ProductKind.PRINT:
            if not size:
                errors["size"] = ["Required for prints."]
            if stock_quantity is None:
                errors["stock_quantity"] = ["Required for prints."]
        else:
            if size:
                errors["size"] = ["Only prints have a size."]
            if stock_quantity is not None:
                errors["stock_quantity"] = ["Only prints have stock."]
        if errors:
            raise InvalidInput("The product is not well formed; see `errors`.", extra={"errors": errors})

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
            if constraint == "catalog_product_unique_tenant_sku":
                raise ProductConflict(f"The SKU {sku!r} is already used.") from exc
            if constraint in ("catalog_product_unique_photo_kind_size", "catalog_product_unique_bulk_per_event"):
                raise ProductConflict("This event already sells that product.") from exc
            raise
        return product


@dataclass(frozen=True)
class PriceIn:
    kind: str
    amount_minor: int
    size: str = ""


@transaction.atomic
def price_list_set(*, tenant_id: int, event_id: int, currency: str, prices: Sequence[PriceIn]) -> PriceList:
    """Set prices of an event: one upsert per (kind, size); other prices stay as they are.

    The event's price list is created with `currency` on first use; its currency is fixed
    from then on (a composite foreign key ties every price to it). Concurrent setters are
    safe: the upsert is `INSERT ... ON CONFLICT (tenant, event, kind, size) DO UPDATE`.
    Joins the caller's transaction. Raises EventNotFound, InvalidInput,
    PriceListCurrencyMismatch.
    """
    with tenant_context(tenant_id):
        event = _event_for_write(tenant_id=tenant_id, event_id=event_id)
        seen: set[tuple[str, str]] = set()
        errors: dict[str, list[str]] = {}
        for index, price in enumerate(prices):
            key = (price.kind, price.size)
            if key in seen:
                errors[f"prices.{index}"] = ["Duplicate kind and size in this request."]
            seen.add(key)
            if (price.kind == ProductKind.PRINT) != bool(price.size):
                errors[f"prices.{index}.size"] = ["Prints need a size; other kinds have none."]
        if errors:
            raise InvalidInput("The prices are not well formed; see `errors`.", extra={"errors": errors})

        price_list, _ = PriceList.objects.get_or_create(
            tenant_id=tenant_id, event=event, defaults={"currency": currency}
        )
        if price_list.currency != currency:
            raise PriceListCurrencyMismatch(
                f"This event is priced in {price_list.currency}; prices in {currency} cannot be added."
            )
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


@dataclass(frozen=True)
class OrphanSweepReport:
    events: int = 0
    files: int = 0
    deleted: int = 0
    kept_recent: int = 0


_TENANT_DIR = re.compile(r"^t(\d+)$")
_EVENT_DIR = re.compile(r"^e(\d+)$")


def originals_sweep_orphans(*, older_than: datetime) -> OrphanSweepReport:
    """Delete stored originals that no Photo names and that were last written before `older_than`.

    An upload stores its original before its transaction commits the Photo row, so a rolled-back
    upload (a refused idempotent retry, a database error, a crash) leaves a file nobody refers
    to. The grace period (`older_than`, CATALOG_ORPHAN_GRACE_HOURS ago in the beat task) keeps
    the files of uploads still in flight. Walks `<private prefix>/originals/t<tenant>/e<event>/`
    and reads each event's photos in that tenant's context (RLS). Outside any transaction;
    safe to repeat and to run while uploads go on (a file is deleted only if it is old and
    unreferenced when looked at). Storage errors propagate (the task retries next time).
    """
    root = f"{settings.CATALOG_PRIVATE_PREFIX}/originals"
    events = files = deleted = kept_recent = 0
    try:
        # Not `exists(root)`: on object stores a prefix is no object, so it would say False.
        tenant_dirs, _ = default_storage.listdir(root)
    except FileNotFoundError:
        return OrphanSweepReport()
    for tenant_dir in sorted(tenant_dirs):
        tenant_match = _TENANT_DIR.match(tenant_dir)
        if tenant_match is None:
            continue
        tenant_id = int(tenant_match.group(1))
        event_dirs, _ = default_storage.listdir(f"{root}/{tenant_dir}")
        for event_dir in sorted(event_dirs):
            event_match = _EVENT_DIR.match(event_dir)
            if event_match is None:
                continue
            folder = f"{root}/{tenant_dir}/{event_dir}"
            _, names = default_storage.listdir(folder)
            stored = {f"{folder}/{name}" for name in names}
            events += 1
            files += len(stored)
            with tenant_context(tenant_id):
                referenced = set(
                    Photo.objects.filter(
                        tenant_id=tenant_id, event_id=int(event_match.group(1)), original__in=stored
                    ).values_list("original", flat=True)
                )
            for name in sorted(stored - referenced):
                if default_storage.get_modified_time(name) >= older_than:
                    kept_recent += 1
                    continue
                default_storage.delete(name)
                deleted += 1
                logger.info("orphaned original deleted", extra={"tenant_id": tenant_id, "file": name})
    return OrphanSweepReport(events=events, files=files, deleted=deleted, kept_recent=kept_recent)
