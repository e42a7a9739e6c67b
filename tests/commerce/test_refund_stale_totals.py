"""Cumulative refund totals delivered out of order. A provider's refund event may carry only the
payment's refunded total (the sandbox's and PayPal's `amount`, cumulative), and events arrive
in any order, a retried delivery days late. A total is what had gone back when the event was
made, never what has gone back now: a newer total first and an older one second, the same total
twice, or a total made before a refund failed at the provider must not record money twice, move
the order backwards, or refund it whole when it is not (real Postgres and Redis; the sandbox
plays the provider, its events signed and posted to the endpoint and processed by the webhook
consumer). Sale: a download (9.00) and a print (25.00), 34.00 paid.
"""

from __future__ import annotations

import pytest
from django.core import mail

from apps.commerce.models import Refund
from apps.payments.models import WebhookEvent
from apps.payments.providers.base import PaymentStatus
from apps.payments.providers.sandbox import build_event
from apps.tenancy.context import system_context
from tests.commerce.helpers import deliver, drain_outbox, sandbox_provider
from tests.commerce.refunds import fresh, status_of
from tests.commerce.test_refund_failed_at_provider import lines_of, provider_says_failed, refund_keys, submitted
from tests.web.studio.conftest import StudioPeople
from tests.web.studio.test_sale_refund_items import refunds_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]


def refund_event(sale: str, total: int, *, event_id: str, refund_id: str | None = None, own: int | None = None):
    """The sandbox's `payment.refunded` event as a provider reporting totals sends it: `total`
    refunded so far, and the refund it is about (`refund_id`, of `own`) only where given."""
    return build_event(
        status=PaymentStatus.REFUNDED,
        reference=f"sbx_{sale}",
        checkout_id=sale,
        amount_minor=total,
        currency="EUR",
        event_id=event_id,
        refund_id=refund_id,
        refund_amount_minor=own,
    )


def delivered(event) -> WebhookEvent:
    """`event` signed, posted (200) and processed; the recorded event (and what it led to, run)."""
    assert deliver([event]) == [200]
    drain_outbox(topics={"webhook.received"})
    with system_context("test"):
        recorded = WebhookEvent.objects.get(event_id=event.event_id)
    drain_outbox()
    return recorded


def refunded_emails() -> list[str]:
    return [m.subject for m in mail.outbox if "was refunded" in m.subject]


def given_back(studio: StudioPeople, sale: str) -> int:
    """What Darkroom counts as given back through the provider: its refunds that landed."""
    return sum(
        r.amount_minor
        for r in refunds_of(studio.org.pk, sale)
        if r.landed_at is not None and r.status in Refund.LIVE_STATUSES and r.provider_failed_at is None
    )


# --- totals that name no refund -------------------------------------------------------------


def test_an_older_smaller_total_after_a_newer_whole_one_changes_nothing_and_fails_nothing(
    studio: StudioPeople, sale: str
) -> None:
    # given: the studio refunded 9.00 and then 25.00 in the provider's dashboard; the provider's
    # events name no refund, only the total: 9.00, then 34.00
    provider = sandbox_provider()
    provider.refund(reference=f"sbx_{sale}", amount_minor=900, idempotency_key="dash-1")
    provider.refund(reference=f"sbx_{sale}", amount_minor=2500, idempotency_key="dash-2")
    older = refund_event(sale, 900, event_id="evt_total_900")
    newer = refund_event(sale, 3400, event_id="evt_total_3400")
    mail.outbox.clear()
    # when: the newer event arrives first
    assert delivered(newer).status == "processed"
    # then: the order is refunded whole: the download revoked, both credits reversed, one e-mail
    assert status_of(studio, sale) == "refunded"
    keys = refund_keys(studio)
    assert len(keys) == 2 and len(refunded_emails()) == 1
    # when: the older one (9.00 so far) arrives second
    late = delivered(older)
    # then: it says nothing the newer one did not: processed, nothing recorded or told, and no
    # failed event left for an operator (before: PartialRefundUnnamed, failed for good)
    assert (late.status, late.error) == ("processed", ""), (late.status, late.error)
    assert status_of(studio, sale) == "refunded"
    assert [r.reason for r in refunds_of(studio.org.pk, sale)] == []
    assert refund_keys(studio) == keys and len(refunded_emails()) == 1


def test_two_events_with_the_same_whole_total_refund_the_order_once(studio: StudioPeople, sale: str) -> None:
    # given: 34.00 refunded in the provider's dashboard, reported by two events naming no refund
    # with the same total (a provider's two event types about one refund)
    sandbox_provider().refund(reference=f"sbx_{sale}", amount_minor=3400, idempotency_key="dash-all")
    mail.outbox.clear()
    # when: both arrive, the second after the first was applied
    first = delivered(refund_event(sale, 3400, event_id="evt_same_1"))
    second = delivered(refund_event(sale, 3400, event_id="evt_same_2"))
    # then: the order is refunded once: two credits reversed, one e-mail, nothing failed
    assert (first.status, second.status) == ("processed", "processed")
    assert status_of(studio, sale) == "refunded"
    assert len(refund_keys(studio)) == 2 and len(refunded_emails()) == 1


def item_refunds_made_then_download_failed(studio: StudioPeople, sale: str) -> tuple[Refund, Refund]:
    """The studio refunded the download (9.00) and the print (25.00); the provider made both (34.00
    refunded there at that moment, none of their events delivered yet); then the download's
    refund failed there (the shopper's card closed: its 9.00 back with the studio), and that
    failure was delivered and applied. Returns (download's refund, print's refund)."""
    lines = lines_of(studio, sale)
    download = submitted(studio, sale, [lines["download"]])
    printed = submitted(studio, sale, [lines["print"]])
    provider_says_failed(sale, download)
    assert fresh(download).status == "failed"
    return fresh(download), printed


def test_a_whole_total_naming_no_refund_made_before_a_refund_failed_does_not_refund_the_order(
    studio: StudioPeople, sale: str
) -> None:
    # given: both item refunds made (34.00 back at that moment), then the download's failed
    download, printed = item_refunds_made_then_download_failed(studio, sale)
    mail.outbox.clear()
    # when: an event naming no refund, made while 34.00 was back, arrives now
    late = delivered(refund_event(sale, 3400, event_id="evt_total_before_failure"))
    # then: the provider holds 9.00 of the shopper's money: the order is not refunded whole, the
    # download's refund stays failed (its item can be asked for again), nothing is reversed and
    # the shopper is told nothing; the event fails for an operator (before: the order refunded,
    # the failed refund written off as `not_needed`, both credits reversed)
    assert status_of(studio, sale) == "paid"
    assert fresh(download).status == "failed"
    assert fresh(printed).landed_at is None
    assert refund_keys(studio) == [] and refunded_emails() == []
    assert late.status == "failed" and late.error.startswith("RefundTotalAmbiguous:"), (late.status, late.error)


def test_a_refunds_own_event_made_before_another_failed_lands_that_refund_only(studio: StudioPeople, sale: str) -> None:
    # given: both item refunds made (34.00 back at that moment), then the download's failed
    download, printed = item_refunds_made_then_download_failed(studio, sale)
    lines = lines_of(studio, sale)
    # when: the print's own event, made then (its total says 34.00, its own amount 25.00), arrives
    late = delivered(
        refund_event(sale, 3400, event_id="evt_print_before_failure", refund_id=printed.provider_refund_id, own=2500)
    )
    # then: the print's refund lands by its own amount (its credit reversed); the order stays paid
    # with the download's refund failed, to be asked for again (before: the order refunded whole
    # and the failed refund written off as `not_needed`: 25.00 of 34.00 back)
    assert late.status == "processed", (late.status, late.error)
    assert fresh(printed).landed_at is not None
    assert refund_keys(studio) == [f"refund:{sale}:{lines['print']}"]
    assert status_of(studio, sale) == "paid"
    assert fresh(download).status == "failed"


# --- a refund Darkroom does not know, given only by the total -------------------------------


def test_a_dashboard_refund_given_only_by_a_total_is_never_counted_twice(studio: StudioPeople, sale: str) -> None:
    # given: the download's refund (9.00) made by the provider; then 10.00 refunded in its
    # dashboard (19.00 back in all)
    download = submitted(studio, sale, [lines_of(studio, sale)["download"]])
    dashboard = sandbox_provider().refund(reference=f"sbx_{sale}", amount_minor=1000, idempotency_key="dash-10")
    # when: the dashboard refund's event, naming it but giving only the total (19.00), arrives
    # before the download refund's own event, and then that one
    unsized = delivered(refund_event(sale, 1900, event_id="evt_dash_total", refund_id=dashboard.refund_id))
    delivered(refund_event(sale, 900, event_id="evt_download_own", refund_id=download.provider_refund_id, own=900))
    # then: Darkroom never counts more than went back, 19.00 (before: the dashboard refund was
    # recorded as 19.00, total less what had landed, and the download's 9.00 landed on top: 28.00)
    assert given_back(studio, sale) <= 1900, [(r.reason, r.amount_minor) for r in refunds_of(studio.org.pk, sale)]
    assert fresh(download).landed_at is not None
    # and: the event that cannot say the dashboard refund's own amount fails for an operator
    assert unsized.status == "failed" and unsized.error.startswith("RefundTotalAmbiguous:"), unsized.error
