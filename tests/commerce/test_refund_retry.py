"""An operator retries a refund the provider refused: back to `requested` with a new provider
idempotency key and its message, audited, once; the provider then refunds."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.commerce.models import Refund, Transaction
from apps.commerce.services import refund_submit
from apps.commerce.services.payment import TOPIC_REFUND_REQUESTED, refund_retry
from apps.outbox.models import OutboxMessage
from apps.payments.providers.base import PaymentStatus
from apps.payments.providers.sandbox import build_event
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import deliver, drain_outbox, sandbox_paid
from tests.factories.tenancy import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


def failed_refund(tenant, shop) -> Refund:
    """A paid sandbox checkout with a refund the provider refused."""
    checkout_id = post_checkout(tenant.client(), checkout_body(shop, {"product": shop.download.pk})).json()["id"]
    drain_outbox()
    deliver([sandbox_paid(checkout_id)])
    drain_outbox(topics={"webhook.received"})
    with tenant_context(tenant.org.pk):
        return Refund.objects.create(
            tenant_id=tenant.org.pk,
            transaction=Transaction.objects.get(checkout_id=checkout_id),
            reason="late_payment",
            amount_minor=100,
            currency="EUR",
            idempotency_key=f"refund:{checkout_id}:late_payment",
            status=Refund.Status.FAILED,
            attempts=1,
            last_error="insufficient balance",
        )


def retry_messages(refund: Refund) -> int:
    with system_context("test"):
        return OutboxMessage.objects.filter(topic=TOPIC_REFUND_REQUESTED, aggregate_id=str(refund.pk)).count()


def test_the_admin_retries_a_failed_refund_once_and_the_provider_refunds(tenant_a, shop_a) -> None:
    refund = failed_refund(tenant_a, shop_a)
    operator = Client()
    operator.force_login(UserFactory(is_staff=True, is_superuser=True, username="ops"))
    # when: the operator retries it twice from the refund list
    for _ in range(2):
        response = operator.post(
            "/admin/commerce/refund/", {"action": "retry", "_selected_action": [str(refund.pk)]}, follow=True
        )
        assert response.status_code == 200
    # then: requested again with a new key, one message, one audit row naming the operator
    with system_context("test"):
        refund.refresh_from_db()
        [audit] = AuditLog.objects.filter(action="refund.retry", target_id=str(refund.pk))
    assert refund.status == Refund.Status.REQUESTED
    assert refund.idempotency_key.endswith(":late_payment:retry-1")
    assert retry_messages(refund) == 1
    assert audit.actor_label == "admin:ops" and audit.data["last_error"] == "insufficient balance"
    # and: when its message is consumed the provider takes the refund
    with tenant_context(tenant_a.org.pk):
        submitted = refund_submit(refund_id=refund.pk)
    assert submitted.status == Refund.Status.SUBMITTED and submitted.provider_refund_id


def test_a_failed_refund_that_no_longer_fits_in_the_payment_is_not_queued_again(tenant_a, shop_a) -> None:
    # given: a refused refund of 100, and since then a refund of the rest of the payment (an item
    # refund, say) that is under way
    refund = failed_refund(tenant_a, shop_a)
    with tenant_context(tenant_a.org.pk):
        charged = refund.transaction.amount_minor
        Refund.objects.create(
            tenant_id=tenant_a.org.pk,
            transaction=refund.transaction,
            reason="studio_partial",
            amount_minor=charged - 99,
            currency="EUR",
            idempotency_key=f"refund:{refund.transaction.checkout_id}:items",
            status=Refund.Status.SUBMITTED,
        )
    operator = Client()
    operator.force_login(UserFactory(is_staff=True, is_superuser=True, username="ops"))
    # when: the operator retries the refused one
    response = operator.post(
        "/admin/commerce/refund/", {"action": "retry", "_selected_action": [str(refund.pk)]}, follow=True
    )
    # then: skipped, saying why; it stays failed, with no message (the provider would refuse it)
    assert "0 refund(s) again; 1 skipped" in response.content.decode()
    with system_context("test"):
        refund.refresh_from_db()
    assert refund.status == Refund.Status.FAILED and retry_messages(refund) == 0


def test_a_refused_refund_of_an_overcharge_can_be_retried(tenant_a, shop_a) -> None:
    # given: the provider charged 5.00 more than the checkout's total (an amount mismatch), so
    # Darkroom asked to refund everything charged, and the provider refused that refund
    checkout_id = post_checkout(tenant_a.client(), checkout_body(shop_a, {"product": shop_a.download.pk})).json()["id"]
    drain_outbox()
    with tenant_context(tenant_a.org.pk):
        txn = Transaction.objects.get(checkout_id=checkout_id)
    charged = txn.amount_minor + 500
    overcharged = build_event(
        status=PaymentStatus.PAID,
        reference=f"sbx_{checkout_id}",
        checkout_id=checkout_id,
        amount_minor=charged,
        currency=txn.currency,
    )
    deliver([overcharged])
    drain_outbox(topics={"webhook.received"})
    with tenant_context(tenant_a.org.pk):
        refund = Refund.objects.get(transaction=txn, reason="amount_mismatch")
        assert refund.amount_minor == charged
        Refund.objects.filter(pk=refund.pk).update(status=Refund.Status.FAILED, attempts=1, last_error="declined")
    queued_before = retry_messages(refund)
    # when: an operator retries it once the cause is fixed
    with tenant_context(tenant_a.org.pk):
        retried = refund_retry(refund_id=refund.pk, actor_label="operator", actor_user=None)
    # then: it is queued again for everything charged (not refused for exceeding the checkout's total)
    assert retried
    with tenant_context(tenant_a.org.pk):
        queued = Refund.objects.get(pk=refund.pk)
    assert (queued.status, queued.amount_minor) == (Refund.Status.REQUESTED, charged)
    assert retry_messages(refund) == queued_before + 1
