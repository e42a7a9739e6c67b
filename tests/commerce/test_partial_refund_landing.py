"""Which of a studio's item refunds a provider's partial refund event confirms
(`transaction_apply_refund`): the refund the event names (every adapter maps the events that
name theirs), never one guessed from a total naming none; the whole payment back once they add
up to it; a retry, writing nothing, for an event about a
refund whose id is not stored yet, and the stale-event sweep past the consumer's retries; every
item told to the shopper; a stale sale page refused, never widened (real Postgres and Redis; the
provider side is the sandbox)."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.core import mail
from django.db import transaction
from django.utils import timezone

from apps.commerce.errors import RefundNotRecordedYet
from apps.commerce.models import Checkout, CheckoutLine, Refund
from apps.commerce.services import (
    PaymentFact,
    checkout_refund_request,
    refunds_requeue_stale,
    transaction_apply_refund,
)
from apps.ledger.models import LedgerEvent
from apps.outbox.models import OutboxMessage
from apps.payments.models import WebhookEvent
from apps.payments.providers.base import PaymentStatus
from apps.payments.providers.sandbox import build_event
from apps.payments.services import webhook_event_process, webhook_events_requeue_stale
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.fixtures import empty_broker  # noqa: F401 - fixture by name
from tests.commerce.helpers import deliver, drain_outbox, sandbox_provider
from tests.factories.commerce import make_shop
from tests.web.studio.conftest import StudioPeople, form_nonce_on, people_of, signed_in, sold

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]


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


def test_a_partial_refund_event_naming_no_refund_fails_for_an_operator_and_lands_nothing(sale: Any) -> None:
    # given: the print's refund (25.00) was accepted by the provider
    studio, checkout_id, lines = sale
    ask(studio, checkout_id, lines["print"])
    # when: an event reports 25.00 refunded without naming the refund (a total, as Stripe's
    # charge.refunded, which Darkroom does not act on), delivered and processed
    unnamed = build_event(
        status=PaymentStatus.REFUNDED,
        reference=f"sbx_{checkout_id}",
        checkout_id=checkout_id,
        amount_minor=2500,
        currency="EUR",
    )
    assert deliver([unnamed]) == [200]
    drain_outbox(topics={"webhook.received"})
    # then: it cannot say which refund completed: nothing lands, and the event fails for good
    assert state(studio, checkout_id) == ("paid", [False], [])
    with system_context("test"):
        [recorded] = WebhookEvent.objects.filter(event_id=unnamed.event_id)
    assert (recorded.status, recorded.error.split(":")[0]) == ("failed", "PartialRefundUnnamed")


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


# --- edges a money-path review found -------------------------------------------------------


def refunds(studio: StudioPeople, checkout_id: str) -> list[Refund]:
    with tenant_context(studio.org.pk):
        return list(Refund.objects.filter(transaction__checkout_id=checkout_id).order_by("pk"))


def test_an_item_refund_whose_event_came_before_its_id_was_stored_still_lands(sale: Any) -> None:
    # given: the print's refund is `requested`; the provider made it, but its answer was lost
    # (a timeout), so the id is not stored and the refund call is retried with backoff
    studio, checkout_id, lines = sale
    pending = ask(studio, checkout_id, lines["print"], submit=False)
    made = sandbox_provider().refund(
        reference=f"sbx_{checkout_id}", amount_minor=pending.amount_minor, idempotency_key=pending.idempotency_key
    )
    # when: the provider's refund webhook arrives meanwhile and the consumer tries it as often as
    # it may (1 + WEBHOOK_PROCESS_MAX_RETRIES), always before the refund call's retry
    event = sandbox_provider().refunded_event(reference=f"sbx_{checkout_id}", refund_id=made.refund_id)
    assert deliver([event]) == [200]
    with system_context("test"):
        [recorded] = WebhookEvent.objects.filter(event_id=event.event_id)
        # the relay hands its `webhook.received` message to the consumer (published)
        [message] = OutboxMessage.objects.filter(topic="webhook.received", status=OutboxMessage.Status.PENDING)
        OutboxMessage.objects.filter(pk=message.pk).update(
            status=OutboxMessage.Status.PUBLISHED, published_at=timezone.now()
        )
    message_id = str(message.pk)
    for _ in range(1 + settings.WEBHOOK_PROCESS_MAX_RETRIES):
        with pytest.raises(RefundNotRecordedYet):
            webhook_event_process(webhook_event_id=recorded.pk, message_id=message_id)
    # and: then the refund call's retry stores the id (the sandbox announces the refund again),
    # and every sweep runs
    drain_outbox(topics={"payment.refund_requested"})
    with tenant_context(studio.org.pk):
        assert Refund.objects.get(pk=pending.pk).provider_refund_id == made.refund_id
    with system_context("test"):
        webhook_events_requeue_stale(older_than_seconds=0)
        refunds_requeue_stale(older_than_seconds=0)
    drain_outbox()
    # then: the refund the provider made has landed (print no longer owed, credit reversed)
    assert refunds(studio, checkout_id)[0].landed_at is not None, (
        "money went back to the shopper but the refund never lands: the webhook event is left "
        "`failed` and nothing processes it again once the refund's id is stored"
    )


def test_the_shopper_is_told_about_every_item_refunded(sale: Any) -> None:
    # given: the download's refund, then the print's (the last item), both made by the provider
    studio, checkout_id, lines = sale
    first = ask(studio, checkout_id, lines["download"], submit=False)
    second = ask(studio, checkout_id, lines["print"], submit=False)
    drain_outbox(topics={"payment.refund_requested"})
    first, second = refunds(studio, checkout_id)
    mail.outbox.clear()
    # when: the provider's events arrive in the other order (the print's first)
    provider = sandbox_provider()
    for refund in (second, first):
        event = provider.refunded_event(reference=f"sbx_{checkout_id}", refund_id=refund.provider_refund_id)
        assert deliver([event]) == [200]
        drain_outbox()
    # then: the sale is refunded, and the e-mails name the download's refund too
    with tenant_context(studio.org.pk):
        assert Checkout.objects.get(pk=checkout_id).status == "refunded"
    bodies = "\n".join(message.body for message in mail.outbox)
    assert "download of photo" in bodies, f"the download's refund is never mentioned: {bodies!r}"
    assert "34.00 EUR" in bodies or "9.00 EUR" in bodies, f"the amounts told do not add up to 34.00: {bodies!r}"


def test_a_stale_refund_form_never_refunds_an_item_the_studio_did_not_tick(sale: Any) -> None:
    # given: the owner has the sale page open twice (two tabs), each offering both items
    studio, checkout_id, lines = sale
    owner = signed_in(studio.owner)
    action = f"/studio/sales/{checkout_id}/refund"
    tab_one = form_nonce_on(owner.get(f"/studio/sales/{checkout_id}/"), action)
    tab_two = form_nonce_on(owner.get(f"/studio/sales/{checkout_id}/"), action)
    # when: the download is refunded from the first tab, then ticked again in the second
    download_only = {"confirm": "on", "lines": [str(lines["download"])]}
    assert owner.post(action, {"nonce": tab_one, **download_only}).status_code == 303
    owner.post(action, {"nonce": tab_two, **download_only})
    # then: the second is refused; the print, never ticked, is not refunded
    made = refunds(studio, checkout_id)
    with tenant_context(studio.org.pk):
        refunded_lines = sorted(
            CheckoutLine.objects.filter(checkout_id=checkout_id, refund__isnull=False).values_list("pk", flat=True)
        )
    assert refunded_lines == [lines["download"]], f"refunds made: {[(r.amount_minor, r.reason) for r in made]}"
