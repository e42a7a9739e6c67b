"""A refund that landed (the shopper was e-mailed "refunded", its items taken back) and then
failed at the provider (the shopper's card was closed: the money went back to the studio): the
failure's transaction writes one `refund.failed_after_landing` message, whose consumer e-mails
the shopper once that the money did not reach them and the studio will pay it back another way
(nothing once an operator recorded it paid back), and the shopper's order page says so until
then, and says when it was paid back after (real Postgres and Redis; the sandbox plays the
provider).
"""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone
from django.utils.dateformat import format as date_format

from apps.commerce.models import Checkout, Refund
from apps.commerce.order_links import order_link
from apps.commerce.services import refund_apply_provider_failure, refund_mail
from apps.commerce.services.payment import TOPIC_REFUND_FAILED_AFTER_LANDING, refund_settle_outside
from apps.commerce.services.refund_mail import REFUND_FAILED_MAIL_CONSUMER
from apps.outbox.models import InboxEntry, OutboxMessage
from apps.outbox.routing import resolve_route
from apps.tenancy.context import system_context, tenant_context
from config.celery_app import app as celery_app
from tests.commerce.helpers import deliver, drain_outbox, sandbox_provider
from tests.commerce.refunds import confirmed, dashboard_refund, fresh, late_payment_refund, refused, status_of
from tests.commerce.test_refund_failed_at_provider import lines_of, provider_says_failed, submitted, told_again
from tests.web.studio.conftest import StudioPeople

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]


def landed(studio: StudioPeople, sale: str, kind: str | None) -> Refund:
    """The studio's refund of the sale's `kind` line (None: the whole order), accepted by the
    provider and landed (the shopper e-mailed "refunded"); the mail outbox emptied after."""
    refund = submitted(studio, sale, [lines_of(studio, sale)[kind]] if kind else None)
    confirmed(refund, sale)
    assert fresh(refund).landed_at is not None
    mail.outbox.clear()
    return fresh(refund)


def told_messages(sale: str) -> list[OutboxMessage]:
    with system_context("test: read"):
        return list(OutboxMessage.objects.filter(topic=TOPIC_REFUND_FAILED_AFTER_LANDING, aggregate_id=sale))


def run_consumer(message: OutboxMessage) -> Any:
    """The message through its consumer task's own code, in its tenant's context, as a worker would."""
    task = celery_app.tasks[resolve_route(message.topic).task_name]
    with tenant_context(message.tenant_id):
        return task(message_id=str(message.pk), payload=message.payload)


def writing_transaction(table: str, pk: object) -> int:
    """The id of the transaction that last wrote a row (its `xmin`)."""
    with system_context("test: xmin"), connection.cursor() as cursor:
        cursor.execute(f"SELECT xmin::text::bigint FROM {table} WHERE id = %s", [pk])
        return int(cursor.fetchone()[0])


def order_page(studio: StudioPeople, sale: str) -> str:
    """The shopper's order page, opened through the order's signed link, as its text."""
    link = order_link(studio_slug=studio.org.slug, tenant_id=studio.org.pk, checkout_id=sale)
    response = Client().get(urlsplit(link).path, follow=True)
    assert response.status_code == 200
    return response.content.decode()


def plain(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def item_states(page: str) -> dict[str, str]:
    """The order page's items table: item label → its state cell."""
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr>\s*<th[^>]*>(.*?)</th>\s*<td[^>]*>.*?</td>\s*<td[^>]*>(.*?)</td>", body, re.S)
    return {plain(label).split(",")[0]: plain(state) for label, state in rows}


def heading(page: str) -> str:
    """The order's status heading."""
    match = re.search(r'<h2 id="status-heading">(.*?)</h2>', page, re.S)
    assert match, "no status heading"
    return plain(match[1])


class Interrupted(Exception):
    pass


# --- the message --------------------------------------------------------------------------------


def owed_then_last_item_refunded_through_the_provider(studio: StudioPeople, sale: str) -> Refund:
    """The download's refund (9.00) landed, then failed at the provider (card closed); the studio
    then refunded the print, the order's last item, which took what is left of the payment:
    34.00, the owed 9.00 included; the provider paid it and the order is refunded. Returns the
    download's refund."""
    lines = lines_of(studio, sale)
    download = submitted(studio, sale, [lines["download"]])
    confirmed(download, sale)
    provider_says_failed(sale, download, reason="lost_or_stolen_card")
    drain_outbox()
    printed = submitted(studio, sale, [lines["print"]])
    # the owed 9.00 goes back with it (README: "the order's last refund would give it back")
    assert printed.amount_minor == 3400
    confirmed(printed, sale)
    assert status_of(studio, sale) == "refunded"
    return fresh(download)


def test_a_landed_refund_that_fails_writes_one_message_in_the_failures_own_transaction(
    studio: StudioPeople, sale: str
) -> None:
    # given: the print's refund (25.00) landed
    refund = landed(studio, sale, "print")
    # when: the failure is applied, and its transaction rolls back (the webhook consumer failed later)
    with pytest.raises(Interrupted), tenant_context(studio.org.pk), transaction.atomic():
        refund_apply_provider_failure(
            tenant_id=studio.org.pk,
            checkout_id=sale,
            provider_refund_id=refund.provider_refund_id,
            reason="expired_or_canceled_card",
            source="test:rolled-back",
        )
        raise Interrupted
    # then: no message is left behind
    assert (told_messages(sale), fresh(refund).provider_failed_at) == ([], None)
    # when: the provider's failure event arrives and is processed, then a second event of the same failure
    provider_says_failed(sale, refund, reason="lost_or_stolen_card")
    assert "nothing to change" in told_again(studio, sale, refund, "lost_or_stolen_card")
    # then: one message, naming the checkout and the refund, written by the transaction that
    # marked the refund failed
    [message] = told_messages(sale)
    assert (message.aggregate_type, message.tenant_id) == ("checkout", studio.org.pk)
    assert message.payload == {"checkout_id": sale, "refund_id": refund.pk}
    assert fresh(refund).provider_failed_at is not None
    assert writing_transaction("outbox_outboxmessage", message.pk) == writing_transaction("commerce_refund", refund.pk)
    # and: its consumer is the e-mail task, on the notifications queue
    route = resolve_route(TOPIC_REFUND_FAILED_AFTER_LANDING)
    assert (route.task_name, route.queue) == (REFUND_FAILED_MAIL_CONSUMER, "notifications")


def test_a_refund_that_fails_before_it_landed_writes_no_message_and_sends_nothing(
    studio: StudioPeople, sale: str
) -> None:
    # given: the print's refund was accepted by the provider, not landed
    refund = submitted(studio, sale, [lines_of(studio, sale)["print"]])
    mail.outbox.clear()
    # when: the provider says it failed, and every message is consumed
    provider_says_failed(sale, refund)
    drain_outbox()
    # then: it is failed (an operator's), and the shopper, never told it was refunded, hears nothing
    assert fresh(refund).status == "failed"
    assert told_messages(sale) == []
    assert mail.outbox == []


# --- the e-mail ---------------------------------------------------------------------------------


def test_the_shopper_gets_one_email_saying_the_refund_did_not_reach_them_even_if_the_task_runs_twice(
    studio: StudioPeople, sale: str
) -> None:
    # given: the print's refund (25.00) landed, then failed at the provider
    refund = landed(studio, sale, "print")
    provider_says_failed(sale, refund)
    [message] = told_messages(sale)
    # when: its consumer runs, then runs again for the same message (a redelivery)
    first, second = run_consumer(message), run_consumer(message)
    # then: one e-mail, to the shopper, sent by the first run
    assert (first, second) == (True, False)
    [sent] = mail.outbox
    with tenant_context(studio.org.pk):
        shopper = Checkout.objects.get(pk=sale).email
    assert sent.to == [shopper]
    assert sent.subject == f"A refund from {studio.org.name} did not reach you ({sale[:8]})"
    # and: it says how much, that it did not reach them, that the studio pays it back another way
    # and gets in touch, and links the order
    body = " ".join(sent.body.split())
    assert "the refund of 25.00 EUR from" in body
    assert "did not reach your card or account" in body
    assert "The payment provider could not complete it and returned the money to" in body
    assert f"{studio.org.name} will pay it back to you another way and will get in touch with you" in body
    link = order_link(studio_slug=studio.org.slug, tenant_id=studio.org.pk, checkout_id=sale)
    assert link in sent.body.split()
    # and: the consumer recorded it sent, so the lost-message machinery never sends it again
    assert sent.extra_headers["Message-ID"] == f"<refund-failed-{message.pk}@{urlsplit(link).hostname}>"


def test_nothing_is_sent_for_a_refund_paid_back_outside_the_provider_before_the_email_went_out(
    studio: StudioPeople, sale: str
) -> None:
    # given: the print's refund landed, failed at the provider, and an operator paid the shopper
    # back by bank transfer before the e-mail's task ran
    refund = landed(studio, sale, "print")
    provider_says_failed(sale, refund)
    with tenant_context(studio.org.pk):
        refund_settle_outside(refund_id=refund.pk, note="bank transfer TR-1", actor_label="operator")
    assert fresh(refund).status == "settled"
    mail.outbox.clear()
    # when: the message's task runs
    [message] = told_messages(sale)
    assert run_consumer(message) is False
    # then: nothing is sent, and the message is marked handled: the lost-message sweep leaves it
    assert mail.outbox == []
    with system_context("test"):
        assert InboxEntry.objects.filter(consumer=REFUND_FAILED_MAIL_CONSUMER, message_id=message.pk).exists()
    assert run_consumer(message) is False and mail.outbox == []


def test_no_refund_failed_email_for_a_refund_settled_just_before_the_send(
    studio: StudioPeople, sale: str, monkeypatch: Any
) -> None:
    # given: the print's refund landed, then failed at the provider; its message is pending
    printed = submitted(studio, sale, [lines_of(studio, sale)["print"]])
    confirmed(printed, sale)
    provider_says_failed(sale, printed, reason="lost_or_stolen_card")
    [message] = told_messages(sale)
    mail.outbox.clear()
    real_send_once = refund_mail.send_once

    def operator_settles_first(**kwargs: Any) -> bool:
        # the competitor, injected between the consumer's read of the refund and its claim
        with system_context("test"):
            refund_settle_outside(refund_id=printed.pk, note="Bank transfer TR-9", actor_label="test")
        return real_send_once(**kwargs)

    monkeypatch.setattr(refund_mail, "send_once", operator_settles_first)
    # when: the consumer runs, and the operator's settle commits just before its claim
    run_consumer(message)
    # then: the refund is settled by the time the e-mail would go: nothing is sent
    assert fresh(printed).status == "settled"
    assert [m.subject for m in mail.outbox] == []


# --- the order page -----------------------------------------------------------------------------


def test_the_order_page_says_an_item_refund_did_not_reach_the_shopper_until_it_is_paid_back(
    studio: StudioPeople, sale: str
) -> None:
    # given: the print's refund (25.00) landed; the page says the print was refunded
    refund = landed(studio, sale, "print")
    assert item_states(order_page(studio, sale)) == {"Digital download": "Confirmed", "Print A4": "Refunded"}
    # when: it fails at the provider
    provider_says_failed(sale, refund)
    # then: the page says it did not reach the shopper and the studio pays it back; the print no
    # longer reads "Refunded"
    page = order_page(studio, sale)
    assert (
        f"A refund of 25.00 EUR did not reach you: the payment provider returned it. {studio.org.name} will pay "
        "it back another way." in plain(page)
    )
    assert item_states(page)["Print A4"] == "Refund did not reach you"
    assert "The studio refunded the items marked refunded" not in plain(page)
    # when: an operator records it paid back by bank transfer
    with tenant_context(studio.org.pk):
        refund_settle_outside(refund_id=refund.pk, note="bank transfer TR-1", actor_label="operator")
    # then: the page says when it was paid back, and the print reads refunded again
    settled_on = date_format(timezone.localtime(fresh(refund).settled_outside_at), "j M Y")
    page = order_page(studio, sale)
    assert f"Refund of 25.00 EUR paid back outside the card payment on {settled_on}." in plain(page)
    assert "did not reach you" not in plain(page)
    assert item_states(page)["Print A4"] == "Refunded"


def test_the_order_page_of_a_whole_refund_that_failed_after_landing_does_not_say_refunded(
    studio: StudioPeople, sale: str
) -> None:
    # given: the whole order's refund (34.00) landed: the order is refunded
    refund = landed(studio, sale, None)
    page_html = order_page(studio, sale)
    assert heading(page_html) == "Refunded"
    assert set(item_states(page_html).values()) == {"Refunded"}
    # when: it fails at the provider
    provider_says_failed(sale, refund)
    # then: neither the heading nor the items say refunded; the notice says what happened
    page_html = order_page(studio, sale)
    page = plain(page_html)
    assert heading(page_html) == "Refund did not reach you"
    assert "Order status: Refund did not reach you" in page
    assert set(item_states(page_html).values()) == {"Refund did not reach you"}
    assert (
        f"A refund of 34.00 EUR did not reach you: the payment provider returned it. {studio.org.name} will pay "
        "it back another way." in page
    )


def test_the_order_page_does_not_count_a_dashboard_refund_that_failed_as_money_given_back(
    studio: StudioPeople, sale: str
) -> None:
    # given: the studio refunded 9.00 in the provider's own dashboard (recorded as a part refunded
    # at the provider: no item taken back); the shopper's page says 9.00 of the payment came back
    refund_id = dashboard_refund(sale, 900)
    drain_outbox()
    assert "The studio refunded 9.00 EUR of your payment" in plain(order_page(studio, sale))
    mail.outbox.clear()
    # when: the provider then says that refund failed, and the messages are consumed
    assert deliver([sandbox_provider().fail_refund(reference=f"sbx_{sale}", refund_id=refund_id)]) == [200]
    drain_outbox()
    # then: the page no longer says it came back; it says it did not reach the shopper
    page = plain(order_page(studio, sale))
    assert "The studio refunded 9.00 EUR of your payment" not in page
    assert "A refund of 9.00 EUR did not reach you: the payment provider returned it." in page
    assert set(item_states(order_page(studio, sale)).values()) == {"Confirmed"}
    # and: the shopper was e-mailed so, once
    assert [m.subject for m in mail.outbox] == [f"A refund from {studio.org.name} did not reach you ({sale[:8]})"]


def test_the_order_page_does_not_say_a_refund_the_last_refund_gave_back_is_still_owed(
    studio: StudioPeople, sale: str
) -> None:
    # given: the shopper got all 34.00 back through the provider (see above)
    owed_then_last_item_refunded_through_the_provider(studio, sale)
    # when: the shopper opens the order page
    page_html = order_page(studio, sale)
    # then: it says refunded, not that 9.00 did not reach them and the studio pays it another way
    assert "did not reach you" not in plain(page_html)
    assert heading(page_html) == "Refunded"


def test_the_order_page_of_a_late_payment_paid_back_outside_the_provider_does_not_say_being_refunded(
    studio: StudioPeople,
) -> None:
    # given: a checkout left unpaid until it expired; the shopper's payment then arrived late, and
    # its refund (9.00) was refused by the provider
    checkout_id, refund = late_payment_refund(studio)
    refused(refund, "account_closed")
    assert heading(order_page(studio, checkout_id)) == "Expired, payment being refunded"
    # when: the operator pays it back by transfer and records it
    with system_context("test"):
        refund_settle_outside(refund_id=refund.pk, note="Bank transfer TR-7", actor_label="test")
    page_html = order_page(studio, checkout_id)
    # then: the page says it was paid back, and no longer that it is being refunded
    assert "paid back outside the card payment" in plain(page_html)
    assert "it is being refunded" not in plain(page_html), heading(page_html)
    assert heading(page_html) != "Expired, payment being refunded"
