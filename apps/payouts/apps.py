from __future__ import annotations

from django.apps import AppConfig


class PayoutsConfig(AppConfig):
    name = "apps.payouts"
    label = "payouts"

    def ready(self) -> None:
        from apps.ops.metrics import register_collector
        from apps.payouts import checks  # noqa: F401 - registers the system checks
        from apps.payouts.metrics import collect_payout_metrics, mark_registered

        register_collector(collect_payout_metrics)
        mark_registered()
