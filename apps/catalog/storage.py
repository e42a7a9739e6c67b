"""Where photo files live in the default storage, and the only way to get a URL for one.

Originals: `<private prefix>/originals/t<tenant>/e<event>/<random>.<ext>` (random, never
served by URL). Derivatives: `<public prefix>/{previews,thumbnails}/t<tenant>/e<event>/<token>.jpg`,
named deterministically from the photo's unguessable `public_token`, so regenerating them
overwrites the same names instead of piling up copies.
"""

from __future__ import annotations

import uuid
from typing import IO

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage


class StorageNameConflict(Exception):
    """The storage saved a derivative under a different name than the deterministic one."""


def original_name(*, tenant_id: int, event_id: int, extension: str) -> str:
    return f"{settings.CATALOG_PRIVATE_PREFIX}/originals/t{tenant_id}/e{event_id}/{uuid.uuid4().hex}.{extension}"


def derivative_name(*, kind: str, tenant_id: int, event_id: int, public_token: uuid.UUID) -> str:
    if kind not in ("previews", "thumbnails"):
        raise ValueError(f"unknown derivative kind {kind!r}")
    return f"{settings.CATALOG_PUBLIC_PREFIX}/{kind}/t{tenant_id}/e{event_id}/{public_token.hex}.jpg"


def save_original(*, name: str, content: IO[bytes]) -> str:
    """Store an upload under its (random, fresh) private name; returns the name stored."""
    return default_storage.save(name, content if isinstance(content, File) else File(content, name=name))


def read_bytes(name: str) -> bytes:
    """The whole file. Raises FileNotFoundError if the storage has no such file."""
    if not name:
        raise FileNotFoundError("no file name")
    with default_storage.open(name, "rb") as handle:
        data = handle.read()
    return data if isinstance(data, bytes) else data.encode()


def delete_if_exists(name: str) -> bool:
    """Delete a stored file if it is there (idempotent); True if this call deleted it."""
    if not name or not default_storage.exists(name):
        return False
    default_storage.delete(name)
    return True


def write_exact(*, name: str, data: bytes) -> None:
    """Write `data` under exactly `name`, replacing what is there.

    Callers serialise writers of one name (the derivatives service holds the photo's row
    lock), so delete-then-save cannot race; a storage that still renames (another writer
    outside the lock) is reported, and the stray copy removed, rather than silently kept.
    Raises StorageNameConflict.
    """
    if default_storage.exists(name):
        default_storage.delete(name)
    saved = default_storage.save(name, ContentFile(data, name=name))
    if saved != name:
        default_storage.delete(saved)
        raise StorageNameConflict(f"storage saved {name!r} as {saved!r}")


def public_url(name: str | None) -> str | None:
    """URL of a public derivative, or None when there is none yet.

    Refuses any name outside the public prefix: this is the guard that keeps originals from
    ever getting a URL, whatever a caller passes.
    """
    if not name:
        return None
    if not name.startswith(f"{settings.CATALOG_PUBLIC_PREFIX}/"):
        raise ValueError("only files under the public prefix have URLs")
    return default_storage.url(name)
