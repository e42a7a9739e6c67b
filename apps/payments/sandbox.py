"""The sandbox provider's "provider side" inside Darkroom: the pay page's actions and the
delivery of its signed webhooks.

The pay page (`/sandbox/pay/<checkout id>`) stands where a provider's hosted page would be: the
shopper pays or fails, `SandboxProvider.settle` records the outcome once, and the resulting
event is handed to the `SandboxWebhookSender`, which plans deliveries (duplicated, shuffled and
delayed per SANDBOX_WEBHOOK_* settings). Each planned delivery becomes a Celery task
(`payments.sandbox_deliver`, countdown = its delay) that signs and POSTs it to
SANDBOX_WEBHOOK_URL, retrying like a provider would. Nothing here writes Darkroom's database:
the sandbox is the provider, and a provider's deliveries reach Darkroom only through
`POST /webhooks/sandbox`. The page never blocks on its own delivery (a single-worker web server
posting to itself would deadlock).

SANDBOX_WEBHOOK_TRANSPORT selects the transport (dotted path of an `HttpTransport` class):
empty means HTTP through urllib; tests plug in a transport that calls the Django app in-process.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from apps.commerce.models import Checkout, CheckoutLine, Provider
from apps.payments.providers.base import PaymentStatus, ProviderError
from apps.payments.providers.http import HttpTransport
from apps.payments.providers.registry import get_provider, sandbox_webhook_sender
from apps.payments.providers.sandbox import PlannedDelivery, SandboxEvent, SandboxProvider
from apps.tenancy.context import system_context, tenant_context

SYSTEM_REASON = "sandbox pay page"


class SandboxDeliveryFailed(Exception):
    """Darkroom did not accept a delivery (5xx, 408, 429): the sender retries, like a provider."""


@dataclass(frozen=True)
class SandboxCheckout:
    checkout: Checkout
    lines: list[CheckoutLine]


def _provider() -> SandboxProvider:
    provider = get_provider(Provider.SANDBOX)
    assert isinstance(provider, SandboxProvider)
    return provider


def sandbox_checkout(*, checkout_id: uuid.UUID | str) -> SandboxCheckout | None:
    """The sandbox checkout behind a pay page, or None (unknown id, or not a sandbox checkout).

    The id is the shopper's capability (a random UUID): it is looked up across tenants in the
    audited system context, then read in its own tenant's context.
    """
    try:
        pk = uuid.UUID(str(checkout_id))
    except ValueError:
        return None
    with system_context(SYSTEM_REASON):
        tenant_id = (
            Checkout.objects.filter(pk=pk, provider=Provider.SANDBOX).values_list("tenant_id", flat=True).first()
        )
    if tenant_id is None:
        return None
    with tenant_context(tenant_id):
        checkout = Checkout.objects.get(pk=pk)
        lines = list(checkout.lines.order_by("position"))
    return SandboxCheckout(checkout=checkout, lines=lines)


def webhook_transport() -> HttpTransport | None:
    path = settings.SANDBOX_WEBHOOK_TRANSPORT
    return import_string(path)() if path else None


def sandbox_dispatch(events: Sequence[SandboxEvent]) -> list[PlannedDelivery]:
    """Plan deliveries of `events` (duplicates, shuffle, delay from settings) and queue each as a
    `payments.sandbox_deliver` task with its delay as countdown. Returns the plan."""
    from tasks.payments import sandbox_deliver

    plan = sandbox_webhook_sender().plan(list(events))
    for delivery in plan:
        options: dict[str, Any] = {"countdown": delivery.delay_seconds} if delivery.delay_seconds > 0 else {}
        sandbox_deliver.apply_async(kwargs={"delivery": delivery.to_dict()}, **options)
    return plan


def sandbox_settle(*, checkout: Checkout, outcome: str) -> list[PlannedDelivery]:
    """The shopper pressed Pay (`paid`) or Fail (`failed`) on the pay page.

    Settles the sandbox payment once (a second, different outcome raises ProviderError 409; the
    same outcome again re-sends the same event id) and queues its webhook deliveries.
    """
    status = PaymentStatus.PAID if outcome == "paid" else PaymentStatus.FAILED
    provider = _provider()
    reference = checkout.sandbox_reference or provider.reference_for(str(checkout.pk))
    return sandbox_dispatch([provider.settle(reference=reference, outcome=status)])


def sandbox_session_outcome(*, checkout: Checkout) -> str | None:
    """What Pay or Fail on the checkout's pay page would meet now: "paid", "failed", "expired"
    (closed unpaid, or past the checkout's expiry), or None while the session takes payment or
    before it exists. Reads the sandbox's state only."""
    reference = checkout.sandbox_reference or _provider().reference_for(str(checkout.pk))
    try:
        return _provider().session_outcome(reference=reference)
    except ProviderError:
        return None


def sandbox_announce_refund(*, reference: str, refund_id: str | None = None) -> list[PlannedDelivery]:
    """After a sandbox refund, send its `payment.refunded` webhook, as a real provider does: the
    event of refund `refund_id` (the `RefundResult.refund_id` of `refund`; None: the payment's
    latest refund), carrying that refund's id and the cumulative amount refunded. Raises
    ProviderError: 409 if the payment has no refund, 404 if it has no refund `refund_id`."""
    return sandbox_dispatch([_provider().refunded_event(reference=reference, refund_id=refund_id)])


def sandbox_announce_payout(*, payout_id: str) -> list[PlannedDelivery]:
    """Send the webhook a provider sends about a sandbox payout: `payout.paid`, or
    `payout.returned` once `sandbox_return_payout` sent it back. Raises ProviderError (404) for a
    payout the sandbox never made."""
    return sandbox_dispatch([_provider().payout_event(payout_id=payout_id)])


def sandbox_return_payout(*, payout_id: str) -> list[PlannedDelivery]:
    """The receiver's bank sends a sandbox payout back, and the sandbox says so by webhook
    (`payout.returned`), as a provider does. Raises ProviderError (404) for an unknown payout."""
    return sandbox_dispatch([_provider().payout_return(payout_id=payout_id)])


def sandbox_deliver(*, delivery: dict[str, Any]) -> int:
    """POST one planned delivery, signed now. Returns the HTTP status.

    Raises SandboxDeliveryFailed for statuses a provider retries (5xx, 408, 429) and
    TransportError when Darkroom cannot be reached; a 4xx is final (logged by the caller).
    """
    planned = PlannedDelivery.from_dict(delivery)
    status = sandbox_webhook_sender(transport=webhook_transport()).deliver(planned.event)
    if status >= 500 or status in (408, 429):
        raise SandboxDeliveryFailed(f"delivery of {planned.event.event_id} answered {status}")
    return status
