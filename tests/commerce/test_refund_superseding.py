"""Refunds that owe nothing any more (`not_needed`): overtaken by the whole payment coming back,
or refused and superseded by a new refund of their items. A superseded refund takes nothing
from what is left of the payment, hides no Stripe total, blocks no later refund, lends its key
to no other refund, is never sent or overwritten by a late provider call, and the sale page says
what it is (real Postgres and Redis, the sandbox playing the provider)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import IntegrityError

from apps.commerce.models import CheckoutLine, Refund
from apps.commerce.services import payment as payment_service
from apps.commerce.services.payment import refund_retry, refund_submit
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.fixtures import empty_broker, row_lock_strategy  # noqa: F401 - fixtures by name
from tests.commerce.helpers import deliver, drain_outbox, sandbox_provider
from tests.commerce.refunds import ask, ask_each, at_provider, confirmed, event, fresh, refused, status_of
from tests.web.studio.conftest import StudioPeople, signed_in, text
from tests.web.studio.test_sale_refund_items import lines_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]


def by_pk(studio: StudioPeople, checkout_id: str) -> list[CheckoutLine]:
    with tenant_context(studio.org.pk):
        return list(CheckoutLine.objects.filter(checkout_id=checkout_id).order_by("pk"))


def refund_rows(page: str) -> list[str]:
    """The sale page's refunds table, one text per row (tags stripped)."""
    table = page.split('id="refunds"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)[1:]  # the header row first
    return [" ".join(re.sub(r"<[^>]+>", " ", row).split()) for row in rows]


# --- a superseded refund takes nothing from what is left -----------------------------------


def refused_download_superseded_by_a_refused_everything(studio: StudioPeople, sale: str) -> tuple[Refund, Refund]:
    """The download's refund (9.00) is refused; the studio refunds everything left instead (a
    34.00 refund of both items supersedes it), and the provider refuses that too. Nothing of the
    34.00 paid went back."""
    lines = lines_of(studio.org.pk, sale)
    first = ask(studio, sale, [lines["download"].pk])
    refused(first)
    everything = ask(studio, sale, None)
    assert (everything.amount_minor, fresh(first).status) == (3400, "not_needed")
    refused(everything)
    return first, everything


def test_everything_left_asked_again_gives_back_the_whole_payment_after_a_superseded_refund(
    studio: StudioPeople, sale: str
) -> None:
    # given: nothing went back of the 34.00: the download's refund (9.00) was refused and
    # superseded, and the refund of everything (34.00) that superseded it was refused too
    refused_download_superseded_by_a_refused_everything(studio, sale)
    # when: the studio (balance topped up) refunds everything left again
    again = ask(studio, sale, None)
    # then: it asks the provider for the whole 34.00; the superseded 9.00 never went anywhere
    assert again.amount_minor == 3400, (
        f"asks for {again.amount_minor}: the superseded (not_needed) 9.00 is counted as taken from the payment, "
        "and once this refund lands every item is refunded, so the 9.00 can never be given back"
    )


def test_the_admin_retry_of_a_refused_refund_that_superseded_another_is_not_skipped(
    studio: StudioPeople, sale: str
) -> None:
    # given: as above; the refund of everything (34.00) was refused, the download's (9.00) is
    # not_needed, and nothing of the payment went back
    _, everything = refused_download_superseded_by_a_refused_everything(studio, sale)
    # when: an operator fixes the cause and runs the admin's "Retry the selected failed refunds"
    with system_context("test admin"):
        retried = refund_retry(refund_id=everything.pk, actor_label="admin:ops")
    # then: it is queued again (the runbook's step), not skipped as "more than is left"
    assert retried and fresh(everything).status == "requested", (
        "skipped: the superseded 9.00 (not_needed) is counted with the 34.00 as more than was charged"
    )


# --- a superseded refund puts off no dashboard refund ------------------------------------------


def test_a_dashboard_refund_is_recorded_after_a_refund_was_superseded(studio: StudioPeople, sale3: str) -> None:
    # given: the first download's refund (9.00) was refused; the studio refunded both downloads
    # (18.00) instead, which superseded it, and that refund landed; the print is not refunded
    first_download, second_download, _print = by_pk(studio, sale3)
    first = ask(studio, sale3, [first_download.pk])
    refused(first)
    both = ask(studio, sale3, [first_download.pk, second_download.pk])
    assert (both.amount_minor, fresh(first).status) == (1800, "not_needed")
    confirmed(both, sale3)
    assert fresh(both).landed_at is not None and status_of(studio, sale3) == "paid"
    # when: 10.00 more is refunded in the provider's dashboard, and its event arrives
    made = sandbox_provider().refund(reference=f"sbx_{sale3}", amount_minor=1000, idempotency_key="dashboard-1")
    outcome = event(studio, sale3, 1000, refund_id=made.refund_id, own=1000)
    # then: the 10.00 nothing of Darkroom's explains is recorded (no refund awaits an answer)
    assert at_provider(studio, sale3) == [(1000, made.refund_id, True)], (
        f"not recorded ({outcome}): the superseded refund (not_needed, never landed) counts as a refund "
        "that awaits the provider's answer, so the dashboard's refund is put off for ever"
    )


# --- a superseded whole-order refund blocks no later item refund -------------------------


def test_a_refused_last_items_refund_can_be_asked_again_after_it_superseded_the_whole_order_refund(
    studio: StudioPeople, sale: str
) -> None:
    # given: the whole order's refund (34.00) was refused; the studio refunded the download
    # (9.00), then the print, the order's last item (25.00), which superseded the refused whole
    # refund; the provider refused the print's refund
    lines = lines_of(studio.org.pk, sale)
    whole = ask(studio, sale, None)
    assert (whole.reason, whole.amount_minor) == ("studio", 3400)
    refused(whole)
    assert ask(studio, sale, [lines["download"].pk]).amount_minor == 900
    printed = ask(studio, sale, [lines["print"].pk])
    assert (printed.amount_minor, fresh(whole).status) == (2500, "not_needed")
    refused(printed)
    # then: the sale page offers the print
    page = text(signed_in(studio.owner).get(f"/studio/sales/{sale}/"))
    assert f'value="{lines["print"].pk}"' in page or "Refund the item left" in page
    # when: the studio asks for the print again, as the README says it can
    made, answers = ask_each(studio, sale, [lines["print"].pk], None)
    # then: the print's refund is asked again (25.00 of the payment is still owed)
    assert [r.pk for r in made][:1] == [printed.pk], "the 25.00 can never be refunded: " + " | ".join(answers)


# --- a line freed by superseding gets a key of its own --------------------------------------


def test_an_item_freed_by_superseding_can_be_refunded_on_its_own(studio: StudioPeople, sale3: str) -> None:
    # given: the refund of both downloads (18.00, key items:<first download's line>) was refused;
    # the studio refunded the second download alone instead, which superseded it and freed the
    # first download
    first_download, second_download, _print = by_pk(studio, sale3)
    first = ask(studio, sale3, [first_download.pk, second_download.pk])
    assert first.idempotency_key == f"refund:{sale3}:items:{first_download.pk}"
    refused(first)
    alone = ask(studio, sale3, [second_download.pk])
    assert (alone.amount_minor, fresh(first).status) == (900, "not_needed")
    assert by_pk(studio, sale3)[0].refund_id is None
    # when: the studio refunds the first download on its own
    try:
        mine = ask(studio, sale3, [first_download.pk])
    except IntegrityError as exc:
        pytest.fail(f"the freed download's refund takes the superseded refund's provider key: {exc}")
    # then: a 9.00 refund under a key the provider never saw
    assert mine.amount_minor == 900
    assert mine.idempotency_key != first.idempotency_key


# --- a late provider call writes nothing over a status changed meanwhile -------------------


def test_a_refused_refund_superseded_while_a_late_message_sends_it_stays_superseded(
    studio: StudioPeople, sale3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the first download's refund (9.00) was refused; its message is delivered again (the
    # broker's at-least-once redelivery: the worker died before acking it) and reaches the
    # provider call, and while that call runs the studio refunds both downloads (18.00), which
    # supersedes it (a refund_submit that does not call the provider has the studio act after it)
    first_download, second_download, _print = by_pk(studio, sale3)
    first = ask(studio, sale3, [first_download.pk])
    refused(first)
    real = payment_service.get_provider("sandbox")
    competitor: list[Refund] = []

    class StudioActsDuringTheCall:
        def refund(self, **kwargs: Any) -> Any:
            competitor.append(ask(studio, sale3, [first_download.pk, second_download.pk]))
            return real.refund(**kwargs)

    monkeypatch.setattr(payment_service, "get_provider", lambda name: StudioActsDuringTheCall())
    with tenant_context(studio.org.pk):
        refund_submit(refund_id=first.pk)
    monkeypatch.undo()
    if not competitor:
        competitor.append(ask(studio, sale3, [first_download.pk, second_download.pk]))
    # then: the superseded refund stays not_needed, and the provider did not refund the first
    # download on its own: it is the new refund's alone
    [both] = competitor
    at_sandbox = [(r["idempotency_key"], r["amount_minor"]) for r in sandbox_provider()._refunds(f"sbx_{sale3}")]
    assert fresh(both).status == "requested"
    assert (fresh(first).status, at_sandbox) == ("not_needed", []), (
        f"the superseded refund turned {fresh(first).status!r} (the provider refunded {at_sandbox}) while its "
        f"download is in refund {both.pk}, which will refund it again"
    )


# --- the sale page tells what a superseded refund is ----------------------------------------


def test_the_sale_page_does_not_say_a_superseded_refund_was_confirmed_or_the_payment_back(
    studio: StudioPeople, sale: str
) -> None:
    # given: the download's refund (9.00) was refused and superseded by a refund of everything
    lines = lines_of(studio.org.pk, sale)
    first = ask(studio, sale, [lines["download"].pk])
    refused(first)
    everything = ask(studio, sale, None)
    owner = signed_in(studio.owner)
    [while_paid, _] = refund_rows(text(owner.get(f"/studio/sales/{sale}/")))
    # when: the refund of everything lands (the whole payment is back)
    confirmed(everything, sale)
    assert status_of(studio, sale) == "refunded"
    [once_refunded, _] = refund_rows(text(owner.get(f"/studio/sales/{sale}/")))
    # then: while nothing went back, the superseded row does not say the payment was back; once
    # the refund of everything landed, the superseded refund (never sent) is not shown as
    # confirmed by the provider, nor recorded as landed
    assert "9.00 EUR" in while_paid
    said = {"while paid": while_paid, "once refunded": once_refunded, "landed_at": str(fresh(first).landed_at)}
    assert "payment was back already" not in while_paid and "confirmed it" not in once_refunded, said
    assert fresh(first).landed_at is None, said
    # and: it names why, before and after, and the refund that superseded it
    superseded = "Not needed: its items were asked for again in a later refund"
    assert superseded in while_paid and superseded in once_refunded, said
    assert fresh(first).superseded_by_id == everything.pk


# --- an item of a refused refund made moot reads refunded -----------------------------------


def test_an_item_of_a_refund_refused_then_moot_does_not_read_refund_asked(studio: StudioPeople, sale: str) -> None:
    # given: the print's refund (25.00) was refused; then the whole 34.00 was refunded in the
    # provider's dashboard, so that refund turned not_needed
    lines = lines_of(studio.org.pk, sale)
    printed = ask(studio, sale, [lines["print"].pk])
    refused(printed)
    made = sandbox_provider().refund(reference=f"sbx_{sale}", amount_minor=3400, idempotency_key="dashboard-all")
    assert deliver([sandbox_provider().refunded_event(reference=f"sbx_{sale}", refund_id=made.refund_id)]) == [200]
    drain_outbox()
    assert (status_of(studio, sale), fresh(printed).status) == ("refunded", "not_needed")
    # when: the studio opens the sale
    page = text(signed_in(studio.owner).get(f"/studio/sales/{sale}/"))
    # then: no item of the refunded sale says its refund is still being asked
    items = page.split('id="refunds"', 1)[0]
    assert "Refund asked" not in items, re.findall(r"<tr>.*?</tr>", items, re.S)
