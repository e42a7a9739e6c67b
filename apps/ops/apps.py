from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "apps.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from apps.ops.broker import collect_broker_metrics
        from apps.ops.metrics import register_collector

        register_collector(collect_broker_metrics)
