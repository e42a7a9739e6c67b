from __future__ import annotations

from django.apps import AppConfig


class DropInConfig(AppConfig):
    name = "apps.dropin"
    label = "dropin"
    verbose_name = "Drop-in (face matching)"

    def ready(self) -> None:
        from apps.dropin import checks  # noqa: F401 - registers the system checks
        from apps.dropin.metrics import collect_dropin_metrics, mark_registered
        from apps.ops.metrics import register_collector

        register_collector(collect_dropin_metrics)
        mark_registered()
