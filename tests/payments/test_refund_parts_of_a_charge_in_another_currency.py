"""Parts refunded at the provider of a charge made in another currency than its checkout's.

A checkout of EUR 9.00 that the provider says was charged 1500 JPY fails and is given back in
JPY (`amount_mismatch`). Darkroom's own refund of it is refused; the studio then gives the money
back in the provider's dashboard, in parts. Each part arrives as a signed refund event (the
sandbox's real format, posted to the endpoint, processed by the real consumer) and must be
recorded in the currency it was charged and refunded in, JPY, never labelled EUR; the shopper's
e-mail says what came back in JPY; nothing reaches the ledger (the charge was never fulfilled, so
there is no credit to reverse). Real Postgres and Redis.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail

from apps.commerce.models import Refund, Transaction
from apps.ledger.models import LedgerEvent
from apps.payments.providers.base import PaymentStatus
from apps.payments.providers.sandbox import build_event
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.commerce.helpers import drain_outbox, system_count
from tests.payments.test_webhook_processing_fuzz import _open_checkout
from tests.payments.test_webhook_refund_checks import processed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


def charged_in_yen(tenant_a: Any, shop: Any) -> tuple[str, dict[str, str], Refund]:
    """A checkout of EUR 9.00 paid 1500 JPY (a signed paid event), and Darkroom's refund of those
    1500 JPY refused for good by the provider: (checkout id, the events' facts, the refund)."""
    checkout_id, session = _open_checkout(tenant_a.client(), shop, "sandbox")
    facts = {"reference": session, "checkout_id": checkout_id}
    paid = build_event(status=PaymentStatus.PAID, amount_minor=1500, currency="JPY", **facts)
    assert processed("sandbox", paid.body).status == "processed"
    with tenant_context(tenant_a.org.pk):
        [refund] = Refund.objects.filter(transaction__checkout_id=checkout_id)
        assert (refund.reason, refund.amount_minor, refund.currency) == ("amount_mismatch", 1500, "JPY")
        Refund.objects.filter(pk=refund.pk).update(status=Refund.Status.FAILED, last_error="refused", attempts=1)
    return checkout_id, facts, refund


def dashboard_part(facts: dict[str, str], *, refund_id: str, own: int, total: int) -> str:
    """The signed event of a refund made in the sandbox's dashboard, processed: its outcome."""
    event = build_event(
        status=PaymentStatus.REFUNDED,
        amount_minor=total,
        currency="JPY",
        refund_id=refund_id,
        refund_amount_minor=own,
        **facts,
    )
    recorded = processed("sandbox", event.body)
    assert recorded.status == "processed", (recorded.status, recorded.error)
    return recorded.outcome


def test_a_part_refunded_at_the_provider_is_recorded_in_the_currency_it_was_charged_in(tenant_a, shop) -> None:
    # given: 1500 JPY charged for a EUR 9.00 checkout, Darkroom's refund of it refused
    checkout_id, facts, _mismatch = charged_in_yen(tenant_a, shop)
    # when: the studio refunds 400 JPY of it in the provider's dashboard
    dashboard_part(facts, refund_id="re_dash_1", own=400, total=400)
    # then: the part is recorded as 400 JPY, as it was charged and refunded (before: 400 "EUR",
    # 4.00 EUR on every page and in the admin)
    with tenant_context(tenant_a.org.pk):
        [part] = Refund.objects.filter(transaction__checkout_id=checkout_id, reason=Refund.Reason.PROVIDER_PARTIAL)
        [audited] = AuditLog.objects.filter(action="refund.at_provider", target_id=checkout_id)
    assert (part.amount_minor, part.currency, part.landed_at is not None) == (400, "JPY", True)
    assert (audited.data["amount_minor"], audited.data["currency"]) == (400, "JPY")


def test_the_rest_refunded_at_the_provider_gives_the_charge_back_and_the_shopper_is_told_it_in_yen(
    tenant_a, shop
) -> None:
    # given: 1500 JPY charged for a EUR 9.00 checkout, Darkroom's refund refused, 400 JPY of it
    # refunded in the provider's dashboard
    checkout_id, facts, mismatch = charged_in_yen(tenant_a, shop)
    dashboard_part(facts, refund_id="re_dash_1", own=400, total=400)
    mail.outbox.clear()
    # when: the studio refunds the other 1100 JPY there too
    dashboard_part(facts, refund_id="re_dash_2", own=1100, total=1500)
    drain_outbox(topics={"checkout.refunded"})
    # then: the whole charge is back and the refused refund moot
    with tenant_context(tenant_a.org.pk):
        assert Transaction.objects.get(checkout_id=checkout_id).status == Transaction.Status.REFUNDED
        assert Refund.objects.get(pk=mismatch.pk).status == Refund.Status.NOT_NEEDED
    # and: the shopper, told nothing of the 400 JPY part (a payment given back whole gets one
    # e-mail), is told the whole 1500 JPY charge came back, in its parts (before: the checkout's
    # 9.00 less the 400 JPY part, read as 5.00 EUR; then "1100 JPY of your payment" as the rest
    # of an order never fulfilled)
    [told] = [m for m in mail.outbox if "was refunded" in m.subject]
    assert "Your payment of 1500 JPY" in told.body, told.body
    assert "Part of it, 400 JPY, came back earlier through the payment provider; the rest, 1100 JPY, now." in told.body
    assert "EUR" not in told.body.replace("your order came to 9.00 EUR", ""), told.body
    # and: the ledger has nothing of this checkout: the charge was never fulfilled, so there was
    # no credit to reverse, in EUR or in JPY
    assert system_count(lambda: LedgerEvent.objects.filter(reference=f"checkout:{checkout_id}")) == 0


def test_a_charge_in_another_currency_refunded_whole_in_the_dashboard_is_told_in_that_currency(tenant_a, shop) -> None:
    # given: 1500 JPY charged for a EUR 9.00 checkout, Darkroom's refund of it refused
    checkout_id, facts, _mismatch = charged_in_yen(tenant_a, shop)
    mail.outbox.clear()
    # when: the studio refunds all 1500 JPY in the provider's dashboard, in one go
    dashboard_part(facts, refund_id="re_dash_all", own=1500, total=1500)
    drain_outbox(topics={"checkout.refunded"})
    # then: the shopper is told 1500 JPY came back (before: 9.00 EUR, the checkout's total)
    [told] = [m for m in mail.outbox if "was refunded" in m.subject]
    assert "Your payment of 1500 JPY" in told.body, told.body
    with system_context("test"):
        assert not LedgerEvent.objects.filter(reference=f"checkout:{checkout_id}").exists()
