"""Only the owner connection may run migrations; everything else reads and writes as runtime."""

from typing import Any


class OwnerMigratesRouter:
    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        return db == "owner"
