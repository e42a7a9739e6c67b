"""Refunds paid back outside the provider, in every order with the provider's refund events and
failures after landing: a dashboard refund of the rest after a settle refunds the order; a
refund owed stays owed unless the refunds that gave money back add up to the payment; settling
the owed refund that completes the payment refunds the order; and the shopper's e-mail of a
settle says what it gave back whatever arrives later; a stale provider total (the cumulative
total of an event made before another refund failed) neither writes off nor tells as given back
the refund still owed, and is not taken for a double refund; a whole refund in the provider's
dashboard covers it (real Postgres and Redis; the sandbox plays the provider). Sale: a download
(9.00) and a print (25.00), 34.00 paid.
"""

from __future__ import annotations

import logging
import re

import pytest
from django.core import mail

from apps.commerce.errors import RefundNotSettleable
from apps.commerce.models import Refund
from tests.commerce.helpers import deliver, drain_outbox, sandbox_provider
from tests.commerce.refunds import (
    ask,
    confirmed,
    dashboard_refund,
    dashboard_refunds_everything,
    event,
    fresh,
    refused,
    status_of,
)
from tests.commerce.test_refund_failed_at_provider import (
    lines_of,
    provider_says_failed,
    refund_keys,
    submitted,
)
from tests.commerce.test_refund_settled_outside import given_back_minor, settle, txn_status
from tests.web.studio.conftest import StudioPeople

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]


def dashboard_refund_processed(sale: str, amount_minor: int, *, process_all: bool = True) -> None:
    """`dashboard_refund`, its webhook processed (and, with `process_all`, every message it leads to)."""
    dashboard_refund(sale, amount_minor)
    drain_outbox(topics=None if process_all else {"webhook.received"})


def owed_download_and_print_made(studio: StudioPeople, sale: str) -> tuple[Refund, Refund]:
    """The download's refund (9.00) landed; the print's (25.00, what was left then) was made at
    the provider (34.00 refunded at that moment); the download's then failed there (card
    closed): 9.00 owed. Returns (download's refund, print's refund)."""
    lines = lines_of(studio, sale)
    download = submitted(studio, sale, [lines["download"]])
    confirmed(download, sale)
    printed = submitted(studio, sale, [lines["print"]])
    assert printed.amount_minor == 2500
    provider_says_failed(sale, fresh(download), reason="lost_or_stolen_card")
    assert fresh(download).still_owed
    return fresh(download), printed


def stale_event_lands(sale: str, printed: Refund) -> None:
    """The print's refund event, made before the download's failed (its cumulative total says
    34.00), delivered now (a delayed or retried webhook), and what it leads to."""
    announced = sandbox_provider().refunded_event(reference=f"sbx_{sale}", refund_id=printed.provider_refund_id)
    assert deliver([announced]) == [200]
    drain_outbox()


def test_a_dashboard_refund_of_the_rest_after_a_settled_item_refund_refunds_the_order(
    studio: StudioPeople, sale: str
) -> None:
    # given: the download's refund (9.00) was refused; the operator paid it by transfer and
    # recorded it (the download taken back, the shopper told); the order is paid still
    lines = lines_of(studio, sale)
    download = ask(studio, sale, [lines["download"]])
    refused(download)
    settle(download)
    drain_outbox()
    assert status_of(studio, sale) == "paid" and len(refund_keys(studio)) == 1
    mail.outbox.clear()
    # when: the studio refunds the rest (25.00) in the provider's dashboard: the shopper has now
    # got 9.00 by transfer and 25.00 through the provider, the whole 34.00, once
    dashboard_refund_processed(sale, 2500)
    # then: the payment is refunded whole at the provider, and the order with it: the print's
    # credit reversed, the shopper told of the 25.00 (no earlier e-mail said it)
    assert txn_status(studio, sale) == "refunded"
    assert status_of(studio, sale) == "refunded", "the order stays 'paid' although all 34.00 went back"
    assert len(refund_keys(studio)) == 2
    assert any("25.00 EUR" in m.body for m in mail.outbox), [m.body for m in mail.outbox]


def test_an_owed_refund_stays_owed_when_the_last_refund_was_sized_before_it_failed(
    studio: StudioPeople, sale: str
) -> None:
    # given: the download's refund landed, the print's (the rest then) was made, the download's
    # then failed at the provider: 9.00 owed
    download, printed = owed_download_and_print_made(studio, sale)
    mail.outbox.clear()
    # when: the print's refund event, made before the failure, is delivered after it
    stale_event_lands(sale, printed)
    # then: the provider gave back 25.00 (the 9.00 came back to the studio): the download's 9.00
    # is owed still, as before the print's refund landed, and the shopper is told it did not
    # reach them
    assert sandbox_provider().fetch_status(reference=f"sbx_{sale}").status != "refunded"
    owed = fresh(download)
    assert owed.status in Refund.OWED_STATUSES, f"9.00 owed turned {owed.status}: the shopper got 25.00 of 34.00"
    assert owed.still_owed
    assert any("did not reach you" in m.subject for m in mail.outbox), [m.subject for m in mail.outbox]


def test_settling_the_owed_refund_that_brings_the_whole_payment_back_refunds_the_order(
    studio: StudioPeople, sale: str
) -> None:
    # given: the download's refund (9.00) landed; the print's (25.00, the rest then) was made;
    # the download's then failed at the provider (9.00 owed)
    download, printed = owed_download_and_print_made(studio, sale)
    # and: the print's refund landed (its event names its own 25.00, as Stripe's refund events do)
    event(studio, sale, 2500, refund_id=printed.provider_refund_id, own=2500)
    drain_outbox()
    assert fresh(printed).landed_at is not None and status_of(studio, sale) == "paid"
    # when: the operator pays the 9.00 by transfer and records it
    settle(fresh(download))
    # then: every item is refunded and all 34.00 went back, so the order reads refunded, as it
    # does when the settle comes before the print's refund lands
    assert given_back_minor(studio, sale) == 3400
    assert status_of(studio, sale) == "refunded", "all 34.00 back, every item refunded, the order 'paid'"


def test_the_email_of_a_settle_that_completes_the_order_says_what_it_gave_back_after_a_later_dashboard_refund(
    studio: StudioPeople, sale: str
) -> None:
    # given: the download's refund (9.00) landed through the provider; the print's (25.00) was refused
    lines = lines_of(studio, sale)
    download = submitted(studio, sale, [lines["download"]])
    confirmed(download, sale)
    printed = ask(studio, sale, [lines["print"]])
    refused(printed)
    mail.outbox.clear()
    # and: the operator paid the 25.00 by transfer and recorded it (the order refunded); its
    # e-mail is not sent yet (the mail server is down; the message waits)
    settle(printed)
    assert status_of(studio, sale) == "refunded"
    # when: the studio, not knowing, also refunds 25.00 in the provider's dashboard, and then the
    # e-mail goes out
    dashboard_refund_processed(sale, 2500, process_all=False)
    drain_outbox()
    # then: the settle's e-mail says the 25.00 the studio paid back, not 0.00
    bodies = [m.body for m in mail.outbox]
    assert any("25.00 EUR of your payment" in b for b in bodies), bodies


_REFUNDED = re.compile(r"^(\d+\.\d\d) EUR of your payment", re.MULTILINE)


class Recorded(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def refunded_amounts() -> list[str]:
    """The amounts the shopper's "was refunded" e-mails say came back, in the order sent."""
    return [m for message in mail.outbox if "was refunded" in message.subject for m in _REFUNDED.findall(message.body)]


def test_the_shopper_is_not_told_an_owed_refund_came_back_when_a_stale_total_lands_the_last_one(
    studio: StudioPeople, sale: str
) -> None:
    # given: the download's refund (9.00) landed (the shopper e-mailed 9.00); the print's (25.00)
    # was made; the download's then failed (the shopper e-mailed that 9.00 did not reach them)
    download, printed = owed_download_and_print_made(studio, sale)
    drain_outbox()
    mail.outbox.clear()
    # when: the print's refund event, made before the failure (its total says 34.00), arrives
    stale_event_lands(sale, printed)
    # then: the download's 9.00 is owed still ...
    assert fresh(download).status in Refund.OWED_STATUSES
    # ... so the e-mail of the whole payment says the 25.00 the provider gave back, not 34.00
    # (the 9.00 it was just told did not reach it, to its card)
    assert refunded_amounts() == ["25.00"], [m.body for m in mail.outbox]


def test_settling_the_owed_refund_after_a_stale_total_tells_the_shopper_34_not_43(
    studio: StudioPeople, sale: str
) -> None:
    # given: as above: the print's 25.00 landed by its stale event (34.00), the download's 9.00 owed
    download, printed = owed_download_and_print_made(studio, sale)
    drain_outbox()
    mail.outbox.clear()
    stale_event_lands(sale, printed)
    # when: the operator pays the 9.00 by transfer and records it
    settle(fresh(download))
    drain_outbox()
    # then: since the failure, the shopper has been told of 34.00 in all (25.00 through the
    # provider, 9.00 directly), what they got, not 43.00 of a 34.00 payment
    told = refunded_amounts()
    total = sum(round(float(a) * 100) for a in told)
    assert total == 3400, (told, [m.body for m in mail.outbox])


def test_a_stale_event_of_the_last_refund_after_the_owed_one_was_settled_is_not_a_double_refund(
    studio: StudioPeople, sale: str
) -> None:
    # given: the download's refund (9.00) landed; the print's (25.00) was made; the download's
    # failed at the provider; the print's landed (its own 25.00); the operator paid the 9.00 by
    # transfer and recorded it: the order is refunded, 34.00 back (25.00 + 9.00), once each
    download, printed = owed_download_and_print_made(studio, sale)
    event(studio, sale, 2500, refund_id=printed.provider_refund_id, own=2500)
    drain_outbox()
    settle(fresh(download))
    drain_outbox()
    assert status_of(studio, sale) == "refunded"
    assert sandbox_provider().fetch_status(reference=f"sbx_{sale}").status != "refunded"
    # when: the provider's event for the print's refund, with the total it carried when made
    # (34.00), is delivered again (the provider refunded nothing more)
    # (a handler on the service's logger: the consumers' django.setup() replaces the root's,
    # caplog's among them)
    logged = Recorded()
    payment_log = logging.getLogger("darkroom.commerce.payment")
    payment_log.addHandler(logged)
    try:
        stale_event_lands(sale, printed)
    finally:
        payment_log.removeHandler(logged)
    # then: no alarm tells the operator the shopper got it twice (README: "ask for it back"):
    # the provider gave back 25.00, the transfer 9.00, and nothing more was refunded
    doubled = [r.getMessage() for r in logged.records if "got it twice" in r.getMessage()]
    assert doubled == [], doubled


def test_an_owed_refund_is_not_owed_once_the_whole_payment_is_refunded_in_the_providers_dashboard(
    studio: StudioPeople, sale: str
) -> None:
    # given: the download's refund (9.00) landed, then failed at the provider (card closed): the
    # provider has refunded nothing of the 34.00 now, and the 9.00 is owed
    lines = lines_of(studio, sale)
    download = submitted(studio, sale, [lines["download"]])
    confirmed(download, sale)
    provider_says_failed(sale, fresh(download), reason="lost_or_stolen_card")
    drain_outbox()
    assert fresh(download).still_owed
    # when: the studio refunds the whole 34.00 in the provider's dashboard (to another card the
    # shopper gave, say); the provider pays it and says so
    dashboard_refunds_everything(sale)
    drain_outbox()
    assert sandbox_provider().fetch_status(reference=f"sbx_{sale}").status == "refunded"
    assert status_of(studio, sale) == "refunded"
    # then: the shopper got all 34.00 through the provider, the 9.00 included: it is owed no more
    # (as when the order's last items' refund gives it back), and recording it paid back
    # by transfer too (9.00 paid twice, 43.00 of a 34.00 payment) is refused
    owed = fresh(download)
    assert not owed.still_owed, f"9.00 still owed ({owed.status}) after the provider refunded all 34.00"
    with pytest.raises(RefundNotSettleable):
        settle(owed)
