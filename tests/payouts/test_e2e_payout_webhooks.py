"""A sandbox payout's webhooks on the production path: batch → outbox → relay → real Celery worker
(`payouts.submit`: the sandbox pays) → the sandbox announces it and later the return of it, each
event delivered three times, shuffled, by `payments.sandbox_deliver` tasks → `POST
/webhooks/sandbox` → outbox → relay → worker (`payments.process_webhook`) → the payout: paid,
then contradicted, so it waits for an operator with the wallet still debited."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.test import override_settings

from apps.ledger.projection import projection_rebuild
from apps.payments.models import WebhookEvent
from apps.payments.sandbox import sandbox_announce_payout, sandbox_return_payout
from apps.payouts.models import Payout
from apps.payouts.services import payout_batch_run, wallet_exact_balance
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.fixtures import worker_running
from tests.payments.test_e2e_sandbox import outbox_idle, running_relay, wait_until
from tests.payouts.helpers import make_wallet

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def the_payout() -> Payout:
    with system_context("test: payouts"):
        return Payout.objects.get()


def payout_events() -> list[WebhookEvent]:
    with system_context("test: webhook events"):
        return list(WebhookEvent.objects.order_by("received_at"))


def test_sandbox_payout_webhooks_duplicated_and_shuffled_settle_once_through_relay_and_workers(tenant_a) -> None:
    # given: a due wallet, projected
    wallet = make_wallet(tenant_a.org, credited=4200)
    projection_rebuild()
    with (
        override_settings(SANDBOX_WEBHOOK_DUPLICATES=3, SANDBOX_WEBHOOK_SHUFFLE=True),
        worker_running(),
        running_relay(),
    ):
        # when: the batch runs and the worker pays through the sandbox
        payout_batch_run(trigger="test")
        wait_until(lambda: the_payout().status == Payout.Status.PAID)
        payout_id = str(the_payout().id)
        # and: the sandbox announces the payment, then the bank returns the payout
        sandbox_announce_payout(payout_id=payout_id)
        sandbox_return_payout(payout_id=payout_id)
        # then: two events recorded (six deliveries), both processed
        wait_until(lambda: len(payout_events()) == 2 and all(e.status == "processed" for e in payout_events()))
        wait_until(outbox_idle)
    # and: the payout waits for an operator; the wallet was debited once and not credited back
    payout = the_payout()
    assert payout.status == Payout.Status.NEEDS_REVIEW and "reports the paid payout failed" in payout.last_error
    assert sorted(e.event_type for e in payout_events()) == ["payout.paid", "payout.returned"]
    assert {e.payout_outcome for e in payout_events()} == {"unchanged", "needs_review"}
    assert all(e.payout_id == payout.id and e.tenant_id == tenant_a.org.pk for e in payout_events())
    with tenant_context(tenant_a.org.pk), transaction.atomic():
        assert wallet_exact_balance(account=wallet.account, tenant=tenant_a.org) == 0
