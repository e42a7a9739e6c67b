"""Part of a payment refunded in the provider's own dashboard (`transaction_apply_refund`): the
money no refund of Darkroom's explains is recorded once as a landed `provider_partial` refund,
which revokes nothing and reverses no credit (nobody named the items), tells the shopper, is
audited, counts in the sales list and CSV, adds up with the other parts to the whole payment,
and leaves less of the payment for the studio's later refunds (real Postgres and Redis; the
provider side is the sandbox; each event names its refund, with that refund's own amount)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from apps.commerce.errors import RefundExceedsPayment, RefundNotRecordedYet
from apps.commerce.models import Entitlement, Refund
from apps.commerce.order_links import order_link
from apps.commerce.services import checkouts_expire_due
from apps.payments.services import webhook_events_requeue_stale
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.commerce.fixtures import empty_broker, row_lock_strategy  # noqa: F401 - fixtures by name
from tests.commerce.helpers import deliver, drain_outbox, new_key, sandbox_paid, sandbox_provider
from tests.commerce.refunds import (
    ask,
    ask_each,
    at_provider,
    dashboard_refunds_everything,
    event,
    fresh,
    refused,
    status_of,
)
from tests.commerce.test_payment_state_machine import lines_of as shop_lines
from tests.commerce.test_payment_state_machine import open_checkout
from tests.factories.commerce import make_shop
from tests.web.studio.conftest import StudioPeople, form_nonce_on, signed_in, sold, text
from tests.web.studio.test_sale_refund_items import lines_of, refund_keys, refunds_of, sales_csv_row

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]


def revoked(studio: StudioPeople, checkout_id: str) -> list[bool]:
    with tenant_context(studio.org.pk):
        return [e.revoked_at is not None for e in Entitlement.objects.filter(checkout_id=checkout_id)]


def test_a_refund_made_in_the_sandbox_dashboard_is_recorded_once_and_revokes_nothing(
    studio: StudioPeople, sale: str
) -> None:
    # given: the studio refunds 10.00 of the 34.00 payment in the provider's dashboard
    made = sandbox_provider().refund(reference=f"sbx_{sale}", amount_minor=1000, idempotency_key="dashboard-1")
    refunded = sandbox_provider().refunded_event(reference=f"sbx_{sale}", refund_id=made.refund_id)
    mail.outbox.clear()
    # when: the provider's webhook arrives, twice
    assert deliver([refunded], duplicates=2) == [200, 200]
    drain_outbox()
    # then: one landed part of 10.00 under the provider's refund id; the sale stays paid, the
    # download stays the shopper's, no photographer's credit is reversed
    assert at_provider(studio, sale) == [(1000, made.refund_id, True)]
    assert status_of(studio, sale) == "paid"
    assert revoked(studio, sale) == [False]
    assert refund_keys(studio.org.pk) == []
    # and: the shopper is told once, and the studio's audit log says where it came from
    [told] = mail.outbox
    assert told.subject.startswith(f"Part of your payment to {studio.org.name} was refunded")
    assert "10.00 EUR of your payment" in told.body
    assert "Part of your payment was refunded through the payment provider" in told.body
    assert "The rest of your order is yours as before" in told.body
    with system_context("test"):
        [audit] = AuditLog.objects.filter(tenant_id=studio.org.pk, action="refund.at_provider")
    assert (audit.actor_label, audit.data["amount_minor"]) == ("provider:sandbox", 1000)
    # and: the sales list, the CSV and the sale page count it
    owner = signed_in(studio.owner)
    assert "34.00 EUR, 10.00 EUR refunded" in text(owner.get("/studio/sales/"))
    assert sales_csv_row(owner, sale)[3::9] == ["paid", "10.00"]
    page = text(owner.get(f"/studio/sales/{sale}/"))
    assert "Part refunded at the payment provider" in page and "Not named" in page
    # and: the shopper's order page says so and still offers the download
    link = order_link(studio_slug=studio.org.slug, tenant_id=studio.org.pk, checkout_id=sale)
    order_page = text(Client().get(urlsplit(link).path, follow=True))
    assert "The studio refunded 10.00 EUR of your payment" in order_page
    assert "(original)" in order_page and "Paid" in order_page
    assert "Darkroom cannot tell which items" in page and "24.00 EUR" in page


def test_parts_refunded_at_the_provider_that_add_up_to_the_payment_refund_the_order(
    studio: StudioPeople, sale: str
) -> None:
    # given: Flutterwave reports each refund's own amount: 10.00, then 24.00 (the rest)
    event(studio, sale, 1000, refund_id="609188", own=1000)
    assert at_provider(studio, sale) == [(1000, "609188", True)]
    drain_outbox()  # the shopper is told about it
    mail.outbox.clear()
    # when: the second part arrives; neither event alone reaches the 34.00 paid
    event(studio, sale, 2400, refund_id="609190", own=2400)
    # then: the whole payment is back: the sale is refunded, every download revoked and every
    # credit reversed, once
    assert status_of(studio, sale) == "refunded"
    assert revoked(studio, sale) == [True]
    lines = lines_of(studio.org.pk, sale)
    assert refund_keys(studio.org.pk) == sorted(f"refund:{sale}:{line.pk}" for line in lines.values())
    drain_outbox()
    # and: the last e-mail tells the shopper the rest, not the whole again
    [told] = mail.outbox
    assert told.subject.startswith(f"Your payment to {studio.org.name} was refunded")
    assert "24.00 EUR of your payment" in told.body and "refunded the rest of your order" in told.body
    # and: the CSV counts the whole payment
    assert sales_csv_row(signed_in(studio.owner), sale)[3::9] == ["refunded", "34.00"]


def test_a_dashboard_refund_is_recorded_at_once_while_an_accepted_item_refund_awaits_landing(
    studio: StudioPeople, sale: str
) -> None:
    # given: the studio refunds the print (25.00) through Darkroom; the provider accepted it
    lines = lines_of(studio.org.pk, sale)
    printed = ask(studio, sale, [lines["print"].pk])
    drain_outbox(topics={"payment.refund_requested"})
    # when: 5.00 refunded in the provider's dashboard is announced before the print's refund
    made = sandbox_provider().refund(reference=f"sbx_{sale}", amount_minor=500, idempotency_key="dashboard-1")
    event(studio, sale, 500, refund_id=made.refund_id, own=500)
    # then: it is recorded at once (it names its refund, so it cannot be the print's)
    assert at_provider(studio, sale) == [(500, made.refund_id, True)]
    # when: the print's refund completes
    event(studio, sale, 2500, refund_id=fresh(printed).provider_refund_id, own=2500)
    # then: the print's refund lands; the sale stays paid (30.00 of 34.00 back)
    assert fresh(printed).landed_at is not None
    assert refund_keys(studio.org.pk) == [f"refund:{sale}:{lines['print'].pk}"]
    assert status_of(studio, sale) == "paid" and len(at_provider(studio, sale)) == 1


def test_the_studio_refunds_only_what_the_dashboard_left(studio: StudioPeople, sale: str) -> None:
    # given: 10.00 of the 34.00 was refunded in the provider's dashboard
    event(studio, sale, 1000, refund_id="re_dashboard", own=1000)
    lines = lines_of(studio.org.pk, sale)
    api = signed_in(studio.owner)
    url = f"/api/v1/checkouts/{sale}/refund"

    def refund(body: dict[str, Any]) -> Any:
        return api.post(url, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=new_key())

    # when: the studio refunds the print (25.00), more than the 24.00 left
    refused = refund({"lines": [lines["print"].pk]})
    # then: 409, naming what is left; nothing is written
    assert refused.status_code == 409 and refused.json()["type"].endswith("/refund-exceeds-payment")
    assert "24.00 EUR" in refused.json()["detail"]
    assert [r.reason for r in refunds_of(studio.org.pk, sale)] == ["provider_partial"]
    assert lines_of(studio.org.pk, sale)["print"].refund_id is None
    with pytest.raises(RefundExceedsPayment):
        ask(studio, sale, [lines["print"].pk])
    # when: the studio refunds everything instead (no lines): what is left of the payment
    whole = refund({})
    # then: the order's last items take the 24.00 left, not the 34.00 charged
    assert whole.status_code == 202, whole.content
    assert (whole.json()["reason"], whole.json()["amount_minor"]) == ("studio_partial", 2400)
    drain_outbox()
    with tenant_context(studio.org.pk):
        mine = Refund.objects.get(pk=whole.json()["id"])
    assert mine.status == "submitted"
    # and: once the provider confirms it, the sale is refunded
    event(studio, sale, 2400, refund_id=mine.provider_refund_id, own=2400)
    assert status_of(studio, sale) == "refunded"
    assert sales_csv_row(api, sale)[3::9] == ["refunded", "34.00"]


def test_a_refund_refused_before_the_dashboard_took_part_is_not_asked_again(studio: StudioPeople, sale: str) -> None:
    # given: the print's refund (25.00) was refused; then 10.00 went back in the dashboard
    lines = lines_of(studio.org.pk, sale)
    printed = ask(studio, sale, [lines["print"].pk])
    refused(printed)
    event(studio, sale, 1000, refund_id="re_dashboard", own=1000)
    # when: the studio asks for the print again
    with pytest.raises(RefundExceedsPayment, match=r"24\.00 EUR"):
        ask(studio, sale, [lines["print"].pk])
    # then: the refused refund stays refused, not re-queued for more than is left
    assert fresh(printed).status == Refund.Status.FAILED


# --- a refund overtaken by the whole payment coming back ---------------------------------------


def refund_print(studio: StudioPeople, sale: str) -> Refund:
    """The studio refunds the print (25.00); its provider call is not made yet."""
    return ask(studio, sale, [lines_of(studio.org.pk, sale)["print"].pk])


def test_a_refund_not_sent_yet_when_the_whole_payment_came_back_is_never_sent(studio: StudioPeople, sale: str) -> None:
    # given: the print's refund waits for its provider call; the studio refunds everything in the
    # dashboard meanwhile, and that webhook is processed first
    pending = refund_print(studio, sale)
    dashboard_refunds_everything(sale)
    drain_outbox(topics={"webhook.received"})
    assert status_of(studio, sale) == "refunded"
    # when: the print's refund message is handled
    drain_outbox(topics={"payment.refund_requested"})
    # then: the provider is not asked (no attempt, no error) and the refund is not needed
    pending = fresh(pending)
    assert (pending.status, pending.attempts, pending.last_error) == ("not_needed", 0, "")
    assert pending.landed_at is not None


def test_a_refund_refused_because_the_payment_came_back_stops_alerting(studio: StudioPeople, sale: str) -> None:
    # given: the dashboard refunded everything, and the print's refund call went first: the
    # provider refuses it (nothing left to refund), so it is `failed`
    pending = refund_print(studio, sale)
    dashboard_refunds_everything(sale)
    drain_outbox(topics={"payment.refund_requested"})
    refusal = fresh(pending)
    assert refusal.status == "failed" and "exceeds" in refusal.last_error
    # when: the dashboard's webhook is processed: the whole payment is back
    drain_outbox()
    # then: the refused refund is moot: `not_needed`, keeping why the provider refused it, and
    # no longer counted as failed
    moot = fresh(pending)
    assert (moot.status, moot.last_error) == ("not_needed", refusal.last_error)
    assert status_of(studio, sale) == "refunded"
    with system_context("test"):
        assert not Refund.objects.filter(status=Refund.Status.FAILED).exists()
    # and: the sale page says why it is not needed
    page = text(signed_in(studio.owner).get(f"/studio/sales/{sale}/"))
    assert "Not needed: the whole payment came back otherwise" in page


def test_everything_left_supersedes_a_refused_refund_that_no_longer_fits(studio: StudioPeople, sale: str) -> None:
    # given: the print's refund (25.00) was refused; then 20.00 went back in the dashboard, so
    # 14.00 is left and the print's 25.00 no longer fits, nor is it the order's last item
    lines = lines_of(studio.org.pk, sale)
    printed = ask(studio, sale, [lines["print"].pk])
    refused(printed)
    event(studio, sale, 2000, refund_id="re_dashboard", own=2000)
    with pytest.raises(RefundExceedsPayment, match=r"Refund every item left at once"):
        ask(studio, sale, [lines["print"].pk])
    # when: the studio refunds everything left (no items named)
    rest = ask(studio, sale, None)
    # then: one refund of both items for the 14.00 left, under a new key; the refused one is
    # superseded (not needed any more), keeping why it was refused
    assert (rest.reason, rest.amount_minor) == ("studio_partial", 1400)
    assert rest.idempotency_key != printed.idempotency_key
    assert {line.refund_id for line in lines_of(studio.org.pk, sale).values()} == {rest.pk}
    superseded = fresh(printed)
    assert (superseded.status, superseded.last_error) == ("not_needed", "insufficient funds")
    # and: once the provider confirms it, the sale is refunded
    drain_outbox(topics={"payment.refund_requested"})
    event(studio, sale, 1400, refund_id=fresh(rest).provider_refund_id, own=1400)
    assert status_of(studio, sale) == "refunded"


# --- a dashboard refund racing the studio's own refunds -------------------------------------


def refused_print_then_dashboard_then_download(studio: StudioPeople, checkout_id: str) -> dict[str, Any]:
    """The studio refunds 10.00 in the sandbox's dashboard (its webhook is late); meanwhile it
    refunds the print (25.00) through Darkroom, which the sandbox refuses (10.00 + 25.00 is more
    than the 34.00 paid); then the dashboard's webhook arrives, and the studio refunds the download
    (9.00), which the sandbox makes. 34.00 - 10.00 - 9.00 = 15.00 of the payment is left at the
    provider, and only the print is not refunded."""
    reference = f"sbx_{checkout_id}"
    provider = sandbox_provider()
    made = provider.refund(reference=reference, amount_minor=1000, idempotency_key="dashboard-1")
    dashboard_event = provider.refunded_event(reference=reference, refund_id=made.refund_id)
    lines = lines_of(studio.org.pk, checkout_id)
    printed = ask(studio, checkout_id, [lines["print"].pk])
    drain_outbox(topics={"payment.refund_requested"})
    assert deliver([dashboard_event]) == [200]
    drain_outbox()
    download = ask(studio, checkout_id, [lines["download"].pk])
    assert download.amount_minor == 900
    drain_outbox(topics={"payment.refund_requested"})
    with tenant_context(studio.org.pk):
        download = Refund.objects.get(pk=download.pk)
        printed = Refund.objects.get(pk=printed.pk)
    assert deliver([provider.refunded_event(reference=reference, refund_id=download.provider_refund_id)]) == [200]
    drain_outbox()
    assert printed.status == Refund.Status.FAILED and "exceeds the payment" in printed.last_error
    assert at_provider(studio, checkout_id) == [(1000, made.refund_id, True)]
    assert [r.landed_at is not None for r in refunds_of(studio.org.pk, checkout_id) if r.pk == download.pk] == [True]
    return {"lines": lines, "printed": printed, "download": download}


def test_the_rest_of_the_payment_can_still_be_refunded_once_a_refused_refund_no_longer_fits(
    studio: StudioPeople, sale: str
) -> None:
    # given: 10.00 refunded in the dashboard, 9.00 (the download) through Darkroom; the print's
    # refund (25.00) was refused; 15.00 of the payment is left
    given = refused_print_then_dashboard_then_download(studio, sale)
    lines = given["lines"]
    # when: the studio asks for the print again (the order's last item), or for everything left,
    # as the 409 says ("Refund the order's last items, which take what is left")
    made, answers = ask_each(studio, sale, [lines["print"].pk], None)
    # then: one of them asks the provider for the 15.00 left (the print's 25.00 no longer fits)
    assert [r.amount_minor for r in made][:1] == [1500], (
        "15.00 EUR of the shopper's payment can never be refunded through Darkroom: " + " | ".join(answers)
    )


def test_the_sale_page_offers_the_item_left_at_what_its_refund_form_gives_back(studio: StudioPeople, sale: str) -> None:
    # given: as above, 15.00 of the payment left and only the print (refused refund) not refunded
    given = refused_print_then_dashboard_then_download(studio, sale)
    owner = signed_in(studio.owner)
    page = owner.get(f"/studio/sales/{sale}/")
    promised = re.search(r"([0-9.]+ EUR) goes back to the buyer", text(page))
    # then: the page offers the print for what is left of the payment
    assert promised is not None, "the page names no item left to refund"
    assert promised.group(1) == "15.00 EUR", f"the page promises {promised.group(0)!r}; 15.00 EUR is left"
    # and: its form does what the page says
    action = f"/studio/sales/{sale}/refund"
    posted = owner.post(
        action,
        {"nonce": form_nonce_on(page, action), "confirm": "on", "lines": [str(given["lines"]["print"].pk)]},
    )
    assert posted.status_code == 303, text(posted)


# --- 2. a dashboard refund seen while a whole refund awaited the provider ---------------------


def test_a_dashboard_refund_seen_while_a_whole_refund_was_asked_is_recorded_once_that_refund_is_refused(
    studio: StudioPeople, sale: str
) -> None:
    # given: the studio refunds 10.00 in the provider's dashboard, and asks Darkroom to refund the
    # whole order (34.00) before Darkroom heard of it; that refund's provider call has not run yet
    made = sandbox_provider().refund(reference=f"sbx_{sale}", amount_minor=1000, idempotency_key="dashboard-1")
    whole = ask(studio, sale, None)
    assert (whole.reason, whole.amount_minor, whole.status) == ("studio", 3400, "requested")
    # when: the provider's event for the dashboard part arrives
    retried = False
    try:
        event(studio, sale, 1000, refund_id=made.refund_id, own=1000)
    except RefundNotRecordedYet:
        retried = True  # the consumer, then the stale-event sweep, applies it again later
    # and: the provider refuses the whole refund (only 24.00 of the charge is left to refund)
    drain_outbox(topics={"payment.refund_requested"})
    with tenant_context(studio.org.pk):
        assert Refund.objects.get(pk=whole.pk).status == Refund.Status.FAILED
    if retried:
        event(studio, sale, 1000, refund_id=made.refund_id, own=1000)
    # then: the 10.00 refunded in the dashboard is recorded, and the CSV counts it
    assert at_provider(studio, sale) == [(1000, made.refund_id, True)], "the dashboard's 10.00 is never recorded"
    assert sales_csv_row(signed_in(studio.owner), sale)[3::9] == ["paid", "10.00"]


# --- 3. a dashboard refund announced before the payment ------------------------------------------


def test_a_dashboard_refund_announced_before_the_payment_is_recorded_once_the_payment_is(
    studio: StudioPeople,
) -> None:
    # given: a shopper paid 34.00 at the provider, whose "paid" event has not been applied yet
    shop = make_shop(org=studio.org)
    checkout_id = sold(studio, shop, {"product": shop.download.pk}, {"product": shop.print.pk}, pay=False)
    paid = sandbox_paid(checkout_id)
    # and: the studio refunded 10.00 of it in the provider's dashboard at once
    made = sandbox_provider().refund(reference=f"sbx_{checkout_id}", amount_minor=1000, idempotency_key="dash")
    refunded = sandbox_provider().refunded_event(reference=f"sbx_{checkout_id}", refund_id=made.refund_id)
    # when: the refund's event is applied first, and only then the payment's
    assert deliver([refunded]) == [200]
    with pytest.raises(RefundNotRecordedYet):  # the consumer tries again later
        drain_outbox(topics={"webhook.received"})
    assert (status_of(studio, checkout_id), at_provider(studio, checkout_id)) == ("awaiting_payment", [])
    assert deliver([paid]) == [200]
    drain_outbox()
    with system_context("test"):  # past the consumer's retries, the stale-event sweep
        webhook_events_requeue_stale(older_than_seconds=0)
    drain_outbox()
    # then: the sale is paid, and the dashboard's 10.00 is recorded, once
    assert status_of(studio, checkout_id) == "paid"
    assert at_provider(studio, checkout_id) == [(1000, made.refund_id, True)]


def test_a_dashboard_refund_announced_before_a_late_payment_is_recorded(tenant_a, shop_a) -> None:
    # given: a checkout that expired unpaid in Darkroom, and the shopper paid at the provider
    # anyway; the "paid" event has not been applied yet
    checkout = open_checkout(tenant_a, shop_a, *shop_lines(shop_a, {"product": "print", "quantity": 2}))
    assert checkouts_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    paid = sandbox_paid(str(checkout.pk))
    reference = f"sbx_{checkout.pk}"
    # and: the studio refunded 10.00 of it in the provider's dashboard at once
    made = sandbox_provider().refund(reference=reference, amount_minor=1000, idempotency_key="dashboard-1")
    refunded = sandbox_provider().refunded_event(reference=reference, refund_id=made.refund_id)
    # when: the refund's event is applied first (the transaction is `expired`, not `pending`),
    # then the payment's, then the stale-event sweep runs
    assert deliver([refunded]) == [200]
    with pytest.raises(RefundNotRecordedYet):  # the consumer tries again later
        drain_outbox(topics={"webhook.received"})
    assert deliver([paid]) == [200]
    drain_outbox()
    with system_context("test"):
        webhook_events_requeue_stale(older_than_seconds=0)
    drain_outbox()
    # then: the dashboard's 10.00 is recorded (the late payment's whole refund, refused by the
    # provider since part of it went back, is not all that is left of it)
    with tenant_context(tenant_a.org.pk):
        parts = list(Refund.objects.filter(reason="provider_partial").values_list("amount_minor", flat=True))
    assert parts == [1000], "a dashboard refund announced before a late payment's 'paid' event is dropped for good"
