"""Provider lookup by name, configured from settings.

`get_provider("stripe")` returns one shared, thread-safe adapter per name and process (PayPal's
OAuth token is cached on it). Instances are rebuilt when a setting changes (`override_settings`
in tests). `sandbox_webhook_sender()` builds the sandbox sender from the SANDBOX_WEBHOOK_* settings.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from apps.payments.providers.base import PaymentProvider, UnknownProviderError
from apps.payments.providers.flutterwave import FlutterwaveProvider
from apps.payments.providers.http import HttpTransport
from apps.payments.providers.paypal import PayPalProvider, cert_hosts_from
from apps.payments.providers.sandbox import SandboxProvider, SandboxWebhookSender
from apps.payments.providers.stripe import StripeProvider

PROVIDER_NAMES = ("stripe", "flutterwave", "paypal", "sandbox")
PROVIDER_CLASSES: dict[str, type[PaymentProvider]] = {
    "stripe": StripeProvider,
    "flutterwave": FlutterwaveProvider,
    "paypal": PayPalProvider,
    "sandbox": SandboxProvider,
}

_lock = threading.Lock()
_instances: dict[str, PaymentProvider] = {}


def _secrets(value: Any) -> list[str]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item and item.strip()]


def build_provider(name: str) -> PaymentProvider:
    """A new adapter for `name` from the current settings. Raises UnknownProviderError."""
    timeout = float(settings.PAYMENTS_HTTP_TIMEOUT_SECONDS)
    if name == "stripe":
        return StripeProvider(
            secret_key=settings.STRIPE_SECRET_KEY,
            webhook_secrets=_secrets(settings.STRIPE_WEBHOOK_SECRETS),
            tolerance_seconds=settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS,
            timeout=timeout,
            max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
        )
    if name == "flutterwave":
        return FlutterwaveProvider(
            secret_key=settings.FLUTTERWAVE_SECRET_KEY,
            secret_hash=settings.FLUTTERWAVE_SECRET_HASH,
            api_base=settings.FLUTTERWAVE_API_BASE,
            timeout=timeout,
        )
    if name == "paypal":
        return PayPalProvider(
            client_id=settings.PAYPAL_CLIENT_ID,
            client_secret=settings.PAYPAL_CLIENT_SECRET,
            webhook_id=settings.PAYPAL_WEBHOOK_ID,
            api_base=settings.PAYPAL_API_BASE,
            cert_hosts=cert_hosts_from(settings.PAYPAL_CERT_HOSTS),
            cert_cache_seconds=settings.PAYPAL_CERT_CACHE_SECONDS,
            timeout=timeout,
            # PayPal's replay window is Stripe's (the same setting: one tolerance for clock skew).
            tolerance_seconds=settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS,
        )
    if name == "sandbox":
        return SandboxProvider(
            webhook_secrets=_secrets(settings.SANDBOX_WEBHOOK_SECRET),
            public_base_url=settings.DARKROOM_PUBLIC_BASE_URL,
            tolerance_seconds=settings.SANDBOX_WEBHOOK_TOLERANCE_SECONDS,
        )
    raise UnknownProviderError(f"unknown payment provider {name!r}; expected one of {', '.join(PROVIDER_NAMES)}")


def provider_class(name: str) -> type[PaymentProvider]:
    """The adapter class of `name`, for what needs no configuration (`return_says_paid`).
    Raises UnknownProviderError."""
    found = PROVIDER_CLASSES.get(name)
    if found is None:
        raise UnknownProviderError(f"unknown payment provider {name!r}; expected one of {', '.join(PROVIDER_NAMES)}")
    return found


def get_provider(name: str) -> PaymentProvider:
    """The shared adapter for `name`. Raises UnknownProviderError for any other name."""
    with _lock:
        provider = _instances.get(name)
        if provider is None:
            provider = _instances[name] = build_provider(name)
        return provider


def sandbox_webhook_sender(*, transport: HttpTransport | None = None) -> SandboxWebhookSender:
    """A sender signing with SANDBOX_WEBHOOK_SECRET and posting to SANDBOX_WEBHOOK_URL."""
    if not settings.SANDBOX_WEBHOOK_SECRET:
        raise ValueError("SANDBOX_WEBHOOK_SECRET is empty")
    return SandboxWebhookSender(
        secret=settings.SANDBOX_WEBHOOK_SECRET,
        url=settings.SANDBOX_WEBHOOK_URL,
        transport=transport,
        duplicates=settings.SANDBOX_WEBHOOK_DUPLICATES,
        shuffle=settings.SANDBOX_WEBHOOK_SHUFFLE,
        delay_seconds=settings.SANDBOX_WEBHOOK_DELAY_SECONDS,
        timeout=float(settings.PAYMENTS_HTTP_TIMEOUT_SECONDS),
    )


@receiver(setting_changed)
def _reset_on_setting_change(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith(("STRIPE_", "FLUTTERWAVE_", "PAYPAL_", "SANDBOX_", "PAYMENTS_", "DARKROOM_PUBLIC")):
        with _lock:
            _instances.clear()
