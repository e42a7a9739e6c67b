"""System checks of the drop-in settings (run by `manage.py check`, `migrate` and every worker)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from apps.core.currencies import currency_supported, unsupported_currency_message


@register()
def dropin_usage_currency_is_supported(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Each face search is a usage debit in DROPIN_USAGE_CURRENCY: a code outside the currency
    table (`apps/core/currencies.py`) would open the studio's usage account in it, and its
    amounts could not be read."""
    code = settings.DROPIN_USAGE_CURRENCY
    if currency_supported(code):
        return []
    return [
        Error(
            f"DARKROOM_DROPIN_USAGE_CURRENCY: {unsupported_currency_message(str(code))}",
            hint="Use an uppercase ISO 4217 code of apps/core/currencies.py, e.g. EUR.",
            id="dropin.E001",
        )
    ]
