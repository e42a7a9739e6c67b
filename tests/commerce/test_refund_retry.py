"""An operator retries a refund the provider refused: back to `requested` with a new provider
idempotency key and its message, audited, once; the provider then refunds."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.commerce.models import Refund, Transaction
from apps.commerce.services import refund_submit
from apps.commerce.services.payment import TOPIC_REFUND_REQUESTED
from apps.outbox.models import OutboxMessage
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
