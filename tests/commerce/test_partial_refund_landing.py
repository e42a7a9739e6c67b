"""Which of a studio's item refunds a provider's partial refund event confirms
(`transaction_apply_refund`): the refund the event names (PayPal, Flutterwave, sandbox), or,
from an event naming none (Stripe's cumulative `amount_refunded`), the oldest ones that fit in
the amount refunded; the whole payment back once they add up to it; a retry, writing nothing,
for an event about a refund whose id is not stored yet (real Postgres; the provider side is the
sandbox)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from apps.commerce.errors import RefundNotRecordedYet
from apps.commerce.models import Checkout, CheckoutLine, Refund
from apps.commerce.services import PaymentFact, checkout_refund_request, transaction_apply_refund
from apps.ledger.models import LedgerEvent
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.fixtures import empty_broker  # noqa: F401 - fixture by name
from tests.commerce.helpers import drain_outbox
from tests.factories.commerce import make_shop
from tests.web.studio.conftest import StudioPeople, people_of, sold

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


@pytest.fixture(autouse=True)
def _row_lock(settings: Any) -> None:
    settings.INVENTORY_STRATEGY = "row_lock"


@pytest.fixture
def studio(tenant_a: Any) -> StudioPeople:
    return people_of(tenant_a)


@pytest.fixture
def sale(studio: StudioPeople) -> tuple[StudioPeople, str, dict[str, int]]:
    """A paid sale of a download (9.00) and an A4 print (25.00): 34.00 EUR in all."""
    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.download.pk}, {"product": shop.print.pk})
    with tenant_context(studio.org.pk):
        lines = {line.kind: line.pk for line in CheckoutLine.objects.filter(checkout_id=checkout_id)}
    return studio, checkout_id, lines


def ask(studio: StudioPeople, checkout_id: str, *line_ids: int, submit: bool = True) -> Refund:
    """The studio refunds these lines; with `submit`, the provider (sandbox) accepts it."""
    with tenant_context(studio.org.pk):
        refund = checkout_refund_request(
            tenant_id=studio.org.pk, checkout_id=checkout_id, actor_label="test", line_ids=list(line_ids)
        )
    if submit:
        drain_outbox(topics={"payment.refund_requested"})
    with tenant_context(studio.org.pk):
        return Refund.objects.get(pk=refund.pk)


def told(studio: StudioPeople, checkout_id: str, amount: int, refund_id: str | None = None) -> str:
    """A provider's refund event, applied as the webhook consumer applies it."""
    fact = PaymentFact(status="refunded", source="test:event", amount_minor=amount, currency="EUR")
    with tenant_context(studio.org.pk), transaction.atomic():
        outcome = transaction_apply_refund(
            tenant_id=studio.org.pk, checkout_id=checkout_id, fact=fact, provider_refund_id=refund_id
        )
    return outcome.describe()


def state(studio: StudioPeople, checkout_id: str) -> tuple[str, list[bool], list[str]]:
    """(checkout status, landed per refund, refund keys in the ledger)."""
    with tenant_context(studio.org.pk):
        status = Checkout.objects.get(pk=checkout_id).status
        landed = [
            r.landed_at is not None for r in Refund.objects.filter(transaction__checkout_id=checkout_id).order_by("pk")
        ]
    with system_context("test"):
        keys = LedgerEvent.objects.filter(tenant_id=studio.org.pk, idempotency_key__startswith="refund:")
        return status, landed, sorted(keys.values_list("idempotency_key", flat=True))


def test_a_cumulative_amount_naming_no_refund_lands_the_oldest_refunds_that_fit(sale: Any) -> None:
    studio, checkout_id, lines = sale
    # given: the print refunded first (25.00), then the download, the order's last item (9.00)
    ask(studio, checkout_id, lines["print"])
    # when: the provider reports 20.00 refunded in all (not the print's refund yet)
    outcome = told(studio, checkout_id, 2000)
    # then: nothing lands
    assert "no item refund to land" in outcome
    assert state(studio, checkout_id) == ("paid", [False], [])
    # when: it reports 25.00: the print's refund lands, the sale stays paid
    told(studio, checkout_id, 2500)
    assert state(studio, checkout_id) == ("paid", [True], [f"refund:{checkout_id}:{lines['print']}"])
    # and: the same total again changes nothing
    assert "no item refund to land" in told(studio, checkout_id, 2500)
    # when: the download's refund (what is left: 9.00) and then 34.00 in all
    last = ask(studio, checkout_id, lines["download"])
    assert last.amount_minor == 900
    told(studio, checkout_id, 3400)
    # then: the whole payment is back: the sale is refunded, each credit reversed once
    status, landed, keys = state(studio, checkout_id)
    assert (status, landed) == ("refunded", [True, True])
    assert keys == sorted(f"refund:{checkout_id}:{line_id}" for line_id in lines.values())


def test_per_refund_amounts_with_ids_land_each_refund_in_any_order(sale: Any) -> None:
    # given: two item refunds, the second the order's last (Flutterwave reports each refund's
    # own amount, not a total)
    studio, checkout_id, lines = sale
    first = ask(studio, checkout_id, lines["print"])
    second = ask(studio, checkout_id, lines["download"])
    # when: the second one's event comes first, with its own amount
    told(studio, checkout_id, 900, refund_id=second.provider_refund_id)
    # then: only it lands
    assert state(studio, checkout_id) == ("paid", [False, True], [f"refund:{checkout_id}:{lines['download']}"])
    # when: the first one's event: together they are the whole payment
    told(studio, checkout_id, 2500, refund_id=first.provider_refund_id)
    assert state(studio, checkout_id)[:2] == ("refunded", [True, True])


def test_an_event_about_a_refund_not_recorded_yet_is_retried_and_writes_nothing(sale: Any) -> None:
    # given: an item refund the provider has not answered yet (its id is not stored)
    studio, checkout_id, lines = sale
    pending = ask(studio, checkout_id, lines["print"], submit=False)
    assert pending.status == "requested" and pending.provider_refund_id is None
    # when: the provider's event about it arrives first
    with pytest.raises(RefundNotRecordedYet):
        told(studio, checkout_id, 2500, refund_id="re_not_stored_yet")
    # then: nothing changed; once the refund is submitted, its event lands it
    assert state(studio, checkout_id) == ("paid", [False], [])
    drain_outbox(topics={"payment.refund_requested"})
    with tenant_context(studio.org.pk):
        submitted = Refund.objects.get(pk=pending.pk)
    told(studio, checkout_id, 2500, refund_id=submitted.provider_refund_id)
    assert state(studio, checkout_id) == ("paid", [True], [f"refund:{checkout_id}:{lines['print']}"])


def test_a_partial_refund_made_at_the_provider_changes_nothing(sale: Any) -> None:
    studio, checkout_id, _ = sale
    assert "no item refund to land" in told(studio, checkout_id, 1000, refund_id="re_made_in_the_dashboard")
    assert "no item refund to land" in told(studio, checkout_id, 1000)
    assert state(studio, checkout_id) == ("paid", [], [])
