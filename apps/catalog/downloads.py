"""Every photo of an event as a download: the studio's "Sell every photo as a download", and the
photos uploaded after it.

`download_products_ensure` creates the download product of each live photo of the event that has
none and turns on the event's `downloads_for_new_photos`: from then on `download_for_new_photo`
gives each photo its download in the transaction that creates the photo (`photo_create`: the
studio's form, the API, commands), until `downloads_for_new_photos_stop`. The studio expects
photos it adds later to be sold the way it chose; the downloads made stay when it stops (each can
be deactivated in its row). A download sells at the event's download price, like any other.

**One download per photo, whichever commits first.** The `(tenant, photo, kind, size)` unique
index is the arbiter (`ON CONFLICT ... DO NOTHING`). What makes sure a photo is not left without
one when an upload and the offer run at once is the event row: the offer takes it FOR NO KEY
UPDATE (it sets the rule) before its INSERT ... SELECT, and an upload reads the rule FOR SHARE,
which conflicts with it. Either the upload's lock comes first, and the offer waits until the
upload committed, so its INSERT (a new snapshot under READ COMMITTED) sees the photo; or the
offer's comes first, and the upload waits until it committed and then reads the rule on. Uploads
share the lock with each other, so they never wait for one another. Both take the event row
before any product row, so they add no lock-order cycle.

SKUs are `E<event>-DOWNLOAD-P<photo>`, as `product_create` makes them up. A photo whose SKU another
product already uses (whatever its case) gets none and is reported, never swallowed: an upload is
not refused for it.

Every service here uses plain `@transaction.atomic`, joining the transaction of the
Idempotency-Key protocol (API) or of `submit_once` (studio forms), and runs in
`tenant_context(tenant_id)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction

from apps.catalog.errors import EventNotFound, ProductConflict
from apps.catalog.models import Event, Photo, ProductKind
from apps.catalog.products import Actor
from apps.tenancy.context import tenant_context
from apps.tenancy.services import audit_record

DOWNLOADS_OFFERED = "catalog.downloads_offered"
DOWNLOADS_FOR_NEW_PHOTOS_STARTED = "catalog.downloads_for_new_photos_started"
DOWNLOADS_FOR_NEW_PHOTOS_STOPPED = "catalog.downloads_for_new_photos_stopped"

# The unique index each SKU collision names (catalog.0008: `(tenant_id, lower(sku))`).
_SKU_UNIQUE_INDEX = "catalog_product_unique_tenant_sku"
# Statements tried before giving up on SKUs taken concurrently (each try sees them committed).
_OFFER_ATTEMPTS = 3

# The download each live photo of the event (or of `%(photos)s` only) would get, with the SKU
# `product_create` makes up.
_WANTED_DOWNLOADS_CTE = """
    WITH wanted AS (
        SELECT ph.tenant_id, ph.event_id, ph.id AS photo_id, 'E' || ph.event_id || '-DOWNLOAD-P' || ph.id AS sku
          FROM catalog_photo ph
         WHERE ph.tenant_id = %(tenant)s AND ph.event_id = %(event)s AND ph.withdrawn_at IS NULL {only_photo}
           AND NOT EXISTS (
               SELECT 1 FROM catalog_product pr
                WHERE pr.tenant_id = ph.tenant_id AND pr.photo_id = ph.id AND pr.kind = %(kind)s::varchar)
    )
"""

# The arbiter is the photo/kind/size partial unique index only: a concurrent offer's row for the
# same photo is skipped, while an SKU held by another product is left out beforehand (NOT EXISTS
# on the case-insensitive SKU index) and reported, never swallowed.
_OFFER_SQL = (
    _WANTED_DOWNLOADS_CTE
    + """
    INSERT INTO catalog_product (tenant_id, event_id, photo_id, kind, size, sku, active, created_at)
    SELECT w.tenant_id, w.event_id, w.photo_id, %(kind)s::varchar, '', w.sku, true, now()
      FROM wanted w
     WHERE NOT EXISTS (
           SELECT 1 FROM catalog_product taken WHERE taken.tenant_id = w.tenant_id AND lower(taken.sku) = lower(w.sku))
     ORDER BY w.photo_id
    ON CONFLICT (tenant_id, photo_id, kind, size) WHERE photo_id IS NOT NULL DO NOTHING
    """
)

_SKU_TAKEN_SQL = (
    _WANTED_DOWNLOADS_CTE
    + """
    SELECT w.photo_id, w.sku, taken.id, taken.sku
      FROM wanted w
      JOIN catalog_product taken ON taken.tenant_id = w.tenant_id AND lower(taken.sku) = lower(w.sku)
     ORDER BY w.photo_id
    """
)

_RULE_FOR_SHARE_SQL = "SELECT downloads_for_new_photos FROM catalog_event WHERE tenant_id = %s AND id = %s FOR SHARE"


@dataclass(frozen=True)
class DownloadNotOffered:
    """A live photo left without a download: the SKU its download would get (`sku`) is already
    another product's (`taken_by_sku`, as stored: SKUs are unique whatever their case)."""

    photo_id: int
    sku: str
    taken_by_product_id: int
    taken_by_sku: str
    reason: str = "sku-taken"

    @property
    def detail(self) -> str:
        return f"Its download's SKU {self.sku!r} is already used by product {self.taken_by_product_id}."


@dataclass(frozen=True)
class DownloadsOffered:
    """What `download_products_ensure` did: `created` downloads, the photos it could not offer,
    and that photos uploaded from now on are offered too."""

    created: int
    not_offered: tuple[DownloadNotOffered, ...]
    downloads_for_new_photos: bool = True


def _constraint_name(exc: IntegrityError) -> str:
    return str(getattr(getattr(exc.__cause__, "diag", None), "constraint_name", "") or "")


def _params(
    *, tenant_id: int, event_id: int, photo_ids: Sequence[int] | None
) -> tuple[dict[str, int | str | list[int]], str]:
    """The parameters of the statements above, and their filter of `photo_ids` (None: every photo)."""
    params: dict[str, int | str | list[int]] = {
        "tenant": tenant_id,
        "event": event_id,
        "kind": ProductKind.DOWNLOAD.value,
    }
    if photo_ids is None:
        return params, ""
    params["photos"] = list(photo_ids)
    return params, "AND ph.id = ANY(%(photos)s)"


def _offer(*, tenant_id: int, event_id: int, photo_ids: Sequence[int] | None = None) -> DownloadsOffered:
    """Create the missing downloads of the event's live photos (or of `photo_ids` only); the
    photos whose SKU is taken are returned. An SKU taken by a transaction committing meanwhile
    makes the insert fail on the SKU index: it is retried in a savepoint (the retry sees it and
    reports the photo). Assumes a transaction and the tenant's context. Raises ProductConflict if
    SKUs kept being taken through every attempt."""
    params, only_photo = _params(tenant_id=tenant_id, event_id=event_id, photo_ids=photo_ids)
    created = 0
    for attempt in range(1, _OFFER_ATTEMPTS + 1):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(_OFFER_SQL.format(only_photo=only_photo), params)
                created = cursor.rowcount
            break
        except IntegrityError as exc:
            if _constraint_name(exc) != _SKU_UNIQUE_INDEX:
                raise
            if attempt == _OFFER_ATTEMPTS:
                raise ProductConflict(
                    "Products of this studio were being added while the downloads were offered: try again."
                ) from exc
    not_offered = downloads_not_offered(tenant_id=tenant_id, event_id=event_id, photo_ids=photo_ids)
    return DownloadsOffered(created=created, not_offered=not_offered)


def downloads_not_offered(
    *, tenant_id: int, event_id: int, photo_ids: Sequence[int] | None = None
) -> tuple[DownloadNotOffered, ...]:
    """The live photos of the event (or among `photo_ids`) without a download because the SKU it
    would get is another product's, in photo order. Runs in the tenant's context."""
    params, only_photo = _params(tenant_id=tenant_id, event_id=event_id, photo_ids=photo_ids)
    with tenant_context(tenant_id), connection.cursor() as cursor:
        cursor.execute(_SKU_TAKEN_SQL.format(only_photo=only_photo), params)
        return tuple(
            DownloadNotOffered(photo_id=photo_id, sku=sku, taken_by_product_id=product_id, taken_by_sku=taken_sku)
            for photo_id, sku, product_id, taken_sku in cursor.fetchall()
        )


def _event_locked(*, tenant_id: int, event_id: int) -> Event:
    """The event row FOR NO KEY UPDATE (uploads reading its rule wait; photos and products
    referencing it do not). Assumes a transaction. Raises EventNotFound."""
    event = Event.objects.select_for_update(no_key=True).filter(tenant_id=tenant_id, pk=event_id).first()
    if event is None:
        raise EventNotFound(f"Event {event_id} does not exist.")
    return event


def _audit(*, action: str, tenant_id: int, event_id: int, actor: Actor, data: dict[str, object]) -> None:
    audit_record(
        action=action,
        tenant_id=tenant_id,
        actor_user=actor.user,
        actor_label=actor.label,
        target_type="event",
        target_id=str(event_id),
        data=data,
    )


@transaction.atomic
def download_products_ensure(*, tenant_id: int, event_id: int, actor: Actor) -> DownloadsOffered:
    """Offer every photo of the event as a download, now and when uploaded later: create the
    download product of each photo that has none (SKU `E<event>-DOWNLOAD-P<photo>`, as
    `product_create` names it), and turn on `downloads_for_new_photos`.

    A photo whose download product exists, active or not, keeps it as it is (a deactivated one
    stays deactivated); a withdrawn photo gets none (as `product_create` refuses one). A photo
    whose SKU another product already uses, whatever its case, gets none either and is returned
    in `not_offered` (with the product holding it); the other photos are still offered. Repeating
    it creates nothing; concurrent calls create each product once. Locks the event row first (see
    the module docstring: an upload committing meanwhile is offered by one or the other). Audited:
    `catalog.downloads_offered` when it created any, `catalog.downloads_for_new_photos_started`
    when it turned the rule on. Joins the caller's transaction; raises EventNotFound, or
    ProductConflict if SKUs kept being taken concurrently through every attempt.
    """
    with tenant_context(tenant_id):
        event = _event_locked(tenant_id=tenant_id, event_id=event_id)
        if not event.downloads_for_new_photos:
            event.downloads_for_new_photos = True
            event.save(update_fields=["downloads_for_new_photos"])
            _audit(
                action=DOWNLOADS_FOR_NEW_PHOTOS_STARTED, tenant_id=tenant_id, event_id=event_id, actor=actor, data={}
            )
        offered = _offer(tenant_id=tenant_id, event_id=event_id)
        if offered.created:
            data: dict[str, object] = {"created": offered.created}
            if offered.not_offered:
                data["not_offered"] = [n.photo_id for n in offered.not_offered]
            _audit(action=DOWNLOADS_OFFERED, tenant_id=tenant_id, event_id=event_id, actor=actor, data=data)
        return offered


@transaction.atomic
def downloads_for_new_photos_stop(*, tenant_id: int, event_id: int, actor: Actor) -> bool:
    """Stop offering the photos uploaded to the event from now on as downloads; the downloads
    made so far stay as they are. Returns whether it changed anything (audited once,
    `catalog.downloads_for_new_photos_stopped`; stopping a stopped event writes nothing). Locks
    the event row, so an upload committing meanwhile follows the rule it read. Joins the caller's
    transaction; raises EventNotFound."""
    with tenant_context(tenant_id):
        event = _event_locked(tenant_id=tenant_id, event_id=event_id)
        if not event.downloads_for_new_photos:
            return False
        event.downloads_for_new_photos = False
        event.save(update_fields=["downloads_for_new_photos"])
        _audit(action=DOWNLOADS_FOR_NEW_PHOTOS_STOPPED, tenant_id=tenant_id, event_id=event_id, actor=actor, data={})
        return True


def download_for_new_photo(*, photo: Photo, actor: Actor) -> DownloadsOffered | None:
    """Give a photo just created its download if its event offers new photos as downloads
    (`downloads_for_new_photos`); None when it does not.

    Called by `photo_create` in the upload's transaction and tenant context (assumes both). Reads
    the rule FOR SHARE (see the module docstring). A taken SKU leaves the photo without a
    download, reported in `not_offered`; the upload goes on. Audited
    (`catalog.downloads_offered`, `photo_ids`) when it created the download. Raises
    ProductConflict only if SKUs kept being taken concurrently through every attempt.
    """
    with connection.cursor() as cursor:
        cursor.execute(_RULE_FOR_SHARE_SQL, [photo.tenant_id, photo.event_id])
        row = cursor.fetchone()
    if row is None or not row[0]:
        return None
    offered = _offer(tenant_id=photo.tenant_id, event_id=photo.event_id, photo_ids=[photo.pk])
    if offered.created:
        _audit(
            action=DOWNLOADS_OFFERED,
            tenant_id=photo.tenant_id,
            event_id=photo.event_id,
            actor=actor,
            data={"created": offered.created, "photo_ids": [photo.pk], "rule": "downloads_for_new_photos"},
        )
    return offered
