"""An expired checkout's session close is owed until the provider gave a final answer: a close
whose message the broker lost (a Redis restart) is queued again by the
`commerce.checkouts_requeue_stale` sweep once the message is REQUEUE_STALE_AFTER_SECONDS old, and
not before; a concluded close is left alone, and a copy arriving after the close concluded calls
the provider no more."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_redis import get_redis_connection

from apps.commerce.models import Checkout
from apps.commerce.services import checkout_payment_session_close, checkouts_expire_due
from apps.commerce.services.checkout import SESSION_CLOSE_CONSUMER, TOPIC_PAYMENT_SESSION_CLOSE_REQUESTED
from apps.outbox.models import InboxEntry, OutboxMessage
from apps.outbox.requeue import REQUEUED_COUNTER_KEY
from apps.outbox.selectors import counter_key
from apps.payments.providers.base import PaymentStatus, ProviderError
from apps.payments.providers.http import HttpResponse
from apps.tenancy.context import system_context, tenant_context
from config.celery_app import app as celery_app
from tasks.commerce import checkouts_requeue_stale_task
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import drain_outbox, pending_topics, sandbox_provider
from tests.payments.provider_transport import (
    ScriptedTransport,
    json_response,
    path,
    stripe_session_response,
    use_stripe,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]

CLOSE = TOPIC_PAYMENT_SESSION_CLOSE_REQUESTED
SESSION_ID = "cs_test_sweep_1"
EXPIRE_URL = f"https://api.stripe.com/v1/checkout/sessions/{SESSION_ID}/expire"
LATER = timedelta(hours=1)  # the expiry sweep runs as if an hour had passed
NOTHING_REQUEUED = {"settled": 0, "sessions_requested": 0, "session_closes_requested": 0}
ONE_CLOSE_REQUEUED = {**NOTHING_REQUEUED, "session_closes_requested": 1}


@pytest.fixture
def stripe(monkeypatch: pytest.MonkeyPatch) -> ScriptedTransport:
    """Stripe's API answered from a script; any request beyond it fails the test."""
    return use_stripe(monkeypatch, ScriptedTransport())


def stripe_session(status: str = "open") -> HttpResponse:
    return stripe_session_response(SESSION_ID, status)


def expire_requests(stripe: ScriptedTransport) -> list[str]:
    return [path(r) for r in stripe.requests if r.method == "POST" and path(r).endswith("/expire")]


def new_checkout(tenant: Any, shop: Any, provider: str) -> str:
    response = post_checkout(tenant.client(), checkout_body(shop, {"product": shop.download.pk}, provider=provider))
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def expired_with_session(tenant: Any, shop: Any, provider: str = "stripe") -> str:
    """A checkout whose provider session was created and which then expired unpaid: its close
    message is pending in the outbox."""
    checkout_id = new_checkout(tenant, shop, provider)
    drain_outbox()
    assert checkouts_expire_due(now=timezone.now() + LATER) == 1
    assert pending_topics() == [CLOSE]
    return checkout_id


def checkout_of(checkout_id: str) -> Checkout:
    with system_context("test read"):
        return Checkout.objects.get(pk=checkout_id)


def close_messages() -> list[OutboxMessage]:
    with system_context("test read"):
        return list(OutboxMessage.objects.filter(topic=CLOSE).order_by("created_at", "id"))


def lose_pending_messages() -> None:
    """What a Redis restart does: the relay had marked the messages published, the broker forgot them."""
    with system_context("test: the broker forgets the messages"):
        OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING).update(
            status=OutboxMessage.Status.PUBLISHED, published_at=timezone.now()
        )


def close_queued(checkout_id: str, *, minutes_ago: int) -> None:
    with system_context("test: time passes"):
        Checkout.objects.filter(pk=checkout_id).update(
            payment_session_close_queued_at=timezone.now() - timedelta(minutes=minutes_ago)
        )


def run_close_consumer(message: OutboxMessage) -> Any:
    """The consumer task's own code for `message`, in its tenant context (as a worker runs it)."""
    celery_app.loader.import_default_modules()
    with tenant_context(message.tenant_id):
        return celery_app.tasks[SESSION_CLOSE_CONSUMER](message_id=str(message.pk), payload=message.payload)


def requeued_closes_counted() -> int:
    value = get_redis_connection("default").hget(counter_key(REQUEUED_COUNTER_KEY), "payment_session_closes")
    return int(value) if value is not None else 0


def recently(moment: datetime | None) -> bool:
    return moment is not None and timezone.now() - timedelta(seconds=30) < moment <= timezone.now()


# --- the sweep ---------------------------------------------------------------------------------


def test_a_lost_close_message_is_queued_again_after_the_threshold_and_not_before(tenant_a, shop_a, stripe):
    # given: a Stripe checkout that expired with an open session; its close message was lost
    stripe.responses.append(stripe_session())
    checkout_id = expired_with_session(tenant_a, shop_a)
    checkout = checkout_of(checkout_id)
    assert recently(checkout.payment_session_close_queued_at)
    assert checkout.payment_session_close_concluded_at is None
    lose_pending_messages()
    counted_before = requeued_closes_counted()

    # when: the beat sweep runs while the message is younger than REQUEUE_STALE_AFTER_SECONDS (600 s)
    close_queued(checkout_id, minutes_ago=9)
    assert checkouts_requeue_stale_task() == NOTHING_REQUEUED
    # then: nothing is queued again
    assert pending_topics() == []

    # when: it runs once the message is older than that, and again right after
    close_queued(checkout_id, minutes_ago=11)
    assert checkouts_requeue_stale_task() == ONE_CLOSE_REQUEUED
    assert checkouts_requeue_stale_task() == NOTHING_REQUEUED
    # then: one fresh close message, its queued time stamped anew, counted for /metrics
    assert pending_topics() == [CLOSE]
    assert recently(checkout_of(checkout_id).payment_session_close_queued_at)
    assert requeued_closes_counted() == counted_before + 1
    lost, fresh = close_messages()
    assert fresh.pk != lost.pk
    assert (fresh.payload, fresh.tenant_id) == ({"checkout_id": checkout_id}, tenant_a.org.pk)

    # and: its consumer expires the Stripe session, and the close concluded
    stripe.responses.append(stripe_session(status="expired"))
    assert drain_outbox() == [CLOSE]
    assert expire_requests(stripe) == [EXPIRE_URL]
    assert recently(checkout_of(checkout_id).payment_session_close_concluded_at)


def test_a_swept_close_stops_the_shopper_paying_at_the_sandbox(tenant_a, shop_a):
    # given: a sandbox checkout that expired; its close message was lost, so its session is still open
    checkout_id = expired_with_session(tenant_a, shop_a, "sandbox")
    lose_pending_messages()
    assert sandbox_provider().fetch_status(reference=f"sbx_{checkout_id}").status == PaymentStatus.PENDING
    # when: the sweep finds the close old enough, and its message is handled
    close_queued(checkout_id, minutes_ago=11)
    assert checkouts_requeue_stale_task() == ONE_CLOSE_REQUEUED
    assert drain_outbox() == [CLOSE]
    # then: the session is closed; Pay is refused and nothing is charged
    assert sandbox_provider().fetch_status(reference=f"sbx_{checkout_id}").status == PaymentStatus.EXPIRED
    response = Client().post(reverse("sandbox-pay", args=[checkout_id]), {"action": "pay"})
    assert response.status_code == 409
    assert recently(checkout_of(checkout_id).payment_session_close_concluded_at)


def test_the_sweep_leaves_a_concluded_close_alone(tenant_a, shop_a, stripe):
    # given: an expired checkout whose close message was handled long ago (Stripe expired the session)
    stripe.responses += [stripe_session(), stripe_session(status="expired")]
    checkout_id = expired_with_session(tenant_a, shop_a)
    assert drain_outbox() == [CLOSE]
    close_queued(checkout_id, minutes_ago=60)
    # when: the sweep runs
    assert checkouts_requeue_stale_task() == NOTHING_REQUEUED
    # then: no new message, and Stripe was asked once
    assert pending_topics() == []
    assert len(close_messages()) == 1
    assert len(expire_requests(stripe)) == 1


def test_the_sweep_gives_up_on_a_close_once_every_session_has_ended_by_itself(tenant_a, shop_a, stripe):
    # given: an expired checkout whose close never concluded, and whose expiry is more than a day
    # past (Stripe ends every session within 24 hours of its creation)
    stripe.responses.append(stripe_session())
    checkout_id = expired_with_session(tenant_a, shop_a)
    lose_pending_messages()
    with system_context("test: a day passes"):
        Checkout.objects.filter(pk=checkout_id).update(
            expires_at=timezone.now() - timedelta(hours=25),
            payment_session_close_queued_at=timezone.now() - timedelta(hours=25),
        )
    # when / then: the sweep asks for nothing
    assert checkouts_requeue_stale_task() == NOTHING_REQUEUED
    assert pending_topics() == []


# --- the consumer ------------------------------------------------------------------------------


def test_a_copy_arriving_after_the_close_concluded_calls_the_provider_no_more(tenant_a, shop_a, stripe):
    # given: a close message that was only slow: the sweep queued a copy before the first arrived
    stripe.responses.append(stripe_session())
    checkout_id = expired_with_session(tenant_a, shop_a)
    lose_pending_messages()
    close_queued(checkout_id, minutes_ago=11)
    assert checkouts_requeue_stale_task() == ONE_CLOSE_REQUEUED
    first, copy = close_messages()
    # when: the first is handled (Stripe expires the session), then the copy, then the first again
    stripe.responses.append(stripe_session(status="expired"))
    assert run_close_consumer(first) == "closed"
    concluded_at = checkout_of(checkout_id).payment_session_close_concluded_at
    assert run_close_consumer(copy) == "already concluded"
    assert run_close_consumer(first) == "already done"
    # then: Stripe was asked to expire the session once; the close is recorded, with its first time
    assert expire_requests(stripe) == [EXPIRE_URL]
    assert recently(concluded_at)
    assert checkout_of(checkout_id).payment_session_close_concluded_at == concluded_at
    with system_context("test read"):
        inbox = InboxEntry.objects.filter(consumer=SESSION_CLOSE_CONSUMER)
        assert list(inbox.values_list("message_id", flat=True)) == [first.pk]


def test_a_passing_refusal_leaves_the_close_owed_and_the_sweep_asks_again(tenant_a, shop_a, stripe):
    # given: an expired Stripe checkout whose close message is handled while Stripe is down
    stripe.responses.append(stripe_session())
    checkout_id = expired_with_session(tenant_a, shop_a)
    [message] = close_messages()
    lose_pending_messages()  # published: the task holds it
    stripe.responses.append(json_response({"error": {"type": "api_error", "message": "down"}}, status=503))
    # when: the consumer's attempt fails (its task retries it with backoff, and may run out of retries)
    with pytest.raises(ProviderError) as outage:
        run_close_consumer(message)
    assert outage.value.retryable
    # then: nothing is recorded: the close is still owed
    assert checkout_of(checkout_id).payment_session_close_concluded_at is None
    with system_context("test read"):
        assert not InboxEntry.objects.filter(consumer=SESSION_CLOSE_CONSUMER).exists()
    # and: once the message is old enough the sweep asks again, and that close concludes
    close_queued(checkout_id, minutes_ago=11)
    assert checkouts_requeue_stale_task() == ONE_CLOSE_REQUEUED
    stripe.responses.append(stripe_session(status="expired"))
    assert drain_outbox() == [CLOSE]
    assert len(expire_requests(stripe)) == 2
    assert checkout_of(checkout_id).payment_session_close_concluded_at is not None


def test_a_session_the_provider_does_not_know_concludes_the_close(tenant_a, shop_a, stripe):
    # given: an expired Stripe checkout whose session Stripe does not know (a final refusal)
    stripe.responses.append(stripe_session())
    checkout_id = expired_with_session(tenant_a, shop_a)
    missing = {"error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such session"}}
    stripe.responses.append(json_response(missing, status=404))
    # when: its close message is handled
    [message] = close_messages()
    with tenant_context(tenant_a.org.pk):
        outcome = checkout_payment_session_close(checkout_id=checkout_id, message_id=message.pk)
    # then: the refusal is the final answer: the close concluded, and the sweep never asks again
    assert outcome.startswith("refused: ")
    assert checkout_of(checkout_id).payment_session_close_concluded_at is not None
    lose_pending_messages()
    close_queued(checkout_id, minutes_ago=60)
    assert checkouts_requeue_stale_task() == NOTHING_REQUEUED
    assert len(expire_requests(stripe)) == 1
