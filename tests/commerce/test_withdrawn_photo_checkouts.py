"""A withdrawn photo is not sold through checkouts that were already open when it was withdrawn:
a payment processed after the withdrawal is refused and refunded, the withdrawal's consumer
closes the open checkouts that hold the photo, and the photo's row lock orders a payment and a
withdrawal that race (real Postgres, Redis, sandbox provider, threads with their own
connections)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.core import mail
from django.db import connection, transaction

from apps.catalog.models import Photo
from apps.catalog.products import Actor
from apps.catalog.withdrawal import photo_withdraw, photo_withdrawn_cleanup
from apps.commerce.models import Checkout, CheckoutLine, Entitlement, InventoryReservation, Receipt, Refund, Transaction
from apps.commerce.selectors import photos_covered
from apps.commerce.services import LineIn, PaymentFact, checkout_create, transaction_apply_fact
from apps.commerce.services import payment as payment_service
from apps.commerce.services.checkout import TOPIC_PAYMENT_SESSION_CLOSE_REQUESTED
from apps.commerce.services.payment import TOPIC_REFUND_REQUESTED
from apps.commerce.services.refund_mail import TOPIC_CHECKOUT_REFUNDED
from apps.ledger.models import LedgerEvent
from apps.outbox.models import OutboxMessage
from apps.payments.providers.base import PaymentStatus
from apps.payments.providers.sandbox import build_event
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import deliver, drain_outbox, pending_topics, sandbox_paid, sandbox_provider
from tests.factories.commerce import Shop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]

WEBHOOK_TOPIC = "webhook.received"
# A download and a print of the withdrawn photo, paid: not paid, nothing granted, credited or
# receipted, closed with its reason, stock released once, the payment refunded in full.
REFUSED_FOR_WITHDRAWN_PHOTO = {
    "checkout": "expired",
    "closed_reason": "photo_withdrawn",
    "transaction": "paid",
    "entitlements": 0,
    "credits": 0,
    "receipts": 0,
    "refunds": ["photo_withdrawn"],
    "reservations": ["released"],
    "lines": ["confirmed", "released"],  # a download line has no stock to release
}


# --- helpers -------------------------------------------------------------------------------


def open_checkout(tenant: Any, shop: Shop, *products: tuple[Any, int]) -> Checkout:
    """A committed checkout through the API whose sandbox session exists (its consumers ran):
    `products` are (product, quantity)."""
    lines = [{"product": product.pk, "quantity": quantity} for product, quantity in products]
    response = post_checkout(tenant.client(), checkout_body(shop, *lines))
    assert response.status_code == 201, response.content
    drain_outbox()
    with tenant_context(tenant.org.pk):
        checkout = Checkout.objects.get(pk=response.json()["id"])
    assert checkout.status == Checkout.Status.AWAITING_PAYMENT and checkout.sandbox_reference
    return checkout


def withdraw(shop: Shop, photo: Photo | None = None) -> None:
    """The studio withdraws the photo (its own transaction, as the API's would be)."""
    photo_id = (photo or shop.photo).pk
    with tenant_context(shop.org.pk), transaction.atomic():
        photo_withdraw(tenant_id=shop.org.pk, photo_id=photo_id, reason="the runner asked", actor=Actor("test"))


def paid_fact(checkout: Checkout) -> PaymentFact:
    return PaymentFact(
        status="paid",
        source="sandbox:test",
        amount_minor=checkout.amount_minor,
        currency=checkout.currency,
        reference=checkout.sandbox_reference,
    )


def state(shop: Shop, checkout_id: Any) -> dict[str, Any]:
    with tenant_context(shop.org.pk):
        checkout = Checkout.objects.get(pk=checkout_id)
        txn = Transaction.objects.get(checkout_id=checkout_id)
        return {
            "checkout": checkout.status,
            "closed_reason": checkout.closed_reason,
            "transaction": txn.status,
            "entitlements": Entitlement.objects.filter(checkout_id=checkout_id).count(),
            "credits": LedgerEvent.objects.filter(reference=f"checkout:{checkout_id}", kind="credit").count(),
            "receipts": Receipt.objects.filter(checkout_id=checkout_id).count(),
            "refunds": sorted(Refund.objects.filter(transaction=txn).values_list("reason", flat=True)),
            "reservations": sorted(
                InventoryReservation.objects.filter(checkout_id=checkout_id).values_list("status", flat=True)
            ),
            "lines": sorted(CheckoutLine.objects.filter(checkout_id=checkout_id).values_list("state", flat=True)),
        }


def messages(topic: str, aggregate_id: Any | None = None) -> int:
    with system_context("test"):
        found = OutboxMessage.objects.filter(topic=topic)
        if aggregate_id is not None:
            found = found.filter(aggregate_id=str(aggregate_id))
        return found.count()


def cleanup(shop: Shop, photo: Photo | None = None) -> dict[str, int]:
    """The `catalog.photo_withdrawn` consumer's work, as the task runs it (tenant context)."""
    with tenant_context(shop.org.pk):
        return photo_withdrawn_cleanup(tenant_id=shop.org.pk, photo_id=(photo or shop.photo).pk)


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def waiting_on_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return bool(row) and row[0] == "Lock"


def wait_until_blocked(pids: list[int], thread: threading.Thread, what: str) -> None:
    """Until the thread's backend waits for a row lock; fails if the thread ends without waiting."""
    deadline = time.monotonic() + 60  # a bound for a loaded machine; returns once blocked
    while not (pids and waiting_on_lock(pids[0])):
        assert thread.is_alive(), f"{what} never waited for a row lock"
        assert time.monotonic() < deadline, f"{what} did not wait for a row lock in time"
        time.sleep(0.02)


def in_thread(target: Callable[[], None], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


# --- a payment processed after the withdrawal --------------------------------------------


def test_a_payment_after_the_withdrawal_is_refused_closed_and_refunded(tenant_a, shop_a):
    # given: an open checkout of the photo's download and 2 prints (stock 10 -> 8)
    checkout = open_checkout(tenant_a, shop_a, (shop_a.download, 1), (shop_a.print, 2))
    assert shop_a.stock_quantity() == 8
    # and: the studio withdrew the photo; its consumer has not run yet
    withdraw(shop_a)
    # when: the shopper's payment arrives and is processed
    assert deliver([sandbox_paid(str(checkout.pk))]) == [200]
    drain_outbox(topics={WEBHOOK_TOPIC})
    # then: not paid, nothing granted or credited, closed with its reason, stock released once
    assert state(shop_a, checkout.pk) == REFUSED_FOR_WITHDRAWN_PHOTO
    assert shop_a.stock_quantity() == 10
    with tenant_context(tenant_a.org.pk):
        refund = Refund.objects.get(transaction__checkout_id=checkout.pk)
    assert (refund.amount_minor, refund.currency) == (checkout.amount_minor, checkout.currency)
    assert messages(TOPIC_REFUND_REQUESTED, refund.pk) == 1
    # and: the API says why it closed
    detail = tenant_a.client().get(f"/api/v1/checkouts/{checkout.pk}").json()
    assert (detail["status"], detail["closed_reason"], detail["transaction_status"]) == (
        "expired",
        "photo_withdrawn",
        "paid",
    )
    # when: the refund goes to the provider (the withdrawal's consumer runs too), and the
    # provider's refund webhook comes back
    drain_outbox()
    with tenant_context(tenant_a.org.pk):
        assert Refund.objects.get(pk=refund.pk).status == Refund.Status.SUBMITTED
    assert deliver([sandbox_provider().refunded_event(reference=checkout.sandbox_reference)]) == [200]
    drain_outbox()
    # then: refunded once, the shopper's e-mail queued and sent, saying why; the stock stays back
    assert state(shop_a, checkout.pk)["transaction"] == "refunded"
    assert messages(TOPIC_CHECKOUT_REFUNDED, checkout.pk) == 1
    assert [m.subject.startswith(f"Your payment to {tenant_a.org.name} was refunded") for m in mail.outbox] == [True]
    assert f"{tenant_a.org.name} withdrew a photo in your order before it was paid" in mail.outbox[0].body
    assert shop_a.stock_quantity() == 10
    # and: the withdrawal's consumer finds nothing open to close
    with tenant_context(tenant_a.org.pk):
        assert Refund.objects.filter(transaction__checkout_id=checkout.pk).count() == 1
    assert cleanup(shop_a)["checkouts_closed"] == 0


def test_a_payment_for_a_photo_not_withdrawn_is_fulfilled_as_before(tenant_a, shop_a):
    # given: an open checkout of the photo's download; another photo of the event is withdrawn
    other, _ = shop_a.add_photo()
    checkout = open_checkout(tenant_a, shop_a, (shop_a.download, 1))
    withdraw(shop_a, other)
    drain_outbox()
    # when: the shopper pays
    assert deliver([sandbox_paid(str(checkout.pk))]) == [200]
    drain_outbox()
    # then: paid and fulfilled as always
    assert state(shop_a, checkout.pk) == {
        "checkout": "paid",
        "closed_reason": "",
        "transaction": "paid",
        "entitlements": 1,
        "credits": 1,
        "receipts": 1,
        "refunds": [],
        "reservations": [],
        "lines": ["confirmed"],
    }
    assert messages(TOPIC_REFUND_REQUESTED) == 0


def test_a_bulk_purchase_is_fulfilled_after_a_photo_of_its_event_is_withdrawn(tenant_a, shop_a):
    # given: an open checkout of the event's bulk product, and a second photo in the event
    second, _ = shop_a.add_photo()
    checkout = open_checkout(tenant_a, shop_a, (shop_a.bulk, 1))
    # when: one photo is withdrawn (its consumer runs) and then the shopper pays
    withdraw(shop_a)
    drain_outbox()
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=checkout.pk).status == Checkout.Status.AWAITING_PAYMENT
    assert deliver([sandbox_paid(str(checkout.pk))]) == [200]
    drain_outbox()
    # then: paid, one event entitlement, which covers the photos not withdrawn only
    result = state(shop_a, checkout.pk)
    assert (result["checkout"], result["entitlements"], result["refunds"]) == ("paid", 1, [])
    with tenant_context(tenant_a.org.pk):
        entitlement = Entitlement.objects.get(checkout_id=checkout.pk)
        assert entitlement.scope == Entitlement.Scope.EVENT
        assert photos_covered(entitlement=entitlement) == [second.pk]


# --- the withdrawal's consumer closes the open checkouts --------------------------------


def test_the_consumer_closes_open_checkouts_of_the_photo_once(tenant_a, shop_a):
    # given: open checkouts holding the photo: a download, 3 prints, and one whose provider
    # session does not exist yet; and one of another photo
    other, other_download = shop_a.add_photo()
    download = open_checkout(tenant_a, shop_a, (shop_a.download, 1))
    prints = open_checkout(tenant_a, shop_a, (shop_a.print, 3))
    unrelated = open_checkout(tenant_a, shop_a, (other_download, 1))
    with tenant_context(tenant_a.org.pk):
        no_session = checkout_create(
            tenant_id=tenant_a.org.pk,
            email="bea@example.test",
            provider="sandbox",
            lines=[LineIn(product_id=shop_a.download.pk)],
        )
    assert no_session.status == Checkout.Status.AWAITING_PAYMENT_SESSION and not no_session.sandbox_reference
    assert shop_a.stock_quantity() == 7
    # when: the photo is withdrawn and its consumer runs
    withdraw(shop_a)
    result = cleanup(shop_a)
    # then: the three checkouts holding it are closed with their reason, the other is left open
    assert result["checkouts_closed"] == 3
    for closed in (download, prints, no_session):
        with tenant_context(tenant_a.org.pk):
            row = Checkout.objects.get(pk=closed.pk)
            txn = Transaction.objects.get(checkout_id=closed.pk)
        assert (row.status, row.closed_reason, txn.status) == ("expired", "photo_withdrawn", "expired")
    assert state(shop_a, unrelated.pk)["checkout"] == "awaiting_payment"
    # and: the prints' stock is released once; their lines say so
    assert shop_a.stock_quantity() == 10
    assert state(shop_a, prints.pk)["reservations"] == ["released"]
    assert state(shop_a, prints.pk)["lines"] == ["released"]
    # and: the provider sessions that exist are to be closed (one message each); none for the other
    assert messages(TOPIC_PAYMENT_SESSION_CLOSE_REQUESTED, download.pk) == 1
    assert messages(TOPIC_PAYMENT_SESSION_CLOSE_REQUESTED, prints.pk) == 1
    assert messages(TOPIC_PAYMENT_SESSION_CLOSE_REQUESTED, no_session.pk) == 0
    assert messages(TOPIC_PAYMENT_SESSION_CLOSE_REQUESTED, unrelated.pk) == 0
    # when: the message is delivered again (the consumer runs a second time)
    again = cleanup(shop_a)
    # then: nothing more is closed, released or asked for
    assert again["checkouts_closed"] == 0
    assert shop_a.stock_quantity() == 10
    assert messages(TOPIC_PAYMENT_SESSION_CLOSE_REQUESTED) == 2
    # and: the sessions are closed at the sandbox, which now refuses to take the payment
    drain_outbox()
    for closed in (download, prints):
        assert sandbox_provider().fetch_status(reference=closed.sandbox_reference).status == PaymentStatus.EXPIRED
    assert sandbox_provider().fetch_status(reference=unrelated.sandbox_reference).status == PaymentStatus.PENDING
    with tenant_context(tenant_a.org.pk):
        assert Photo.objects.get(pk=other.pk).withdrawn_at is None


def test_the_consumer_waits_for_a_checkout_locked_meanwhile_and_still_closes_it(tenant_a, shop_a):
    # given: an open checkout of the photo, whose row another transaction holds (e.g. its
    # provider session being stored), and the photo withdrawn
    checkout = open_checkout(tenant_a, shop_a, (shop_a.print, 1))
    withdraw(shop_a)
    org_id = tenant_a.org.pk
    holding, release = threading.Event(), threading.Event()
    consumer_pid: list[int] = []
    closed: list[int] = []
    errors: list[BaseException] = []

    def holder() -> None:
        with tenant_context(org_id), transaction.atomic():
            Checkout.objects.select_for_update().get(pk=checkout.pk)
            holding.set()
            assert release.wait(120)

    def consumer() -> None:
        consumer_pid.append(backend_pid())
        closed.append(cleanup(shop_a)["checkouts_closed"])

    locker = in_thread(holder, errors)
    assert holding.wait(30), errors
    # when: the withdrawal's consumer runs meanwhile
    runner = in_thread(consumer, errors)
    try:
        # then: it waits for the row rather than skipping it (nothing would come back for it)
        wait_until_blocked(consumer_pid, runner, "the consumer")
    finally:
        release.set()
        locker.join(60)
        runner.join(60)
    assert errors == []
    # and: closes it once the row is free
    assert closed == [1]
    result = state(shop_a, checkout.pk)
    assert (result["checkout"], result["closed_reason"], result["reservations"]) == (
        "expired",
        "photo_withdrawn",
        ["released"],
    )
    assert shop_a.stock_quantity() == 10


def test_a_payment_landing_after_the_consumer_closed_the_checkout_is_refunded(tenant_a, shop_a):
    # given: an open checkout whose photo was withdrawn and whose checkout the consumer closed
    checkout = open_checkout(tenant_a, shop_a, (shop_a.print, 2))
    withdraw(shop_a)
    assert cleanup(shop_a)["checkouts_closed"] == 1
    # when: the provider had taken the shopper's payment just before its session closed
    late = build_event(
        status=PaymentStatus.PAID,
        reference=checkout.sandbox_reference,
        checkout_id=str(checkout.pk),
        amount_minor=checkout.amount_minor,
        currency=checkout.currency,
    )
    assert deliver([late]) == [200]
    drain_outbox(topics={WEBHOOK_TOPIC})
    # then: nothing is granted; the payment is refunded with the withdrawal's reason; stock once
    result = state(shop_a, checkout.pk)
    assert (result["checkout"], result["transaction"], result["entitlements"], result["credits"]) == (
        "expired",
        "paid",
        0,
        0,
    )
    assert result["refunds"] == ["photo_withdrawn"]
    assert shop_a.stock_quantity() == 10


# --- races: a withdrawal and a payment of the same checkout ------------------------------


def test_a_payment_holding_the_photo_lock_first_stands_and_the_withdrawal_waits(tenant_a, shop_a, monkeypatch):
    # given: an open checkout of the photo's download; its payment will pause just after reading
    # the photo (not withdrawn), before it grants anything (the window a withdrawal could use)
    checkout = open_checkout(tenant_a, shop_a, (shop_a.download, 1))
    org_id = tenant_a.org.pk
    photo_read, release_payment = threading.Event(), threading.Event()
    withdrawal_pid: list[int] = []
    errors: list[BaseException] = []
    read_photos = payment_service._withdrawn_photos_key_share

    def read_then_pause(**kwargs: Any) -> list[int]:
        withdrawn = read_photos(**kwargs)
        photo_read.set()
        assert release_payment.wait(120)
        return withdrawn

    monkeypatch.setattr(payment_service, "_withdrawn_photos_key_share", read_then_pause)

    def payment() -> None:
        with tenant_context(org_id), transaction.atomic(durable=True):
            transaction_apply_fact(tenant_id=org_id, checkout_id=checkout.pk, fact=paid_fact(checkout))

    def withdrawal() -> None:
        withdrawal_pid.append(backend_pid())
        withdraw(shop_a)

    # when: the payment has read the photo, and the studio withdraws it meanwhile
    payer = in_thread(payment, errors)
    assert photo_read.wait(30), errors
    withdrawer = in_thread(withdrawal, errors)
    try:
        # then: the withdrawal waits for the payment's lock on the photo
        wait_until_blocked(withdrawal_pid, withdrawer, "the withdrawal")
    finally:
        release_payment.set()
        payer.join(60)
        withdrawer.join(60)
    assert errors == []
    # and: the payment committed first: a purchase made before the withdrawal, kept
    result = state(shop_a, checkout.pk)
    assert (result["checkout"], result["transaction"], result["entitlements"], result["refunds"]) == (
        "paid",
        "paid",
        1,
        [],
    )
    with tenant_context(org_id):
        withdrawn_at = Photo.objects.get(pk=shop_a.photo.pk).withdrawn_at
        paid_at = Transaction.objects.get(checkout_id=checkout.pk).paid_at
    assert withdrawn_at is not None and paid_at < withdrawn_at
    # and: the withdrawal's consumer leaves the paid order alone
    assert cleanup(shop_a)["checkouts_closed"] == 0
    assert state(shop_a, checkout.pk)["checkout"] == "paid"


def test_a_withdrawal_committing_first_makes_the_waiting_payment_refused_and_refunded(tenant_a, shop_a):
    # given: an open checkout of the photo's download and a print
    checkout = open_checkout(tenant_a, shop_a, (shop_a.download, 1), (shop_a.print, 1))
    assert shop_a.stock_quantity() == 9
    org_id = tenant_a.org.pk
    withdrawn_locked, release_withdrawal = threading.Event(), threading.Event()
    payment_pid: list[int] = []
    errors: list[BaseException] = []

    def withdrawal() -> None:
        # The studio's request: the photo withdrawn under its row lock, held open before COMMIT.
        with tenant_context(org_id), transaction.atomic():
            photo_withdraw(tenant_id=org_id, photo_id=shop_a.photo.pk, reason="wrong upload", actor=Actor("test"))
            withdrawn_locked.set()
            assert release_withdrawal.wait(120)

    def payment() -> None:
        payment_pid.append(backend_pid())
        with tenant_context(org_id), transaction.atomic(durable=True):
            transaction_apply_fact(tenant_id=org_id, checkout_id=checkout.pk, fact=paid_fact(checkout))

    # when: the withdrawal holds the photo, and the payment is processed meanwhile
    withdrawer = in_thread(withdrawal, errors)
    assert withdrawn_locked.wait(30), errors
    payer = in_thread(payment, errors)
    try:
        # then: the payment waits for the withdrawal's lock on the photo
        wait_until_blocked(payment_pid, payer, "the payment")
    finally:
        # when: the withdrawal commits
        release_withdrawal.set()
        withdrawer.join(60)
        payer.join(60)
    assert errors == []
    # then: the payment saw it: not paid, nothing granted, closed, stock back, refunded in full
    assert state(shop_a, checkout.pk) == REFUSED_FOR_WITHDRAWN_PHOTO
    assert shop_a.stock_quantity() == 10
    assert TOPIC_REFUND_REQUESTED in pending_topics()
