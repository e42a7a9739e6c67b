"""What the shopper is told after a refund, by the items it gave back (user walk): the order page
and the refund e-mails (sent by the outbox consumer, as a worker sends them) say downloads stop
working only when the refunded items include a download, and of refunded prints what Darkroom
does: a print refunded before the order was marked shipped is not sent (a print under a refund
is not among what ships, `CheckoutLine.TO_SHIP`), one refunded after it was shipped had already
gone. An order whose payment failed, or that expired unpaid, reads its items "Not bought"
(prints "Released"), not "Confirmed"; the studio's sale pages do not list such an order (real
Postgres and Redis; the sandbox plays the provider)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

from apps.commerce.services import checkouts_expire_due
from apps.commerce.services.fulfilment import checkout_mark_shipped
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.fixtures import empty_broker, row_lock_strategy  # noqa: F401 - fixtures by name
from tests.commerce.helpers import deliver, drain_outbox, sandbox_failed
from tests.commerce.refunds import ask, confirmed, fresh, refused, status_of
from tests.commerce.test_refund_failed_shopper_told import item_states, order_page, plain
from tests.factories.commerce import make_shop
from tests.web.studio.conftest import StudioPeople, signed_in, sold
from tests.web.studio.test_sale_refund_items import lines_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]

DOWNLOADS_STOP = "no longer work"


def refunded_mail() -> Any:
    """The one e-mail sent since the outbox was last emptied."""
    [told] = mail.outbox
    mail.outbox.clear()
    return told


def refund_landed(studio: StudioPeople, sale: str, line_ids: list[int] | None) -> None:
    """The studio refunds these lines (None: the whole order); the sandbox makes the refund and
    its webhook lands it; the shopper's e-mail goes out through the outbox consumer."""
    mail.outbox.clear()
    confirmed(ask(studio, sale, line_ids), sale)
    drain_outbox()


def shipped(studio: StudioPeople, sale: str) -> None:
    with tenant_context(studio.org.pk), transaction.atomic():
        checkout_mark_shipped(tenant_id=studio.org.pk, checkout_id=sale, carrier="Post", actor=None)
    drain_outbox()
    mail.outbox.clear()


def paragraph(page: str, start: str) -> str:
    """The order page's sentence group starting with `start`, as a reader hears it."""
    said = plain(page)
    assert start in said, said
    return said.split(start, 1)[1].split("</p>", 1)[0]


def test_a_print_refunded_before_shipping_is_said_not_to_be_sent_and_no_download_is_said_to_stop(
    studio: StudioPeople,
) -> None:
    # given: a paid order of a download (9.00) and two A4 prints (2 x 25.00), not shipped
    shop = make_shop(org=studio.org)
    sale = sold(studio, shop, {"product": shop.download.pk}, {"product": shop.print.pk, "quantity": 2})
    # when: the studio refunds the prints and the provider confirms it
    refund_landed(studio, sale, [lines_of(studio.org.pk, sale)["print"].pk])
    # then: the e-mail says the prints will not be sent, and nothing of downloads stopping
    told = refunded_mail()
    assert "50.00 EUR of your payment" in told.body
    assert "The refunded prints will not be sent; the rest of your order is yours as before." in told.body
    assert DOWNLOADS_STOP not in told.body and "Downloads" not in told.body
    # and: so does the order page, whose download still works
    page = order_page(studio, sale)
    said = plain(page)
    assert (
        f"The studio refunded the items marked refunded: 50.00 EUR for Print A4, photo {shop.photo.pk} (quantity 2). "
        "The refunded prints will not be sent; the rest of the order is yours as before." in said
    ), said
    assert DOWNLOADS_STOP not in said and f"Download photo {shop.photo.pk} (original)" in said


def test_a_print_refunded_after_it_was_shipped_is_said_to_have_been_shipped(studio: StudioPeople) -> None:
    # given: a paid order of a download and an A4 print, marked shipped
    shop = make_shop(org=studio.org)
    sale = sold(studio, shop, {"product": shop.download.pk}, {"product": shop.print.pk})
    shipped(studio, sale)
    # when: the studio then refunds the print
    refund_landed(studio, sale, [lines_of(studio.org.pk, sale)["print"].pk])
    # then: the e-mail and the page say it had already been shipped, not that it will not be sent
    told = refunded_mail()
    assert "The refunded print had already been shipped; the rest of your order is yours as before." in told.body
    assert "will not be sent" not in told.body and DOWNLOADS_STOP not in told.body
    said = plain(order_page(studio, sale))
    assert "The refunded print had already been shipped; the rest of the order is yours as before." in said, said
    assert DOWNLOADS_STOP not in said and "will not be sent" not in said


def test_a_refunded_download_is_still_said_to_stop_working(studio: StudioPeople) -> None:
    # given: a paid order of a download and an A4 print
    shop = make_shop(org=studio.org)
    sale = sold(studio, shop, {"product": shop.download.pk}, {"product": shop.print.pk})
    # when: the studio refunds the download
    refund_landed(studio, sale, [lines_of(studio.org.pk, sale)["download"].pk])
    # then: the download is said to stop, and no print is spoken of
    told = refunded_mail()
    assert "The refunded download no longer works; the rest of your order is yours as before." in told.body
    assert "print" not in told.body.lower().replace("print a4 of photo", "")
    said = plain(order_page(studio, sale))
    assert "The refunded download no longer works; the rest of the order is yours as before." in said, said
    # when: the studio then refunds the print, the order's last item (the whole payment is back)
    refund_landed(studio, sale, [lines_of(studio.org.pk, sale)["print"].pk])
    # then: that e-mail is about the print alone: no download stops with it
    told = refunded_mail()
    assert told.subject.startswith(f"Your payment to {studio.org.name} was refunded")
    assert "The refunded print will not be sent." in told.body and DOWNLOADS_STOP not in told.body


def test_a_prints_only_order_refunded_whole_says_nothing_of_downloads(studio: StudioPeople) -> None:
    # given: a paid order of two A4 prints, not shipped
    shop = make_shop(org=studio.org)
    sale = sold(studio, shop, {"product": shop.print.pk, "quantity": 2})
    # when: the studio refunds the whole order
    refund_landed(studio, sale, None)
    # then: the e-mail says the prints will not be sent, and nothing of downloads
    told = refunded_mail()
    assert told.subject.startswith(f"Your payment to {studio.org.name} was refunded")
    assert "The refunded prints will not be sent." in told.body
    assert DOWNLOADS_STOP not in told.body and "Downloads" not in told.body
    said = plain(order_page(studio, sale))
    assert "went back to you." in said and DOWNLOADS_STOP not in said


def test_a_print_refund_paid_back_outside_the_provider_says_nothing_of_downloads(studio: StudioPeople) -> None:
    # given: a paid order of a download and an A4 print; the studio refunds the print and the
    # provider refuses it
    shop = make_shop(org=studio.org)
    sale = sold(studio, shop, {"product": shop.download.pk}, {"product": shop.print.pk})
    refund = ask(studio, sale, [lines_of(studio.org.pk, sale)["print"].pk])
    refused(refund)
    mail.outbox.clear()
    # when: an operator pays the shopper back by transfer and records it
    from apps.commerce.services.payment import refund_settle_outside

    with system_context("test"):
        refund_settle_outside(refund_id=refund.pk, note="Transfer DR-1", actor_label="test")
    drain_outbox()
    # then: the e-mail says it was paid back directly, and that the print will not be sent
    told = refunded_mail()
    assert fresh(refund).status == "settled"
    assert "paid this back to you directly" in told.body
    assert "The refunded print will not be sent; the rest of your order is yours as before." in told.body
    assert DOWNLOADS_STOP not in told.body


# --- an order not bought --------------------------------------------------------------------


def test_the_items_of_a_failed_or_expired_order_read_not_bought(studio: StudioPeople) -> None:
    shop = make_shop(org=studio.org)
    # given: an order of a download and an A4 print whose payment failed, and one left to expire
    failed = sold(studio, shop, {"product": shop.download.pk}, {"product": shop.print.pk}, pay=False)
    assert deliver([sandbox_failed(failed)]) == [200]
    drain_outbox()
    expired = sold(studio, shop, {"product": shop.bulk.pk}, {"product": shop.print.pk}, pay=False)
    assert checkouts_expire_due(now=timezone.now() + timedelta(hours=1)) == 1
    assert (status_of(studio, failed), status_of(studio, expired)) == ("failed", "expired")
    # then: the shopper's page reads the download "Not bought" and the print "Released"
    assert item_states(order_page(studio, failed)) == {"Digital download": "Not bought", "Print A4": "Released"}
    assert item_states(order_page(studio, expired)) == {
        "All photos of this event (downloads)": "Not bought",
        "Print A4": "Released",
    }
    # and: the studio's sale pages list paid and refunded sales only: neither order is one
    owner = signed_in(studio.owner)
    assert [owner.get(f"/studio/sales/{sale}/").status_code for sale in (failed, expired)] == [404, 404]
