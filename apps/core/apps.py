from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Darkroom core"

    def ready(self) -> None:
        from apps.core import checks, openapi, signals  # noqa: F401  (checks and openapi register themselves)
