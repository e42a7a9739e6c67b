"""Payment provider adapters behind one interface (`base.PaymentProvider`).

    from apps.payments.providers import get_provider
    provider = get_provider("stripe")            # "stripe", "flutterwave", "paypal", "sandbox"
    session = provider.create_session(checkout_id=..., ...)   # outside any transaction
    envelope = provider.authenticate(body=request.body, headers=request.headers)

Modules: base (interface, values, errors, money), http (transport), signing (Stripe-style t/v1
HMAC), stripe, flutterwave, paypal, sandbox, registry.
"""

from apps.payments.providers.base import (
    PaymentProvider,
    PaymentState,
    PaymentStatus,
    ProviderError,
    ProviderSession,
    RefundResult,
    UnknownProviderError,
    WebhookEnvelope,
    WebhookPayloadError,
    WebhookSignatureError,
)
from apps.payments.providers.registry import PROVIDER_NAMES, get_provider, sandbox_webhook_sender

__all__ = [
    "PROVIDER_NAMES",
    "PaymentProvider",
    "PaymentState",
    "PaymentStatus",
    "ProviderError",
    "ProviderSession",
    "RefundResult",
    "UnknownProviderError",
    "WebhookEnvelope",
    "WebhookPayloadError",
    "WebhookSignatureError",
    "get_provider",
    "sandbox_webhook_sender",
]
