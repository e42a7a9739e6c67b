"""Processing of recorded webhook events: failures are recorded (error, traceback) and leave no
partial effect; replays (admin action, management command) are audited and change nothing twice."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from io import StringIO
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from apps.commerce.errors import PaymentForUnknownCheckout
from apps.commerce.models import Checkout, Entitlement
from apps.ledger.models import LedgerEvent
from apps.outbox.models import OutboxMessage
from apps.payments import services as payment_services
from apps.payments.models import WebhookEvent
from apps.payments.providers.base import PaymentStatus
from apps.payments.providers.sandbox import build_event
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import deliver, drain_outbox, pending_topics, sandbox_paid, system_count
from tests.factories.tenancy import UserFactory
from tests.payments.signing_helpers import sandbox_headers, stripe_headers, stripe_session_completed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


def the_event() -> WebhookEvent:
    with system_context("test"):
        return WebhookEvent.objects.get()


def orphan_paid_event():
    checkout_id = str(uuid.uuid4())
    return build_event(
        status=PaymentStatus.PAID,
        reference=f"sbx_{checkout_id}",
        checkout_id=checkout_id,
        amount_minor=900,
        currency="EUR",
    )


def test_event_for_an_unknown_checkout_fails_with_error_and_traceback_and_can_be_replayed():
    # given: an authentic event naming a checkout Darkroom does not have
    deliver([orphan_paid_event()])
    # when: the consumer processes it
    with pytest.raises(PaymentForUnknownCheckout):
        drain_outbox()
    # then: the event is failed, with the reason and the traceback, attempt counted
    event = the_event()
    assert (event.status, event.attempts, event.tenant_id) == ("failed", 1, None)
    assert "PaymentForUnknownCheckout" in event.error
    assert "Traceback" in event.traceback and "transaction_apply_fact" not in event.traceback
    # when: an operator replays the failed events from the command line
    out = StringIO()
    call_command("webhooks_replay", "--failed", "--actor", "ops:alice", "--json", stdout=out)
    # then: one fresh message is queued and the replay is audited
    assert json.loads(out.getvalue())["queued"] == [str(event.pk)]
    assert pending_topics() == ["webhook.received"]
    with system_context("test"):
        audit = AuditLog.objects.get(action="webhook_event.replay")
    assert (audit.actor_label, audit.target_id) == ("ops:alice", str(event.pk))
    with pytest.raises(PaymentForUnknownCheckout):
        drain_outbox()
    assert the_event().attempts == 2
    # and: replaying by id refuses ids it does not know, naming them, and queues nothing
    unknown = str(uuid.uuid4())
    with pytest.raises(CommandError, match=f"No webhook event {unknown}. Nothing was replayed."):
        call_command("webhooks_replay", "--ids", str(event.pk), unknown, stdout=StringIO())
    assert pending_topics() == []


def test_event_from_another_provider_than_the_checkouts_fails_for_good_and_touches_nothing(tenant_a, shop):
    # given: a Stripe-signed event naming a sandbox checkout
    checkout_id = post_checkout(tenant_a.client(), checkout_body(shop, {"product": shop.download.pk})).json()["id"]
    drain_outbox()
    body = stripe_session_completed(checkout_id=checkout_id, amount_minor=900)
    headers = stripe_headers(body)
    headers.pop("Content-Type")
    assert (
        Client().post("/webhooks/stripe", data=body, content_type="application/json", headers=headers).status_code
        == 200
    )
    # when: it is processed (no retry would help, so nothing is raised)
    drain_outbox()
    # then: recorded as failed; the checkout is still waiting for its own provider
    event = the_event()
    assert event.status == "failed" and "ProviderMismatch" in event.error
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=checkout_id).status == "awaiting_payment"
        assert Entitlement.objects.count() == 0


def sandbox_event_of_another_session(checkout_id: str, status: PaymentStatus):
    """A sandbox event echoing `checkout_id` but naming a session that is not that checkout's."""
    return build_event(status=status, reference="sbx_other", checkout_id=checkout_id, amount_minor=900, currency="EUR")


def test_a_paid_event_of_another_session_never_pays_the_checkout_it_names_and_is_failed_for_an_operator(tenant_a, shop):
    # given: a sandbox checkout waiting for payment in its own session (sbx_<checkout id>)
    checkout_id = post_checkout(tenant_a.client(), checkout_body(shop, {"product": shop.download.pk})).json()["id"]
    drain_outbox()
    # when: an authentic paid event names the checkout, its total and currency, but another session
    deliver([sandbox_event_of_another_session(checkout_id, PaymentStatus.PAID)])
    with mock.patch.object(payment_services.logger, "error", wraps=payment_services.logger.error) as logged:
        drain_outbox()
    # then: the checkout is not paid: no download, no wallet credit
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=checkout_id).status == "awaiting_payment"
        assert Entitlement.objects.count() == 0
    assert system_count(lambda: LedgerEvent.objects.filter(reference=f"checkout:{checkout_id}")) == 0
    # and: the event failed for good (counted by darkroom_webhook_events_open{status="failed"}),
    # saying which session it was and what to do, and an error was logged
    event = the_event()
    assert event.status == "failed" and event.error.startswith("SessionMismatch:")
    assert "sbx_other" in event.error and f"sbx_{checkout_id}" in event.error and "refund it" in event.error
    assert any(call.kwargs.get("extra", {}).get("session") == "sbx_other" for call in logged.call_args_list)
    # and: the checkout's own payment still pays it
    deliver([sandbox_paid(checkout_id)])
    drain_outbox()
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=checkout_id).status == "paid"


def test_a_failed_event_of_another_session_is_ignored_and_leaves_the_checkout_open(tenant_a, shop):
    # given: a sandbox checkout waiting for payment in its own session
    checkout_id = post_checkout(tenant_a.client(), checkout_body(shop, {"product": shop.download.pk})).json()["id"]
    drain_outbox()
    # when: an authentic "failed" event names the checkout but another session
    deliver([sandbox_event_of_another_session(checkout_id, PaymentStatus.FAILED)])
    drain_outbox()
    # then: ignored, the outcome says why; the checkout still awaits its payment, stock held
    event = the_event()
    assert event.status == "ignored"
    assert event.outcome == f"ignored: another sandbox session: sbx_other, the checkout's is sbx_{checkout_id}"
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=checkout_id).status == "awaiting_payment"


def test_admin_lists_events_and_its_replay_action_is_audited_and_safe(tenant_a, shop):
    # given: a processed paid event
    checkout_id = post_checkout(tenant_a.client(), checkout_body(shop, {"product": shop.download.pk})).json()["id"]
    drain_outbox()
    deliver([sandbox_paid(checkout_id)])
    drain_outbox()
    event = the_event()
    assert (event.status, event.tenant_id) == ("processed", tenant_a.org.pk)
    admin_user = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin_user)
    # when: a platform admin opens the ledger and replays the event
    listing = client.get("/admin/payments/webhookevent/")
    assert listing.status_code == 200 and b"processed" in listing.content
    detail = client.get(f"/admin/payments/webhookevent/{event.pk}/change/")
    assert detail.status_code == 200 and b"payment.paid" in detail.content
    response = client.post("/admin/payments/webhookevent/", {"action": "replay", "_selected_action": [str(event.pk)]})
    assert response.status_code == 302
    # then: audited with the admin as actor, re-processed, and no effect doubled
    with system_context("test"):
        audit = AuditLog.objects.get(action="webhook_event.replay")
    assert (audit.actor_user_id, audit.tenant_id) == (admin_user.pk, tenant_a.org.pk)
    assert drain_outbox() == ["webhook.received"]
    assert the_event().status == "processed"
    with tenant_context(tenant_a.org.pk):
        assert Entitlement.objects.count() == 1
        assert LedgerEvent.objects.filter(reference=f"checkout:{checkout_id}").count() == 1


def test_tenant_context_sees_only_its_own_processed_events_and_none_unprocessed(tenant_a, tenant_b, shop):
    checkout_id = post_checkout(tenant_a.client(), checkout_body(shop, {"product": shop.download.pk})).json()["id"]
    drain_outbox()
    deliver([sandbox_paid(checkout_id), orphan_paid_event()])
    with tenant_context(tenant_a.org.pk):
        assert WebhookEvent.objects.count() == 0  # recorded, untenanted until processed
    with pytest.raises(PaymentForUnknownCheckout):
        drain_outbox()
    with tenant_context(tenant_a.org.pk):
        assert WebhookEvent.objects.count() == 1
    with tenant_context(tenant_b.org.pk):
        assert WebhookEvent.objects.count() == 0
    assert system_count(lambda: WebhookEvent.objects.all()) == 2
    with system_context("test"):
        assert OutboxMessage.objects.filter(topic="webhook.received").count() == 2


def _lose_pending_webhook_messages(*, minutes_ago: float) -> None:
    """What a Redis restart does: the relay had published the messages, the broker forgot them.
    The events' messages are marked published (never run) and were queued `minutes_ago`."""
    with system_context("test"):
        OutboxMessage.objects.filter(topic="webhook.received", status=OutboxMessage.Status.PENDING).update(
            status=OutboxMessage.Status.PUBLISHED, published_at=timezone.now()
        )
        WebhookEvent.objects.update(queued_at=timezone.now() - timedelta(minutes=minutes_ago))


def test_an_event_whose_message_the_broker_lost_is_queued_again_and_applied_once(tenant_a, shop):
    from tasks.payments import webhooks_requeue_stale

    # given: a paid event recorded (200 to the provider) whose message the broker then lost
    checkout_id = post_checkout(tenant_a.client(), checkout_body(shop, {"product": shop.download.pk})).json()["id"]
    drain_outbox()
    deliver([sandbox_paid(checkout_id)])
    _lose_pending_webhook_messages(minutes_ago=11)
    assert pending_topics() == [] and the_event().status == "received"
    # when: the beat sweep runs (twice: the second pass finds the event freshly queued)
    assert webhooks_requeue_stale() == 1
    assert webhooks_requeue_stale() == 0
    # then: one fresh message, audited; processing it pays the checkout once
    assert pending_topics() == ["webhook.received"]
    with system_context("test"):
        audit = AuditLog.objects.get(action="webhook_event.requeue")
    assert (audit.target_id, audit.actor_label) == (str(the_event().pk), "lost-message sweep: webhook_events")
    assert drain_outbox()[0] == "webhook.received"
    assert the_event().status == "processed"
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=checkout_id).status == "paid"
        assert Entitlement.objects.count() == 1


def test_the_sweep_leaves_recent_processed_and_failed_events_alone(tenant_a, shop):
    from tasks.payments import webhooks_requeue_stale

    # given: a received event queued 5 minutes ago (under the 10-minute default) ...
    deliver([orphan_paid_event()])
    _lose_pending_webhook_messages(minutes_ago=5)
    # then: it is left alone
    assert webhooks_requeue_stale() == 0
    # given: failed or processed events, even ones queued an hour ago: left alone
    with system_context("test"):
        WebhookEvent.objects.update(status=WebhookEvent.Status.FAILED, queued_at=timezone.now() - timedelta(hours=1))
    assert webhooks_requeue_stale() == 0
    with system_context("test"):
        WebhookEvent.objects.update(status=WebhookEvent.Status.PROCESSED)
    assert webhooks_requeue_stale() == 0
    assert pending_topics() == []


def test_an_event_recorded_before_queued_at_existed_is_judged_by_its_receipt_time(tenant_a, shop):
    from django.db import transaction

    from apps.outbox.requeue import requeue_stale
    from tasks.payments import webhooks_requeue_stale

    # given: a received event with no queued_at (recorded before the column), received 11 min ago
    deliver([orphan_paid_event()])
    _lose_pending_webhook_messages(minutes_ago=0)
    with system_context("test"):
        WebhookEvent.objects.update(queued_at=None, received_at=timezone.now() - timedelta(minutes=11))
    # then: the helper refuses to run outside a transaction ...
    with pytest.raises(transaction.TransactionManagementError):
        requeue_stale(
            WebhookEvent.objects.all(),
            queued_field="queued_at",
            fallback_field="received_at",
            older_than_seconds=600,
            limit=1,
            requeue=lambda event: None,
            flow="test",
        )
    # ... and the sweep queues the event again, stamping queued_at
    assert webhooks_requeue_stale() == 1
    assert the_event().queued_at is not None
    assert pending_topics() == ["webhook.received"]


def test_a_paid_event_without_an_amount_fails_for_good_and_grants_nothing(tenant_a, shop):
    # given: a checkout waiting for its sandbox payment, and a signed paid event without amount
    checkout_id = post_checkout(tenant_a.client(), checkout_body(shop, {"product": shop.download.pk})).json()["id"]
    drain_outbox()
    document = json.loads(sandbox_paid(checkout_id).body)
    del document["data"]["amount_minor"]
    body = json.dumps(document).encode()
    # when: it is delivered and processed
    headers = sandbox_headers(body)
    content_type = headers.pop("Content-Type")
    assert Client().post("/webhooks/sandbox", data=body, content_type=content_type, headers=headers).status_code == 200
    drain_outbox()
    # then: the event failed for good (visible in the admin), and the checkout still waits, unpaid
    event = the_event()
    assert event.status == "failed" and "PaidWithoutAmount" in event.error
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=checkout_id).status == "awaiting_payment"
        assert Entitlement.objects.count() == 0
