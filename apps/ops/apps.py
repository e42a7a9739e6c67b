from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "apps.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from apps.core.redis_guard import collect_redis_metrics
        from apps.ops import ratelimit  # registers its system check
        from apps.ops.broker import collect_broker_metrics
        from apps.ops.killswitch import collect_kill_switch_metrics
        from apps.ops.metrics import register_collector

        # First: a scrape that finds Redis gone spares the other collectors' Redis reads.
        register_collector(collect_redis_metrics)
        register_collector(collect_broker_metrics)
        register_collector(collect_kill_switch_metrics)
        register_collector(ratelimit.collect_rate_limit_metrics)
