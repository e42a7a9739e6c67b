"""An expired checkout's provider session is closed, so the shopper cannot pay any more: the
expiry writes one close message, its consumer calls the adapter once (also when the message is
delivered again), a session created while the checkout expired is closed too, and providers
without a close call never charge an expired checkout (PayPal: never captured)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.commerce.models import Checkout, Refund, Transaction
from apps.commerce.services import (
    PaymentFact,
    checkout_payment_session_close,
    checkouts_expire_due,
    transaction_apply_fact,
)
from apps.commerce.services.checkout import SESSION_CLOSE_CONSUMER, TOPIC_PAYMENT_SESSION_CLOSE_REQUESTED
from apps.outbox.models import InboxEntry, OutboxMessage
from apps.payments.providers.base import PaymentStatus, ProviderError
from apps.payments.providers.http import HttpRequest, HttpResponse
from apps.tenancy.context import system_context, tenant_context
from config.celery_app import app as celery_app
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import deliver, drain_outbox, pending_topics, sandbox_paid, sandbox_provider
from tests.payments.provider_transport import (
    ScriptedTransport,
    form_body,
    json_response,
    path,
    stripe_session_response,
    use_stripe,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]

CLOSE = TOPIC_PAYMENT_SESSION_CLOSE_REQUESTED
SESSION_ID = "cs_test_close_1"
LATER = timedelta(hours=1)


def close_messages() -> list[OutboxMessage]:
    with system_context("test"):
        return list(OutboxMessage.objects.filter(topic=CLOSE).order_by("created_at"))


def new_checkout(tenant: Any, shop: Any, provider: str = "sandbox", *lines: dict[str, Any]) -> str:
    body = checkout_body(shop, *(lines or ({"product": shop.download.pk},)), provider=provider)
    response = post_checkout(tenant.client(), body)
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def checkout_of(tenant: Any, checkout_id: str) -> Checkout:
    with tenant_context(tenant.org.pk):
        return Checkout.objects.select_related("transaction").get(pk=checkout_id)


class StripeTransport(ScriptedTransport):
    """Stripe's API answered from a script, running `on_create` while a session is being created
    (a competitor injected at that exact point)."""

    def __init__(self, *responses: HttpResponse | Exception) -> None:
        super().__init__(*responses)
        self.on_create: Callable[[], None] | None = None

    def send(self, request: HttpRequest, *, timeout: float) -> HttpResponse:
        if self.on_create is not None and path(request).endswith("/v1/checkout/sessions"):
            hook, self.on_create = self.on_create, None
            hook()
        return super().send(request, timeout=timeout)


@pytest.fixture
def stripe(monkeypatch: pytest.MonkeyPatch) -> StripeTransport:
    return use_stripe(monkeypatch, StripeTransport())


def stripe_session(status: str = "open") -> HttpResponse:
    return stripe_session_response(SESSION_ID, status)


def run_close_consumer(message: OutboxMessage) -> Any:
    """The consumer task's own code for `message`, in its tenant context (as a worker runs it)."""
    celery_app.loader.import_default_modules()
    task = celery_app.tasks[SESSION_CLOSE_CONSUMER]
    with tenant_context(message.tenant_id):
        return task(message_id=str(message.pk), payload=message.payload)


# --- the expiry writes the message ----------------------------------------------------------------


def test_expiry_writes_one_close_message_per_checkout_with_a_session(tenant_a, shop_a):
    # given: a checkout with a sandbox session, one paid, and one still reserving (no session)
    unpaid = new_checkout(tenant_a, shop_a)
    paid = new_checkout(tenant_a, shop_a)
    drain_outbox()
    sandbox_provider().settle(reference=f"sbx_{paid}", outcome=PaymentStatus.PAID)
    with tenant_context(tenant_a.org.pk):  # paid, as its webhook would make it
        transaction_apply_fact(
            tenant_id=tenant_a.org.pk,
            checkout_id=paid,
            fact=PaymentFact(status="paid", source="test", amount_minor=900, currency="EUR"),
        )
    reserving = new_checkout(tenant_a, shop_a, "sandbox", {"product": shop_a.print.pk})  # writer not run
    # when: the expiry sweep runs twice
    assert checkouts_expire_due(now=timezone.now() + LATER) == 2
    assert checkouts_expire_due(now=timezone.now() + LATER) == 0
    # then: one close message, for the unpaid checkout with a session; none for the others
    [message] = close_messages()
    assert (message.payload, message.aggregate_id, message.tenant_id) == (
        {"checkout_id": unpaid},
        unpaid,
        tenant_a.org.pk,
    )
    assert checkout_of(tenant_a, reserving).status == "expired"


# --- the consumer calls the adapter once ----------------------------------------------------------


def test_consumer_expires_the_stripe_session_once_even_when_the_message_is_delivered_again(tenant_a, shop_a, stripe):
    # given: a Stripe checkout whose session was created (Stripe answers the create)
    stripe.responses.append(stripe_session())
    checkout_id = new_checkout(tenant_a, shop_a, "stripe")
    drain_outbox()
    checkout = checkout_of(tenant_a, checkout_id)
    assert (checkout.status, checkout.stripe_checkout_session_id) == ("awaiting_payment", SESSION_ID)
    # and: the session was created to end 35 minutes after the checkout
    [create] = stripe.requests
    assert form_body(create)["expires_at"] == [str(int(checkout.expires_at.timestamp()) + 35 * 60)]
    # when: the checkout expires and its close message is delivered, then delivered again
    stripe.responses.append(stripe_session(status="expired"))
    assert checkouts_expire_due(now=timezone.now() + LATER) == 1
    [message] = close_messages()
    assert run_close_consumer(message) == "closed"
    assert run_close_consumer(message) == "already done"
    # then: Stripe was asked to expire the session exactly once
    expires = [r for r in stripe.requests if r.method == "POST" and path(r).endswith("/expire")]
    assert [path(r) for r in expires] == [f"https://api.stripe.com/v1/checkout/sessions/{SESSION_ID}/expire"]
    assert expires[0].header("Idempotency-Key") == f"expire:{SESSION_ID}"
    with system_context("test"):
        assert InboxEntry.objects.filter(consumer=SESSION_CLOSE_CONSUMER, message_id=message.pk).count() == 1
    assert checkout_of(tenant_a, checkout_id).status == "expired"


def test_a_provider_outage_is_retried_and_the_retry_closes_the_session(tenant_a, shop_a, stripe):
    stripe.responses.append(stripe_session())
    checkout_id = new_checkout(tenant_a, shop_a, "stripe")
    drain_outbox()
    assert checkouts_expire_due(now=timezone.now() + LATER) == 1
    [message] = close_messages()
    # when: Stripe is down for the first attempt
    stripe.responses.append(json_response({"error": {"type": "api_error", "message": "down"}}, status=503))
    with pytest.raises(ProviderError) as outage:
        with tenant_context(tenant_a.org.pk):
            checkout_payment_session_close(checkout_id=checkout_id, message_id=message.pk)
    assert outage.value.retryable
    # then: nothing was recorded, so the retry calls Stripe again and closes it
    stripe.responses.append(stripe_session(status="expired"))
    assert run_close_consumer(message) == "closed"
    assert len([r for r in stripe.requests if path(r).endswith("/expire")]) == 2


def test_a_session_created_while_its_checkout_expired_is_closed(tenant_a, shop_a, stripe):
    # given: a Stripe checkout whose session request is in flight when the expiry sweep runs
    checkout_id = new_checkout(tenant_a, shop_a, "stripe")
    expired: list[int] = []

    def expiry_sweep() -> None:
        expired.append(checkouts_expire_due(now=timezone.now() + LATER))

    stripe.on_create = expiry_sweep
    stripe.responses.append(stripe_session())
    # when: the session consumer runs (the sweep expires the checkout before Stripe answers)
    assert drain_outbox(topics={"checkout.created"}) == ["checkout.created"]
    # then: the expiry found no session to close; storing the late session asked for the close
    assert expired == [1]
    checkout = checkout_of(tenant_a, checkout_id)
    assert (checkout.status, checkout.stripe_checkout_session_id) == ("expired", SESSION_ID)
    assert pending_topics() == [CLOSE]
    # and: the close is owed (queued, not concluded) until its consumer hears from Stripe
    assert checkout.payment_session_close_queued_at is not None
    assert checkout.payment_session_close_concluded_at is None
    stripe.responses.append(stripe_session(status="expired"))
    assert drain_outbox() == [CLOSE]
    assert [path(r) for r in stripe.requests if path(r).endswith("/expire")] == [
        f"https://api.stripe.com/v1/checkout/sessions/{SESSION_ID}/expire"
    ]
    assert checkout_of(tenant_a, checkout_id).payment_session_close_concluded_at is not None


def test_an_overdue_checkout_gets_no_session(tenant_a, shop_a, stripe):
    # given: a checkout whose session message is handled only after its expiry (the sweep lags)
    checkout_id = new_checkout(tenant_a, shop_a, "stripe")
    with tenant_context(tenant_a.org.pk):
        Checkout.objects.filter(pk=checkout_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    # when / then: the consumer asks Stripe for nothing (any request would fail the test)
    drain_outbox()
    assert stripe.requests == []
    assert checkout_of(tenant_a, checkout_id).status == "awaiting_payment_session"


# --- the sandbox's pay page -----------------------------------------------------------------------


def test_the_sandbox_pay_page_refuses_to_charge_an_expired_checkout(tenant_a, shop_a):
    # given: a sandbox checkout that expired, its close message handled
    checkout_id = new_checkout(tenant_a, shop_a)
    drain_outbox()
    assert checkouts_expire_due(now=timezone.now() + LATER) == 1
    assert drain_outbox() == [CLOSE]
    # when: the shopper presses Pay on the sandbox's page anyway
    response = Client().post(reverse("sandbox-pay", args=[checkout_id]), {"action": "pay"})
    # then: refused; nothing settles, no webhook, no refund: nothing was charged
    assert response.status_code == 409
    assert "has expired; nothing was charged" in response.content.decode()
    # and: the page no longer offers to pay
    page = Client().get(reverse("sandbox-pay", args=[checkout_id])).content.decode()
    assert 'value="pay"' not in page and "nothing can be charged any more" in page
    assert sandbox_provider().fetch_status(reference=f"sbx_{checkout_id}").status == PaymentStatus.EXPIRED
    assert pending_topics() == []
    with tenant_context(tenant_a.org.pk):
        assert Refund.objects.count() == 0
        assert Transaction.objects.get(checkout_id=checkout_id).status == "expired"


def test_a_payment_racing_the_close_is_still_refunded(tenant_a, shop_a):
    # given: a checkout that expired, and whose shopper paid before the close message was handled
    checkout_id = new_checkout(tenant_a, shop_a)
    drain_outbox()
    assert checkouts_expire_due(now=timezone.now() + LATER) == 1
    deliver([sandbox_paid(checkout_id)])
    # when: the close and the payment's webhook are handled
    handled = drain_outbox()
    # then: the close found the session paid; the late payment is refunded (the backstop)
    assert handled.count(CLOSE) == 1 and handled.count("payment.refund_requested") == 1
    with tenant_context(tenant_a.org.pk):
        refund = Refund.objects.get()
    assert (refund.reason, refund.status) == ("late_payment", "submitted")
