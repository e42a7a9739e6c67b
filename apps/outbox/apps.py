from django.apps import AppConfig


class OutboxConfig(AppConfig):
    name = "apps.outbox"
    label = "outbox"

    def ready(self) -> None:
        from apps.ops.metrics import register_collector
        from apps.outbox.metrics import collect_outbox_metrics, mark_registered

        register_collector(collect_outbox_metrics)
        mark_registered()
