"""Photo uploads in two steps: store the original outside any transaction, then write the rows.

Storing an original is a network upload in production (an S3-compatible storage, up to tens of
MB). It must not happen while a transaction is open: the transaction would hold its locks (the
Idempotency-Key's advisory lock, the row locks of the outbox and drop-in inserts) for as long as
the upload takes, and a rollback cannot take the file back anyway. So an upload is:

1. `photo_original_store` — outside any transaction (TransactionManagementError otherwise):
   check the event and the uploader (reads), probe the image with Pillow, then store it under a
   fresh random private name. Every refusal happens before the write, so a refused upload
   stores nothing. Returns a `StoredOriginal` that no Photo names yet.
2. `photo_create` — inside the caller's transaction (the Idempotency-Key protocol's, the studio
   form's `submit_once`, or its own): the Photo row, its `catalog.photo_uploaded` outbox row, its
   drop-in job and, when its event offers new photos as downloads, its download product
   (`apps.catalog.downloads`). Database rows only, so the transaction stays short.
3. If step 2 does not commit (a refusal, a rolled-back transaction, a replayed request that never
   ran it), the caller deletes the original at once with `photo_originals_discard` (best effort;
   it keeps any original a committed photo names). Whatever still escapes (a crash between the
   steps, a storage error while discarding) is an orphan: `originals_sweep_orphans` deletes it
   once it is older than CATALOG_ORPHAN_GRACE_HOURS.

`photo_upload` chains the steps for callers outside any transaction (commands, tests, benches).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from apps.catalog import images, selectors, storage
from apps.catalog.downloads import download_for_new_photo
from apps.catalog.errors import NotAPhotographer, UploadRefused, UploadTooLarge
from apps.catalog.models import Photo
from apps.catalog.products import Actor
from apps.core.problems import InvalidInput
from apps.dropin.services import dropin_job_enqueue
from apps.outbox.services import outbox_publish
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Membership, User

logger = logging.getLogger("darkroom.catalog")

UPLOADER_ROLES = (Membership.Role.OWNER, Membership.Role.PHOTOGRAPHER)
PHOTO_UPLOADED_TOPIC = "catalog.photo_uploaded"


@dataclass(frozen=True)
class StoredOriginal:
    """An original `photo_original_store` stored and no Photo names yet.

    `photographer_id` is who the photo will be credited to, as resolved when it was stored;
    `photo_create` checks it again.
    """

    tenant_id: int
    event_id: int
    photographer_id: int
    name: str
    width: int
    height: int


def _uploader_check(*, tenant_id: int, uploaded_by: User, photographer_id: int | None) -> int:
    """The photographer to credit: the uploader, or (owners only) another uploader they name.

    Runs in the tenant's context. Raises NotAPhotographer, InvalidInput.
    """
    photographer = photographer_id or uploaded_by.pk
    roles = dict(
        Membership.objects.filter(tenant_id=tenant_id, user_id__in={uploaded_by.pk, photographer}).values_list(
            "user_id", "role"
        )
    )
    if roles.get(uploaded_by.pk) not in UPLOADER_ROLES:
        raise NotAPhotographer("Only owners and photographers of this studio upload photos.")
    if photographer != uploaded_by.pk:
        if roles[uploaded_by.pk] != Membership.Role.OWNER:
            raise NotAPhotographer("Only an owner may upload on behalf of another photographer.")
        if roles.get(photographer) not in UPLOADER_ROLES:
            raise InvalidInput(
                "The photographer is not an owner or photographer of this studio.",
                extra={"errors": {"photographer_id": ["Not a photographer of this studio."]}},
            )
    return photographer


def megabytes(size: int) -> str:
    """ "1.5", "50": a size in bytes in megabytes (MiB, as the limits are set), for people."""
    return f"{size / 2**20:.1f}".removesuffix(".0")


def photo_original_check(*, image: IO[bytes], image_size: int) -> images.ProbedImage:
    """Whether a file is an acceptable photo: size, format and pixel count, probed with Pillow.

    No database, no storage: a form with several files checks them all before storing any.
    Leaves the stream at position 0. Raises UploadTooLarge, UploadRefused.
    """
    if image_size > settings.CATALOG_MAX_UPLOAD_BYTES:
        raise UploadTooLarge(
            f"The image is {megabytes(image_size)} MB; the limit is {megabytes(settings.CATALOG_MAX_UPLOAD_BYTES)} MB."
        )
    try:
        return images.probe_image(
            image, allowed_formats=settings.CATALOG_UPLOAD_FORMATS, max_pixels=settings.CATALOG_MAX_IMAGE_PIXELS
        )
    except images.ImageRejected as exc:
        raise UploadRefused(str(exc), extra={"errors": {"image": [str(exc)]}}) from exc


def photo_original_store(
    *,
    tenant_id: int,
    event_id: int,
    uploaded_by: User,
    image: IO[bytes],
    image_size: int,
    photographer_id: int | None = None,
) -> StoredOriginal:
    """Step one of an upload: check it, then store its original privately under a fresh name.

    Runs OUTSIDE any transaction (raises TransactionManagementError inside one): the storage
    write may take seconds and must hold no database lock. Checks, before writing anything:
    the event exists in the tenant, the uploader is an owner or photographer (an owner may name
    another one as `photographer_id`), the size, format and pixel count. The result is named by
    no Photo: pass it to `photo_create`, or to `photo_originals_discard` if that does not commit.
    Raises EventNotFound, NotAPhotographer, InvalidInput, UploadTooLarge, UploadRefused; storage
    errors propagate.
    """
    if connection.in_atomic_block:
        raise TransactionManagementError("photo originals are stored outside any transaction")
    with tenant_context(tenant_id):
        event = selectors.event_get(tenant_id=tenant_id, event_id=event_id)
        photographer = _uploader_check(tenant_id=tenant_id, uploaded_by=uploaded_by, photographer_id=photographer_id)
    probed = photo_original_check(image=image, image_size=image_size)
    name = storage.save_original(
        name=storage.original_name(tenant_id=tenant_id, event_id=event.pk, extension=probed.extension),
        content=image,
    )
    return StoredOriginal(
        tenant_id=tenant_id,
        event_id=event.pk,
        photographer_id=photographer,
        name=name,
        width=probed.width,
        height=probed.height,
    )


@transaction.atomic
def photo_create(*, tenant_id: int, uploaded_by: User, stored: StoredOriginal) -> Photo:
    """Step two of an upload: the Photo of a stored original (derivatives pending), its render
    request, its drop-in job and, if its event offers every new photo as a download, its download
    (`download_for_new_photo`, audited for the uploader; a taken SKU leaves it without one).

    Database rows only, in the caller's transaction (joins it; opens one when called alone), so
    they commit with the caller's key row. Checks the event and the roles again: either may have
    changed since the original was stored. A refusal (or any rollback) leaves the original to the
    caller, who discards it. Raises EventNotFound, NotAPhotographer, InvalidInput, ValueError
    for an original stored for another tenant, and ProductConflict only if its download's SKU kept
    being taken concurrently.
    """
    if stored.tenant_id != tenant_id:
        raise ValueError("the original was stored for another tenant")
    with tenant_context(tenant_id):
        event = selectors.event_get(tenant_id=tenant_id, event_id=stored.event_id)
        photographer = _uploader_check(
            tenant_id=tenant_id, uploaded_by=uploaded_by, photographer_id=stored.photographer_id
        )
        photo = Photo.objects.create(
            tenant_id=tenant_id,
            event=event,
            photographer_id=photographer,
            original=stored.name,
            width=stored.width,
            height=stored.height,
            derivatives_requested_at=timezone.now(),
        )
        request_derivatives(photo)
        dropin_job_enqueue(photo=photo)
        download_for_new_photo(photo=photo, actor=Actor.member(uploaded_by))
        return photo


def photo_originals_discard(*, stored: Sequence[StoredOriginal]) -> int:
    """Delete stored originals that no committed Photo names, right away (best effort).

    For the caller of `photo_original_store` whose `photo_create` did not commit. Runs outside
    any transaction (TransactionManagementError otherwise), after the caller's transaction ended,
    so an original whose photo did commit (however the request ended) is seen and kept. Never
    raises for the database or the storage: what it cannot delete is logged and left to
    `originals_sweep_orphans`. Returns how many files it deleted.
    """
    if connection.in_atomic_block:
        raise TransactionManagementError("originals are discarded after the transaction ended")
    by_event: dict[tuple[int, int], set[str]] = defaultdict(set)
    for original in stored:
        by_event[(original.tenant_id, original.event_id)].add(original.name)
    deleted = 0
    for (tenant_id, event_id), names in by_event.items():
        try:
            with tenant_context(tenant_id):
                named = set(
                    Photo.objects.filter(tenant_id=tenant_id, event_id=event_id, original__in=names).values_list(
                        "original", flat=True
                    )
                )
            for name in sorted(names - named):
                deleted += int(storage.delete_if_exists(name))
        except Exception:
            logger.warning(
                "stored originals not discarded; the orphan sweep will",
                exc_info=True,
                extra={"tenant_id": tenant_id, "event_id": event_id, "files": sorted(names)},
            )
    return deleted


def photo_upload(
    *,
    tenant_id: int,
    event_id: int,
    uploaded_by: User,
    image: IO[bytes],
    image_size: int,
    photographer_id: int | None = None,
) -> Photo:
    """Upload one photo in one call, outside any transaction: store its original, then commit
    its rows in a transaction of their own (outermost, durable); if they do not commit, the
    original is discarded again. For commands, benches and tests; views and forms that run under
    an idempotency key call the two steps themselves. Raises TransactionManagementError inside a
    transaction, and what `photo_original_store` and `photo_create` raise.
    """
    stored = photo_original_store(
        tenant_id=tenant_id,
        event_id=event_id,
        uploaded_by=uploaded_by,
        image=image,
        image_size=image_size,
        photographer_id=photographer_id,
    )
    try:
        with transaction.atomic(durable=True):
            return photo_create(tenant_id=tenant_id, uploaded_by=uploaded_by, stored=stored)
    except BaseException:
        photo_originals_discard(stored=[stored])
        raise


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


# --- the backstop: originals nobody names -------------------------------------------------


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

    An upload stores its original before any transaction opens and its photo commits later (or
    never): the uploader discards the original at once when the photo does not commit, but a
    crash between the two steps, or a storage error while discarding, leaves a file nobody refers
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
