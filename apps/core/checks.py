"""System checks of the core settings (run by `manage.py check`, `migrate` and every worker)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured

from apps.core.client_address import trusted_networks


@register()
def trusted_proxies_parse(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Every `DARKROOM_TRUSTED_PROXIES` entry is an address or a network: refused at start-up,
    not on the first request that reads it."""
    try:
        trusted_networks(tuple(settings.TRUSTED_PROXIES))
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint="Use addresses or CIDR networks, e.g. 10.0.0.0/8,192.0.2.7.", id="core.E001")]
    return []
