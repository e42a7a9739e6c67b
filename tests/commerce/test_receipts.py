"""The receipt email: written with the payment, sent once, outside any transaction."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.test import Client, override_settings
from django.utils import timezone

from apps.commerce.models import Checkout, Receipt
from apps.commerce.order_links import OrderLinkInvalid, order_link, order_token_checkout_id
from apps.commerce.services import ReceiptBusy, receipt_send
from apps.outbox.models import OutboxMessage
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import deliver, drain_outbox, sandbox_paid

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


class ExplodingBackend:
    def __init__(self, *args, **kwargs) -> None:
        pass

    def send_messages(self, messages) -> int:
        raise ConnectionRefusedError("smtp down")


def paid_checkout(tenant, shop, *, drain_receipt: bool = True) -> str:
    checkout_id = post_checkout(tenant.client(), checkout_body(shop, {"product": shop.download.pk})).json()["id"]
    drain_outbox()
    deliver([sandbox_paid(checkout_id)])
    drain_outbox(topics={"webhook.received"})
    if drain_receipt:
        drain_outbox()
    return checkout_id


def test_receipt_is_sent_once_whatever_the_redeliveries(tenant_a, shop_a):
    checkout_id = paid_checkout(tenant_a, shop_a)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert "Total paid: 9.00 EUR" in message.body and str(checkout_id) in message.body
    assert f"Thank you for your order from {tenant_a.org.name}." in message.body
    assert "ask there again" not in message.body
    # (named after the studio, as every other e-mail to shoppers is, not the platform)
    assert message.subject == f"Your receipt from {tenant_a.org.name} ({str(checkout_id)[:8]})"
    # when: the checkout.paid message is delivered again, twice
    with tenant_context(tenant_a.org.pk):
        assert receipt_send(checkout_id=checkout_id) is False
        assert receipt_send(checkout_id=checkout_id) is False
        receipt = Receipt.objects.get(checkout_id=checkout_id)
    # then: still one email; the receipt is recorded sent
    assert len(mail.outbox) == 1
    assert (receipt.status, receipt.attempts) == ("sent", 1)


def test_receipt_carries_the_orders_signed_link_on_the_public_address(tenant_a, shop_a, settings):
    # given: the shop served at its public address
    settings.DARKROOM_PUBLIC_BASE_URL = "https://photos.example.test/"
    # when: a checkout is paid and its receipt sent
    checkout_id = paid_checkout(tenant_a, shop_a)
    # then: the receipt holds the order's link, absolute, under the studio's shop
    [message] = mail.outbox
    link = order_link(studio_slug=tenant_a.org.slug, tenant_id=tenant_a.org.pk, checkout_id=checkout_id)
    assert link.startswith(f"https://photos.example.test/s/{tenant_a.org.slug}/orders/")
    assert re.findall(r"https://\S+", message.body) == [link]
    assert "Each download link on that page works for 24 hours" in message.body
    # and: the link names this checkout for this studio only
    token = link.rsplit("/", 1)[-1]
    assert str(order_token_checkout_id(tenant_id=tenant_a.org.pk, token=token)) == checkout_id
    with pytest.raises(OrderLinkInvalid):
        order_token_checkout_id(tenant_id=tenant_a.org.pk + 1, token=token)


def test_concurrent_senders_send_one_email(tenant_a, shop_a):
    checkout_id = paid_checkout(tenant_a, shop_a, drain_receipt=False)
    results: list[object] = []

    def send() -> None:
        try:
            with tenant_context(tenant_a.org.pk):
                results.append(receipt_send(checkout_id=checkout_id))
        except ReceiptBusy as exc:
            results.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(mail.outbox) == 1
    assert results.count(True) == 1


def test_backend_failure_gives_the_claim_back_and_a_retry_sends(tenant_a, shop_a):
    checkout_id = paid_checkout(tenant_a, shop_a, drain_receipt=False)
    with override_settings(EMAIL_BACKEND="tests.commerce.test_receipts.ExplodingBackend"):
        with tenant_context(tenant_a.org.pk), pytest.raises(ConnectionRefusedError):
            receipt_send(checkout_id=checkout_id)
    with tenant_context(tenant_a.org.pk):
        receipt = Receipt.objects.get(checkout_id=checkout_id)
        assert (receipt.status, receipt.claimed_until) == ("pending", None)
        assert "smtp down" in receipt.last_error
        assert receipt_send(checkout_id=checkout_id) is True
    assert len(mail.outbox) == 1


def test_mail_is_never_sent_inside_a_transaction(tenant_a, shop_a):
    checkout_id = paid_checkout(tenant_a, shop_a, drain_receipt=False)
    with tenant_context(tenant_a.org.pk), transaction.atomic(), pytest.raises(TransactionManagementError):
        receipt_send(checkout_id=checkout_id)
    assert mail.outbox == []


def lose_messages(topic: str) -> None:
    """What a Redis restart does: the relay had marked the messages published, the broker forgot them."""
    with system_context("test: the broker forgets the messages"):
        OutboxMessage.objects.filter(topic=topic, status=OutboxMessage.Status.PENDING).update(
            status=OutboxMessage.Status.PUBLISHED, published_at=timezone.now()
        )


def requeued_metric() -> float:
    body = Client().get("/metrics").content.decode()
    match = re.search(r'^darkroom_outbox_requeued_total\{flow="receipts"\} (\S+)$', body, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def paid_checkout_whose_receipt_message_was_lost(tenant, shop) -> str:
    checkout_id = paid_checkout(tenant, shop, drain_receipt=False)
    lose_messages("checkout.paid")
    return checkout_id


def age_receipt(checkout_id: str, *, minutes: int, **fields: object) -> None:
    with system_context("test: the receipt waited"):
        Receipt.objects.filter(checkout_id=checkout_id).update(
            queued_at=timezone.now() - timedelta(minutes=minutes), **fields
        )


def test_receipts_whose_message_was_lost_are_queued_again_and_sent_once(tenant_a, shop_a):
    from tasks.commerce import receipts_requeue_stale_task

    # given: paid checkouts whose receipt messages the broker lost: one 11 minutes ago, one whose
    # sender died mid-send (claim lapsed), one claimed by a live sender, one lost a minute ago, one
    # refunded since, one that failed RECEIPT_MAX_ATTEMPTS times already
    lost, died, busy, recent, refunded, given_up = (
        paid_checkout_whose_receipt_message_was_lost(tenant_a, shop_a) for _ in range(6)
    )
    age_receipt(lost, minutes=11)
    age_receipt(died, minutes=11, status="sending", attempts=1, claimed_until=timezone.now() - timedelta(minutes=1))
    age_receipt(busy, minutes=11, status="sending", attempts=1, claimed_until=timezone.now() + timedelta(minutes=1))
    age_receipt(recent, minutes=1)
    age_receipt(refunded, minutes=11)
    age_receipt(given_up, minutes=11, attempts=30, last_error="SMTPRecipientsRefused")
    with system_context("test: refunded since"):
        Checkout.objects.filter(pk=refunded).update(status="refunded")

    # when: the beat sweep runs twice (the second pass finds them freshly queued)
    before = requeued_metric()
    assert receipts_requeue_stale_task() == 2
    assert receipts_requeue_stale_task() == 0
    assert requeued_metric() == before + 2  # what operators alert on

    # then: the new messages send the two receipts, once each; the others wait
    assert drain_outbox() == ["checkout.paid", "checkout.paid"]
    with system_context("test"):
        expected = set(Receipt.objects.filter(checkout_id__in=[lost, died]).values_list("message_id", flat=True))
        statuses = dict(Receipt.objects.values_list("checkout_id", "status"))
    assert sorted(m.extra_headers["Message-ID"] for m in mail.outbox) == sorted(expected)
    assert {str(k): v for k, v in statuses.items()} == {
        lost: "sent",
        died: "sent",
        busy: "sending",
        recent: "pending",
        refunded: "pending",
        given_up: "pending",
    }
