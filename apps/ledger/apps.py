from typing import Any

from django.apps import AppConfig
from django.db import connections, router
from django.db.models.signals import post_migrate


def _ensure_event_partitions(sender: Any, using: str, **_: Any) -> None:
    """Fresh and test databases get the monthly event partitions right after `migrate`."""
    from apps.ledger.maintenance import ledger_partitions_ensure
    from apps.ledger.models import EVENT_TABLE

    if not router.allow_migrate(using, "ledger") or EVENT_TABLE not in connections[using].introspection.table_names():
        return

    ledger_partitions_ensure(using=using)


class LedgerConfig(AppConfig):
    name = "apps.ledger"
    label = "ledger"

    def ready(self) -> None:
        from apps.ledger.metrics import collect_ledger_metrics, mark_registered
        from apps.ops.metrics import register_collector

        post_migrate.connect(_ensure_event_partitions, sender=self, dispatch_uid="ledger_event_partitions")
        register_collector(collect_ledger_metrics)
        mark_registered()
