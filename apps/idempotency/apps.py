from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class IdempotencyConfig(AppConfig):
    name = "apps.idempotency"
    label = "idempotency"
    verbose_name = "Idempotency keys"

    def ready(self) -> None:
        from apps.idempotency.selectors import idempotency_retention

        # Refuse to start with a retention below the 24 h floor (raises ImproperlyConfigured).
        idempotency_retention()
        post_migrate.connect(_ensure_partitions_after_migrate, sender=self, dispatch_uid="idempotency-partitions")


def _ensure_partitions_after_migrate(sender: AppConfig, using: str, **_: Any) -> None:
    """A freshly migrated database (dev or test) accepts keys before beat first runs."""
    from django.db import connections

    from apps.idempotency.models import TABLE
    from apps.idempotency.services import idempotency_partitions_maintain

    with connections[using].cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [TABLE])
        if cursor.fetchone()[0] is None:  # migrated backwards past 0001
            return
    idempotency_partitions_maintain(using=using, drop=False)
