"""`/metrics` shows money taken but not delivered or given back: refunds per status and the
oldest unsubmitted one, webhook events still open or failed, receipts unsent or past their
attempts."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from apps.commerce.models import Receipt, Refund, Transaction
from apps.payments.models import WebhookEvent
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import deliver, drain_outbox, sandbox_paid

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


def scrape() -> str:
    return Client().get("/metrics").content.decode()


def gauge(body: str, line: str) -> float:
    match = re.search(rf"^{re.escape(line)} (\S+)$", body, re.MULTILINE)
    assert match, f"{line} not in /metrics"
    return float(match[1])


@override_settings(RECEIPT_MAX_ATTEMPTS=3)
def test_failed_refunds_open_webhooks_and_exhausted_receipts_are_exported(tenant_a, shop_a) -> None:
    # given: nothing wrong yet
    before = scrape()
    assert gauge(before, 'darkroom_refunds{status="failed"}') == 0
    assert gauge(before, "darkroom_refunds_oldest_requested_age_seconds") == 0
    # and: a paid checkout whose receipt is not sent yet
    checkout_id = post_checkout(tenant_a.client(), checkout_body(shop_a, {"product": shop_a.download.pk})).json()["id"]
    drain_outbox()
    deliver([sandbox_paid(checkout_id)])
    drain_outbox(topics={"webhook.received"})
    assert gauge(scrape(), 'darkroom_receipts_unsent{state="retrying"}') == 1
    # when: its receipt ran out of attempts, a refund failed and another waits, a webhook failed
    with tenant_context(tenant_a.org.pk):
        Receipt.objects.filter(checkout_id=checkout_id).update(attempts=3)
        txn = Transaction.objects.get(checkout_id=checkout_id)
        for reason, status in (("late_payment", "failed"), ("amount_mismatch", "requested")):
            Refund.objects.create(
                tenant_id=tenant_a.org.pk,
                transaction=txn,
                reason=reason,
                amount_minor=100,
                currency="EUR",
                idempotency_key=f"metrics-{reason}",
                status=status,
            )
    with system_context("test: webhook"):
        WebhookEvent.objects.create(
            provider="stripe",
            event_id=f"evt_{uuid.uuid4().hex}",
            event_type="checkout.session.completed",
            raw_body=b"{}",
            received_at=timezone.now(),
            status=WebhookEvent.Status.FAILED,
        )
    # then: each shows, across studios
    body = scrape()
    assert gauge(body, 'darkroom_refunds{status="failed"}') == 1
    assert gauge(body, 'darkroom_refunds{status="requested"}') == 1
    assert gauge(body, "darkroom_refunds_oldest_requested_age_seconds") >= 0
    assert gauge(body, 'darkroom_webhook_events_open{provider="stripe",status="failed"}') == 1
    assert gauge(body, 'darkroom_receipts_unsent{state="exhausted"}') == 1
    assert gauge(body, 'darkroom_receipts_unsent{state="retrying"}') == 0


@pytest.mark.usefixtures("row_lock_strategy")
def test_an_accepted_refund_waits_in_the_unlanded_age_until_its_event_lands_it(studio, sale) -> None:
    from tests.commerce.refunds import ask, confirmed

    # given: the studio refunded the whole sale and the provider (sandbox) accepted it
    refund = ask(studio, sale, None)
    drain_outbox(topics={"payment.refund_requested"})
    with tenant_context(studio.org.pk):
        Refund.objects.filter(pk=refund.pk).update(submitted_at=timezone.now() - timedelta(hours=25))
    # then: its provider reports it waiting (25 hours), every other provider 0
    body = scrape()
    assert gauge(body, 'darkroom_refunds_oldest_unlanded_age_seconds{provider="sandbox"}') >= 25 * 3600
    assert gauge(body, 'darkroom_refunds_oldest_unlanded_age_seconds{provider="stripe"}') == 0
    # when: its refund event arrives and lands it
    confirmed(refund, sale)
    # then: nothing waits
    assert gauge(scrape(), 'darkroom_refunds_oldest_unlanded_age_seconds{provider="sandbox"}') == 0
