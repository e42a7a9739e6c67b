from django.apps import AppConfig


class CommerceConfig(AppConfig):
    name = "apps.commerce"
    label = "commerce"

    def ready(self) -> None:
        from apps.commerce.metrics import collect_commerce_metrics, mark_registered
        from apps.ops.metrics import register_collector

        register_collector(collect_commerce_metrics)
        mark_registered()
