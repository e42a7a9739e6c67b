"""The shopper's refund e-mail for a payment that did not pay its order (real Postgres and Redis;
the sandbox plays the provider, its signed events go through the webhook endpoint and the real
consumers; the e-mail through Django's mail outbox).

Darkroom gives back, whole, a payment it must not keep: charged in another currency or of
another amount than the checkout (`amount_mismatch`), arrived after the checkout expired
(`late_payment`) or after it had closed unpaid (`not_fulfillable`), for an order with a photo
withdrawn before it was paid (`photo_withdrawn`); or the provider gave it back before its payment
was recorded. Nothing of such an order was granted, shipped or credited, so its e-mail must say
what was charged (in the currency it was charged in), why it goes back and that nothing was
bought; never the wording of a refunded order ("refunded the rest of your order", its items,
"the rest of your order is yours as before", "Downloads of a refunded order no longer work").
A payment for a checkout already paid by another one (a double charge) and a sold-out line have
no refund path: a second paid event of a paid checkout changes nothing, and a sold-out line is
never charged (its checkout's amount leaves it out).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from apps.commerce.models import Checkout, Refund
from apps.commerce.services import checkouts_expire_due
from apps.payments.providers.base import PaymentStatus
from apps.payments.providers.sandbox import build_event
from apps.tenancy.context import tenant_context
from tests.commerce.helpers import (
    deliver,
    drain_outbox,
    sandbox_failed,
    sandbox_paid,
    sandbox_provider,
    sandbox_refunded,
)
from tests.commerce.refunds import confirmed, event, fresh, late_payment_refund, refused
from tests.commerce.test_payment_state_machine import lines_of, open_checkout
from tests.commerce.test_refund_failed_at_provider import provider_says_failed
from tests.commerce.test_refund_settled_outside import settle
from tests.commerce.test_withdrawn_photo_checkouts import withdraw
from tests.payments.test_refund_parts_of_a_charge_in_another_currency import charged_in_yen, dashboard_part
from tests.web.studio.conftest import StudioPeople

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]

NOTHING_BOUGHT = "Nothing was bought: your order was not completed, and nothing of it will be delivered."
# What an e-mail about a refunded order says, which is untrue of an order never fulfilled.
ORDER_WORDING = (
    "rest of your order",
    "yours as before",
    "no longer work",
    "will not be sent",
    "had already been shipped",
    "- download of photo",
)


def refund_mail() -> Any:
    """The one refund e-mail the shopper got."""
    [told] = [m for m in mail.outbox if "was refunded" in m.subject]
    return told


def told_before_the_order(body: str) -> list[str]:
    """The e-mail's lines before its "Order <id>" line: what happened and why."""
    lines = body.splitlines()
    told = lines[: next(i for i, line in enumerate(lines) if line.startswith("Order "))]
    assert told[-1] == "", body
    return told[:-1]


def assert_no_order_wording(body: str) -> None:
    assert not [said for said in ORDER_WORDING if said in body], body


def accepted(refund: Refund, provider_refund_id: str) -> None:
    """The provider accepted `refund` (as `refund_submit` records its answer)."""
    with tenant_context(refund.tenant_id):
        Refund.objects.filter(pk=refund.pk).update(
            status=Refund.Status.SUBMITTED, provider_refund_id=provider_refund_id, submitted_at=timezone.now()
        )


def given_back(tenant: Any, checkout_id: Any) -> Refund:
    with tenant_context(tenant.org.pk):
        return Refund.objects.get(transaction__checkout_id=checkout_id)


def test_a_charge_in_another_currency_given_back_says_what_was_charged_and_that_nothing_was_bought(
    tenant_a, shop_a
) -> None:
    # given: a checkout of one download (9.00 EUR) that the provider charged 1500 JPY, and
    # Darkroom's refund of those 1500 JPY accepted by the provider
    checkout = open_checkout(tenant_a, shop_a, *lines_of(shop_a, {"product": "download"}))
    facts = {"reference": f"sbx_{checkout.pk}", "checkout_id": str(checkout.pk)}
    deliver([build_event(status=PaymentStatus.PAID, amount_minor=1500, currency="JPY", event_id="evt_jpy", **facts)])
    drain_outbox(topics={"webhook.received"})
    refund = given_back(tenant_a, checkout.pk)
    assert (refund.reason, refund.amount_minor, refund.currency) == ("amount_mismatch", 1500, "JPY")
    accepted(refund, "re_jpy_1")
    # when: the provider's refund event for it arrives, and the shopper is e-mailed
    event = build_event(
        status=PaymentStatus.REFUNDED,
        amount_minor=1500,
        currency="JPY",
        refund_id="re_jpy_1",
        refund_amount_minor=1500,
        **facts,
    )
    deliver([event])
    drain_outbox()
    # then: the e-mail says what was charged, why it goes back and that nothing was bought, in
    # JPY (before: "1500 JPY of your payment ... has been refunded", no reason at all, and
    # "Downloads of a refunded order no longer work")
    told = refund_mail()
    name = tenant_a.org.name
    assert told.subject == f"Your payment to {name} was refunded ({str(checkout.pk)[:8]})"
    assert told_before_the_order(told.body) == [
        f"Your payment of 1500 JPY to {name} has been refunded in full.",
        "You were charged 1500 JPY, but your order came to 9.00 EUR: a charge in another currency cannot pay "
        "for it, so all of it goes back, in JPY.",
        NOTHING_BOUGHT,
    ]
    assert "The money goes back the way you paid" in told.body
    assert_no_order_wording(told.body)


def test_a_charge_in_another_currency_given_back_in_parts_at_the_provider_is_told_whole_not_as_an_order(
    tenant_a, shop_a
) -> None:
    # given: 1500 JPY charged for a 9.00 EUR checkout, Darkroom's refund of it refused, 400 JPY
    # of it refunded in the provider's dashboard (the shopper is told nothing yet: the payment
    # is given back whole, with one e-mail once it is all back)
    checkout_id, facts, _mismatch = charged_in_yen(tenant_a, shop_a)
    dashboard_part(facts, refund_id="re_dash_1", own=400, total=400)
    drain_outbox()
    assert [m.subject for m in mail.outbox if "was refunded" in m.subject] == []
    # when: the studio refunds the other 1100 JPY there too
    dashboard_part(facts, refund_id="re_dash_2", own=1100, total=1500)
    drain_outbox()
    # then: one e-mail tells the whole 1500 JPY back, in its two parts, and that nothing was
    # bought (before: "1100 JPY of your payment", "refunded the rest of your order:" and the
    # download listed, although the 400 JPY was never told and nothing was the shopper's)
    told = refund_mail()
    name = tenant_a.org.name
    assert told.subject == f"Your payment to {name} was refunded ({checkout_id[:8]})"
    assert told_before_the_order(told.body) == [
        f"Your payment of 1500 JPY to {name} has been refunded in full.",
        "You were charged 1500 JPY, but your order came to 9.00 EUR: a charge in another currency cannot pay "
        "for it, so all of it goes back, in JPY.",
        NOTHING_BOUGHT,
        "Part of it, 400 JPY, came back earlier through the payment provider; the rest, 1100 JPY, now.",
    ]
    assert_no_order_wording(told.body)


def test_a_charge_of_another_amount_given_back_says_what_was_charged_and_that_nothing_was_bought(
    tenant_a, shop_a
) -> None:
    # given: the provider charged 8.00 EUR for a 9.00 EUR checkout
    checkout = open_checkout(tenant_a, shop_a, *lines_of(shop_a, {"product": "download"}))
    facts = {"reference": f"sbx_{checkout.pk}", "checkout_id": str(checkout.pk), "currency": "EUR"}
    deliver([build_event(status=PaymentStatus.PAID, amount_minor=800, event_id="evt_under", **facts)])
    drain_outbox(topics={"webhook.received"})
    # when: the provider confirms the refund of all it charged
    deliver([build_event(status=PaymentStatus.REFUNDED, amount_minor=800, event_id="evt_under_r", **facts)])
    drain_outbox()
    # then (before: "8.00 EUR of your payment", "The amount charged did not match your order" and
    # "Downloads of a refunded order no longer work")
    told = refund_mail()
    assert told_before_the_order(told.body) == [
        f"Your payment of 8.00 EUR to {tenant_a.org.name} has been refunded in full.",
        "You were charged 8.00 EUR, but your order came to 9.00 EUR: a charge of another amount cannot pay for "
        "it, so all of it goes back.",
        NOTHING_BOUGHT,
    ]
    assert_no_order_wording(told.body)


def test_a_payment_after_the_checkout_expired_given_back_says_that_nothing_was_bought(studio: StudioPeople) -> None:
    # given: a checkout of one download (9.00) that expired unpaid, and the shopper's payment
    # arriving afterwards, which Darkroom refunds
    checkout_id, refund = late_payment_refund(studio)
    mail.outbox.clear()
    # when: the provider confirms the refund
    confirmed(refund, checkout_id)
    # then (before: "9.00 EUR of your payment" and "Downloads of a refunded order no longer work")
    told = refund_mail()
    assert told.subject == f"Your payment to {studio.org.name} was refunded ({checkout_id[:8]})"
    assert told_before_the_order(told.body) == [
        f"Your payment of 9.00 EUR to {studio.org.name} has been refunded in full.",
        "Your payment arrived after your order had expired, so it could not pay for it.",
        NOTHING_BOUGHT,
    ]
    assert_no_order_wording(told.body)


def test_a_late_payment_given_back_in_parts_at_the_provider_is_not_told_as_the_rest_of_an_order(
    tenant_a, shop_a
) -> None:
    # given: two prints (50.00) paid after the checkout expired; the studio refunds 10.00 of it in
    # the provider's dashboard first, so the provider refuses Darkroom's refund of the whole
    checkout = open_checkout(tenant_a, shop_a, *lines_of(shop_a, {"product": "print", "quantity": 2}))
    assert checkouts_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    deliver([sandbox_paid(str(checkout.pk))])
    drain_outbox(topics={"webhook.received"})
    reference = f"sbx_{checkout.pk}"
    made = sandbox_provider().refund(reference=reference, amount_minor=1000, idempotency_key="dashboard-1")
    drain_outbox(topics={"payment.refund_requested"})
    deliver([sandbox_provider().refunded_event(reference=reference, refund_id=made.refund_id)])
    drain_outbox()
    # when: the studio refunds the other 40.00 there too
    rest = sandbox_provider().refund(reference=reference, amount_minor=4000, idempotency_key="dashboard-2")
    deliver([sandbox_provider().refunded_event(reference=reference, refund_id=rest.refund_id)])
    drain_outbox()
    # then (before: "40.00 EUR of your payment", "refunded the rest of your order:" and the two
    # prints listed, the 10.00 never told)
    told = refund_mail()
    assert told_before_the_order(told.body) == [
        f"Your payment of 50.00 EUR to {tenant_a.org.name} has been refunded in full.",
        "Your payment arrived after your order had expired, so it could not pay for it.",
        NOTHING_BOUGHT,
        "Part of it, 10.00 EUR, came back earlier through the payment provider; the rest, 40.00 EUR, now.",
    ]
    assert "print A4" not in told.body
    assert_no_order_wording(told.body)


def test_a_late_payment_given_back_in_parts_each_named_by_the_provider_lists_the_parts(studio: StudioPeople) -> None:
    # given: a late payment of 9.00 whose refund the provider refused; the studio refunds it in
    # the provider's dashboard in two parts, each event giving only its own refund (as
    # Flutterwave's do), 4.00 first
    checkout_id, refund = late_payment_refund(studio)
    refused(refund)
    event(studio, checkout_id, 400, refund_id="609188", own=400)
    drain_outbox()
    mail.outbox.clear()
    # when: the other 5.00 is refunded there too
    event(studio, checkout_id, 500, refund_id="609190", own=500)
    drain_outbox()
    # then: one e-mail tells the whole 9.00 back, in its two parts (before: "5.00 EUR of your
    # payment" and "refunded the rest of your order:" with the download listed)
    told = refund_mail()
    assert told_before_the_order(told.body) == [
        f"Your payment of 9.00 EUR to {studio.org.name} has been refunded in full.",
        "Your payment arrived after your order had expired, so it could not pay for it.",
        NOTHING_BOUGHT,
        "It came back in parts through the payment provider: 4.00 EUR and 5.00 EUR.",
    ]
    assert_no_order_wording(told.body)


def test_a_payment_after_the_checkout_closed_unpaid_given_back_says_that_nothing_was_bought(tenant_a, shop_a) -> None:
    # given: a checkout closed because its payment failed; a payment for it then arrives, and
    # Darkroom's refund of it is accepted by the provider
    checkout = open_checkout(tenant_a, shop_a, *lines_of(shop_a, {"product": "download"}))
    deliver([sandbox_failed(str(checkout.pk))])
    drain_outbox()
    facts = {"reference": f"sbx_{checkout.pk}", "checkout_id": str(checkout.pk), "currency": "EUR"}
    deliver([build_event(status=PaymentStatus.PAID, amount_minor=900, event_id="evt_after_failed", **facts)])
    drain_outbox(topics={"webhook.received"})
    refund = given_back(tenant_a, checkout.pk)
    assert refund.reason == "not_fulfillable"
    accepted(refund, "re_after_failed")
    # when: the provider confirms the refund
    event = build_event(
        status=PaymentStatus.REFUNDED, amount_minor=900, refund_id="re_after_failed", refund_amount_minor=900, **facts
    )
    deliver([event])
    drain_outbox()
    # then (before: "There was nothing left to deliver for your order" and "Downloads of a
    # refunded order no longer work")
    told = refund_mail()
    assert told_before_the_order(told.body) == [
        f"Your payment of 9.00 EUR to {tenant_a.org.name} has been refunded in full.",
        "Your order had already closed unpaid when your payment arrived, so it could not pay for it.",
        NOTHING_BOUGHT,
    ]
    assert_no_order_wording(told.body)


def test_a_payment_refused_for_a_withdrawn_photo_says_that_nothing_was_bought(tenant_a, shop_a) -> None:
    # given: a checkout of the photo's download; the studio withdrew the photo before the payment
    checkout = open_checkout(tenant_a, shop_a, *lines_of(shop_a, {"product": "download"}))
    withdraw(shop_a)
    # when: the payment arrives, is refused and refunded, and the provider confirms the refund
    deliver([sandbox_paid(str(checkout.pk))])
    drain_outbox()
    assert given_back(tenant_a, checkout.pk).status == Refund.Status.SUBMITTED
    deliver([sandbox_provider().refunded_event(reference=f"sbx_{checkout.pk}")])
    drain_outbox()
    # then (before: "Downloads of a refunded order no longer work")
    told = refund_mail()
    name = tenant_a.org.name
    assert told_before_the_order(told.body) == [
        f"Your payment of 9.00 EUR to {name} has been refunded in full.",
        f"{name} withdrew a photo in your order before it was paid, so the order was closed and your payment "
        "could not pay for it.",
        NOTHING_BOUGHT,
    ]
    assert_no_order_wording(told.body)


def test_a_payment_refunded_at_the_provider_before_it_was_recorded_says_that_nothing_was_bought(
    tenant_a, shop_a
) -> None:
    # given: a payment refunded in the provider's dashboard, whose refund event Darkroom gets
    # before the payment's own
    checkout = open_checkout(tenant_a, shop_a, *lines_of(shop_a, {"product": "download"}))
    paid = sandbox_paid(str(checkout.pk))
    refunded = sandbox_refunded(str(checkout.pk), checkout.amount_minor)
    # when: the refund is processed first, then the payment (which grants nothing)
    deliver([refunded])
    drain_outbox()
    deliver([paid])
    drain_outbox()
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=checkout.pk).status == Checkout.Status.REFUNDED
    # then (before: "9.00 EUR of your payment", no reason, "Downloads of a refunded order no
    # longer work")
    told = refund_mail()
    assert told_before_the_order(told.body) == [
        f"Your payment of 9.00 EUR to {tenant_a.org.name} has been refunded in full.",
        "It was refunded through the payment provider before your order was completed.",
        NOTHING_BOUGHT,
    ]
    assert_no_order_wording(told.body)


def test_a_part_of_a_late_payment_paid_back_outside_the_provider_is_not_told_as_part_of_an_order(
    studio: StudioPeople,
) -> None:
    # given: a late payment of 9.00 whose refund the provider refused; 4.00 of it refunded in
    # the provider's dashboard landed, then failed at the provider (the card was closed)
    checkout_id, refund = late_payment_refund(studio)
    refused(refund)
    made = sandbox_provider().refund(reference=f"sbx_{checkout_id}", amount_minor=400, idempotency_key="dash-400")
    deliver([sandbox_provider().refunded_event(reference=f"sbx_{checkout_id}", refund_id=made.refund_id)])
    drain_outbox()
    with tenant_context(studio.org.pk):
        part = Refund.objects.get(transaction__checkout_id=checkout_id, reason=Refund.Reason.PROVIDER_PARTIAL)
    provider_says_failed(checkout_id, part)
    drain_outbox()
    mail.outbox.clear()
    # when: an operator pays those 4.00 back by transfer and records it
    settle(fresh(part))
    drain_outbox()
    # then: the shopper hears 4.00 of the 9.00 was paid back directly, why and that nothing was
    # bought (before: "Part of your payment was refunded through the payment provider" and "The
    # rest of your order is yours as before")
    told = refund_mail()
    name = studio.org.name
    assert told.subject == f"Part of your payment to {name} was refunded ({checkout_id[:8]})"
    assert told_before_the_order(told.body) == [
        f"4.00 EUR of your payment of 9.00 EUR to {name} has been refunded.",
        "Your payment arrived after your order had expired, so it could not pay for it.",
        NOTHING_BOUGHT,
    ]
    assert f"{name} paid this back to you directly, not through the payment you made." in told.body
    assert "through the payment provider" not in told.body
    assert_no_order_wording(told.body)
