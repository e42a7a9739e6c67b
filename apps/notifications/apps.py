from __future__ import annotations

from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "apps.notifications"
    label = "notifications"

    def ready(self) -> None:
        from apps.notifications.metrics import collect_notification_metrics, mark_registered
        from apps.ops.metrics import register_collector

        register_collector(collect_notification_metrics)
        mark_registered()
