"""An in-memory storage that notes whether a database transaction was open at each write and
delete, and the fixture helper that installs it as the default storage for one test."""

from __future__ import annotations

from typing import IO, Any, cast

from django.conf import settings
from django.core.files.storage import InMemoryStorage, storages
from django.db import connection

BACKEND = "tests.catalog.recording_storage.RecordingStorage"


class RecordingStorage(InMemoryStorage):
    """InMemoryStorage recording `(name, connection.in_atomic_block)` for every write and delete,
    read from the default connection of the writing thread at the moment of the call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writes: list[tuple[str, bool]] = []
        self.deletes: list[tuple[str, bool]] = []

    def _save(self, name: str, content: IO[bytes]) -> str:
        in_transaction = connection.in_atomic_block
        saved = super()._save(name, content)
        self.writes.append((saved, in_transaction))
        return saved

    def delete(self, name: str) -> None:
        self.deletes.append((name, connection.in_atomic_block))
        super().delete(name)

    def original_writes(self) -> list[tuple[str, bool]]:
        """Writes of originals (derivatives are written under the photo's row lock, by design)."""
        return [(name, inside) for name, inside in self.writes if "/originals/" in name]

    def originals_of(self, *, tenant_id: int, event_id: int) -> list[str]:
        """The originals stored for an event right now, sorted."""
        folder = f"{settings.CATALOG_PRIVATE_PREFIX}/originals/t{tenant_id}/e{event_id}"
        try:
            _, names = self.listdir(folder)
        except FileNotFoundError:
            return []
        return sorted(f"{folder}/{name}" for name in names)


def install(settings_fixture: Any) -> RecordingStorage:
    """Make a fresh RecordingStorage the default storage until the test's settings are restored
    (Django's `setting_changed` handler drops the cached storages both ways)."""
    settings_fixture.STORAGES = {**settings_fixture.STORAGES, "default": {"BACKEND": BACKEND}}
    return cast(RecordingStorage, storages["default"])
