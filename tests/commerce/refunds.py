"""Shared steps of the refund tests: the studio's refund requests, provider refund events applied
as the webhook consumer applies them, and what the refunds of a sale look like afterwards (real
Postgres and Redis; the sandbox plays the provider).

The sale fixtures these steps work on (`studio`, `sale`, `sale3`) live in
tests/web/studio/conftest.py, next to `sold`; tests/commerce's conftest brings them here.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from apps.commerce.errors import CheckoutNotRefundable
from apps.commerce.models import Checkout, Refund
from apps.commerce.services import (
    PaymentFact,
    checkout_refund_request,
    checkouts_expire_due,
    transaction_apply_refund,
)
from apps.tenancy.context import tenant_context
from tests.commerce.helpers import deliver, drain_outbox, sandbox_paid, sandbox_provider
from tests.factories.commerce import make_shop
from tests.web.studio.conftest import StudioPeople, sold
from tests.web.studio.test_sale_refund_items import refunds_of


def event(
    studio: StudioPeople, checkout_id: str, amount: int, *, refund_id: str | None = None, own: int | None = None
) -> str:
    """A provider's refund event, applied as the webhook consumer applies it: `amount` refunded
    (cumulative where the provider reports a total), `refund_id` naming the refund of `own` minor
    units; without a refund id only the whole payment back is taken."""
    fact = PaymentFact(status="refunded", source="test:event", amount_minor=amount, currency="EUR")
    with tenant_context(studio.org.pk), transaction.atomic():
        outcome = transaction_apply_refund(
            tenant_id=studio.org.pk,
            checkout_id=checkout_id,
            fact=fact,
            provider_refund_id=refund_id,
            refund_amount_minor=own,
        )
    return outcome.describe()


def ask(studio: StudioPeople, checkout_id: str, line_ids: list[int] | None) -> Refund:
    """The studio's refund (`line_ids` None: everything not refunded yet), as the API asks it."""
    with tenant_context(studio.org.pk):
        return checkout_refund_request(
            tenant_id=studio.org.pk, checkout_id=checkout_id, actor_label="test", line_ids=line_ids
        )


def ask_each(studio: StudioPeople, checkout_id: str, *asks: list[int] | None) -> tuple[list[Refund], list[str]]:
    """`ask` each in turn: the refunds made, and the refusals ("RefundExceedsPayment: ...")."""
    made: list[Refund] = []
    answers: list[str] = []
    for line_ids in asks:
        try:
            made.append(ask(studio, checkout_id, line_ids))
        except CheckoutNotRefundable as exc:
            answers.append(f"{type(exc).__name__}: {exc}")
    return made, answers


def refused(refund: Refund, error: str = "insufficient funds") -> None:
    """The provider refused `refund` for good (as `refund_submit` records a final refusal)."""
    with tenant_context(refund.tenant_id):
        Refund.objects.filter(pk=refund.pk).update(status=Refund.Status.FAILED, last_error=error, attempts=1)


def fresh(refund: Refund) -> Refund:
    with tenant_context(refund.tenant_id):
        return Refund.objects.get(pk=refund.pk)


def status_of(studio: StudioPeople, checkout_id: str) -> str:
    with tenant_context(studio.org.pk):
        return Checkout.objects.get(pk=checkout_id).status


def at_provider(studio: StudioPeople, checkout_id: str) -> list[tuple[int, str | None, bool]]:
    """(amount, provider refund id, landed) of the parts recorded as refunded at the provider."""
    return [
        (r.amount_minor, r.provider_refund_id, r.landed_at is not None)
        for r in refunds_of(studio.org.pk, checkout_id)
        if r.reason == Refund.Reason.PROVIDER_PARTIAL
    ]


def confirmed(refund: Refund, checkout_id: str) -> None:
    """The refund's provider call (the sandbox makes it), then the sandbox's webhook for it."""
    drain_outbox(topics={"payment.refund_requested"})
    made = fresh(refund)
    assert made.status == "submitted", (made.status, made.last_error)
    announced = sandbox_provider().refunded_event(reference=f"sbx_{checkout_id}", refund_id=made.provider_refund_id)
    assert deliver([announced]) == [200]
    drain_outbox()


def dashboard_refund(sale: str, amount_minor: int) -> str:
    """`amount_minor` of the sale refunded in the sandbox's dashboard, and its webhook delivered
    (not processed). Returns the provider's refund id."""
    provider = sandbox_provider()
    made = provider.refund(reference=f"sbx_{sale}", amount_minor=amount_minor, idempotency_key=f"dash-{amount_minor}")
    assert deliver([provider.refunded_event(reference=f"sbx_{sale}", refund_id=made.refund_id)]) == [200]
    return made.refund_id


def dashboard_refunds_everything(sale: str) -> None:
    """The whole 34.00 refunded in the sandbox's dashboard, and its webhook delivered."""
    dashboard_refund(sale, 3400)


def late_payment_refund(studio: StudioPeople) -> tuple[str, Refund]:
    """A checkout of one download (9.00) left unpaid until it expired; the shopper's payment then
    arrived late and was recorded: (the checkout's id, its `late_payment` refund, asked for)."""
    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.download.pk}, pay=False)
    assert checkouts_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    assert deliver([sandbox_paid(checkout_id)]) == [200]
    drain_outbox(topics={"webhook.received"})
    with tenant_context(studio.org.pk):
        [refund] = Refund.objects.filter(transaction__checkout_id=checkout_id)
    assert refund.reason == "late_payment"
    return checkout_id, refund
