"""The way back to what a shopper bought, from any browser: the signed order link (in the
receipt) and "Find my orders" (one e-mail of links, through the outbox, limited, no enumeration)."""

from __future__ import annotations

import copy
import re
import threading
import time
import uuid
from datetime import timedelta
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
from django.core import mail, signing
from django.db import connection, transaction
from django.http import FileResponse
from django.test import Client, override_settings
from django.utils import timezone

from apps.commerce.models import Checkout
from apps.commerce.order_links import ORDER_LINK_SALT, order_link, order_token
from apps.commerce.services import LineIn, checkout_create
from apps.commerce.services import order_links as order_links_service
from apps.commerce.services.order_links import (
    ORDER_LINKS_CONSUMER,
    TOPIC_ORDER_LINKS_REQUESTED,
    order_links_request,
    order_links_send,
)
from apps.idempotency.models import IdempotencyKey
from apps.notifications.selectors import attendee_token
from apps.outbox.mail_once import MailBusy
from apps.outbox.models import InboxEntry, OutboxMessage
from apps.tenancy.context import system_context, tenant_context
from apps.web.shop.views import orders as orders_view
from tasks.outbox import requeue_unconsumed
from tests.commerce.helpers import deliver, drain_outbox, sandbox_paid, system_count
from tests.factories.commerce import Shop, make_shop
from tests.web.shop.conftest import checkouts_of
from tests.web.shop.test_checkout import add, checkout_form, submit

BASE = "https://photos.example.test"


def path_of(link: str) -> str:
    return urlsplit(link).path


def downloads_on(body: str) -> list[str]:
    return re.findall(r'href="(/downloads/[^"]+)"', body)


def an_order(shop: Shop, email: str, *, status: str = "paid", days_ago: int = 0) -> Checkout:
    """A checkout of the shop's download by `email`, moved to `status` and dated `days_ago`
    (the lookup reads the status only; the payment flow has its own tests)."""
    with tenant_context(shop.org.pk), transaction.atomic():
        checkout = checkout_create(
            tenant_id=shop.org.pk,
            email=email,
            provider="sandbox",
            lines=[LineIn(product_id=shop.download.pk, quantity=1)],
        )
    with tenant_context(shop.org.pk):
        Checkout.objects.filter(pk=checkout.pk).update(
            status=status, created_at=timezone.now() - timedelta(days=days_ago)
        )
    return checkout


def lookup_form(browser: Client, tenant: Any, email: str) -> dict[str, str]:
    """The lookup form's fields as its page renders them (a fresh nonce)."""
    page = browser.get(f"/s/{tenant.org.slug}/orders/")
    assert page.status_code == 200
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.content.decode())
    assert nonce, "no form on the lookup page"
    return {"nonce": nonce.group(1), "email": email}


def ask(browser: Client, tenant: Any, form: dict[str, str]) -> Any:
    return browser.post(f"/s/{tenant.org.slug}/orders/", form)


def lookup_messages() -> int:
    return system_count(lambda: OutboxMessage.objects.filter(topic=TOPIC_ORDER_LINKS_REQUESTED))


def lookup_writes() -> dict[str, int]:
    return {"messages": lookup_messages(), "keys": system_count(lambda: IdempotencyKey.objects.all())}


def links_in(body: str) -> list[str]:
    return re.findall(rf"{re.escape(BASE)}(/s/[^\s]+/orders/[^\s]+)", body)


# --- the order link -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_the_receipts_link_opens_the_order_in_another_browser_with_its_downloads(browser: Client, tenant_a: Any,
                                                                                shop: Shop,
                                                                                settings: Any) -> None:  # fmt: skip
    # given: a shop served at its public address; a shopper checks out the download in one browser
    settings.DARKROOM_PUBLIC_BASE_URL = f"{BASE}/"
    add(browser, tenant_a, shop, shop.download)
    placed_page = submit(browser, tenant_a, checkout_form(browser, tenant_a))["Location"]
    drain_outbox()
    [checkout] = checkouts_of(tenant_a.org.pk)
    link = order_link(studio_slug=tenant_a.org.slug, tenant_id=tenant_a.org.pk, checkout_id=checkout.pk)
    assert link.startswith(f"{BASE}/s/{tenant_a.org.slug}/orders/")
    # when: another browser opens the order's link before payment
    tablet = Client()
    opened = tablet.get(path_of(link))
    # then: it lands (303) on the checkout's page, which it may now see: not paid, no downloads
    assert (opened.status_code, opened["Location"]) == (303, placed_page)
    page = tablet.get(placed_page)
    assert page.status_code == 200
    assert "Ready to pay" in page.content.decode()
    assert downloads_on(page.content.decode()) == []
    # when: the shopper pays; the receipt goes out
    deliver([sandbox_paid(str(checkout.pk))])
    drain_outbox()
    # then: the receipt carries that same link (absolute, on the public base URL)
    [receipt] = mail.outbox
    assert links_in(receipt.body) == [path_of(link)]
    # and: a third browser that never saw the shop opens it and downloads the original
    phone = Client()
    landed = phone.get(path_of(link))
    assert (landed.status_code, landed["Location"]) == (303, placed_page)
    body = phone.get(landed["Location"]).content.decode()
    assert "Paid, thank you!" in body
    [download_path] = downloads_on(body)
    download = cast(FileResponse, Client().get(download_path))
    assert download.status_code == 200
    assert download.getvalue()[:2] == b"\xff\xd8"
    # and: the status poll of that page works in that browser too
    assert phone.get(f"{placed_page}status").status_code == 200


@pytest.mark.django_db
def test_bad_order_links_get_the_404_page_and_open_nothing(tenant_a: Any, tenant_b: Any, shop: Shop) -> None:
    # given: a checkout in each studio
    mine = an_order(shop, "ann@example.test")
    theirs = an_order(make_shop(org=tenant_b.org), "ann@example.test")
    good = order_token(tenant_id=tenant_a.org.pk, checkout_id=mine.pk)
    payload, signature = good.rsplit(":", 1)
    forged = {
        "tampered payload": f"{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}:{signature}",
        "tampered signature": f"{payload}:{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",
        "another studio's checkout": order_token(tenant_id=tenant_b.org.pk, checkout_id=theirs.pk),
        "this checkout signed for another studio": order_token(tenant_id=tenant_b.org.pk, checkout_id=mine.pk),
        "an unknown checkout": order_token(tenant_id=tenant_a.org.pk, checkout_id=uuid.uuid4()),
        "another studio's checkout signed for this one": order_token(tenant_id=tenant_a.org.pk, checkout_id=theirs.pk),
        "another link's signature": attendee_token(tenant_id=tenant_a.org.pk, attendee_id=1),
        "another salt": signing.Signer(salt="elsewhere").sign_object({"t": tenant_a.org.pk, "c": mine.pk.hex}),
        "no fields": signing.Signer(salt=ORDER_LINK_SALT).sign_object({"t": tenant_a.org.pk}),
        "not a checkout id": signing.Signer(salt=ORDER_LINK_SALT).sign_object({"t": tenant_a.org.pk, "c": "x"}),
        "garbage": "not-a-token",
    }
    for what, token in forged.items():
        # when: a browser opens the link under tenant A's shop
        stranger = Client()
        response = stranger.get(f"/s/{tenant_a.org.slug}/orders/{token}")
        # then: the shop's 404 page, and the browser still sees neither checkout
        assert response.status_code == 404, what
        assert "Page not found" in response.content.decode(), what
        for checkout, studio in [(mine, tenant_a), (theirs, tenant_b)]:
            assert stranger.get(f"/s/{studio.org.slug}/checkouts/{checkout.pk}/").status_code == 404, what
    # and: the genuine link works, only under its own studio's address
    assert Client().get(f"/s/{tenant_b.org.slug}/orders/{good}").status_code == 404
    assert Client().get(f"/s/{tenant_a.org.slug}/orders/{good}").status_code == 303
    assert Client().get(f"/s/no-such-studio/orders/{good}").status_code == 404


# --- find my orders -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_lookup_sends_one_email_with_the_links_of_the_paid_orders_newest_first(
    browser: Client, tenant_a: Any, tenant_b: Any, shop: Shop, settings: Any
) -> None:
    # given: Ann's paid orders (an older and a newer), her unpaid and expired ones, Bob's paid
    # order, and Ann's paid order at another studio
    settings.DARKROOM_PUBLIC_BASE_URL = BASE
    older = an_order(shop, "Ann@Example.test", days_ago=3)
    newer = an_order(shop, "ann@example.test", days_ago=1)
    an_order(shop, "ann@example.test", status="awaiting_payment")
    an_order(shop, "ann@example.test", status="expired", days_ago=2)
    an_order(shop, "bob@example.test")
    an_order(make_shop(org=tenant_b.org), "ann@example.test")
    # when: Ann asks, typing her address in another case
    response = ask(browser, tenant_a, lookup_form(browser, tenant_a, " ANN@example.TEST "))
    # then: the "sent" page, and one message queued in the request's transaction
    assert (response.status_code, response["Location"]) == (303, f"/s/{tenant_a.org.slug}/orders/sent")
    sent_page = browser.get(response["Location"]).content.decode()
    assert "If we have paid orders for that address, we've e-mailed their links." in sent_page
    assert lookup_messages() == 1
    # when: its consumer runs (outside any transaction)
    assert drain_outbox(topics={TOPIC_ORDER_LINKS_REQUESTED}) == [TOPIC_ORDER_LINKS_REQUESTED]
    # then: one e-mail, to the address she ordered with, with her two paid orders, newest first
    [message] = mail.outbox
    assert message.to == ["ann@example.test"]
    assert message.from_email == settings.RECEIPT_FROM_EMAIL
    assert tenant_a.org.name in message.subject
    expected = [
        order_link(studio_slug=tenant_a.org.slug, tenant_id=tenant_a.org.pk, checkout_id=checkout.pk)
        for checkout in (newer, older)
    ]
    assert links_in(message.body) == [path_of(link) for link in expected]
    # and: each link opens its order in a fresh browser
    for link, checkout in zip(expected, (newer, older), strict=True):
        opened = Client().get(path_of(link))
        assert (opened.status_code, opened["Location"]) == (303, f"/s/{tenant_a.org.slug}/checkouts/{checkout.pk}/")


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_lookup_answers_the_same_whether_or_not_the_address_bought_anything(tenant_a: Any, shop: Shop) -> None:
    # given: Ann has a paid order, Carl only an unpaid one, and nobody ever used Dora's address
    an_order(shop, "ann@example.test")
    an_order(shop, "carl@example.test", status="awaiting_payment")
    answers = {}
    for email in ("ann@example.test", "carl@example.test", "dora@example.test"):
        browser = Client()
        response = ask(browser, tenant_a, lookup_form(browser, tenant_a, email))
        answers[email] = (response.status_code, response["Location"], browser.get(response["Location"]).content)
    # then: the three answers are identical, byte for byte
    assert answers["ann@example.test"] == answers["carl@example.test"] == answers["dora@example.test"]
    # and: only Ann's request queued a message, and only Ann gets an e-mail
    assert lookup_messages() == 1
    drain_outbox(topics={TOPIC_ORDER_LINKS_REQUESTED})
    assert [m.to for m in mail.outbox] == [["ann@example.test"]]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_resubmitted_lookup_form_sends_one_email(browser: Client, tenant_a: Any, shop: Shop) -> None:
    an_order(shop, "ann@example.test")
    form = lookup_form(browser, tenant_a, "ann@example.test")
    # when: the same form is sent twice (a double click, a browser retry)
    first, second = ask(browser, tenant_a, form), ask(browser, tenant_a, form)
    # then: both land on the "sent" page; one message, one e-mail
    assert (first.status_code, second.status_code) == (303, 303)
    assert first["Location"] == second["Location"]
    assert lookup_messages() == 1
    drain_outbox(topics={TOPIC_ORDER_LINKS_REQUESTED})
    assert len(mail.outbox) == 1


def lookups_left(tenant: Any, email: str) -> int:
    """How many more lookups of `email` the studio admits now (each asked from a new browser on
    its own client address, so only the e-mail address's budget decides); spends them all."""
    admitted = 0
    for n in range(20):
        browser = Client(REMOTE_ADDR=f"203.0.113.{n + 1}")
        response = ask(browser, tenant, lookup_form(browser, tenant, email))
        if response.status_code == 429:
            return admitted
        assert response.status_code == 303
        admitted += 1
    raise AssertionError("the e-mail address's limit never refused")


def twin_of(browser: Client) -> Client:
    """Another client carrying the cookies `browser` holds now: the second click of a double click
    is sent before the first one's answer (and whatever cookie it sets) comes back."""
    twin = Client()
    twin.cookies = copy.deepcopy(browser.cookies)
    return twin


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_double_click_on_a_fresh_form_sends_one_email_and_spends_one_lookup(
    tenant_a: Any, shop: Shop, settings: Any
) -> None:
    # given: three lookups an hour per e-mail address; Ann opens the form in a fresh browser
    settings.SHOP_ORDER_LOOKUP_EMAIL_RATE = "3/hour"
    an_order(shop, "ann@example.test")
    browser = Client()
    form = lookup_form(browser, tenant_a, "ann@example.test")
    second_click = twin_of(browser)
    # when: she double-clicks "E-mail me my orders" (both clicks carry the form page's cookies)
    first, second = ask(browser, tenant_a, form), ask(second_click, tenant_a, form)
    # then: both land on the "sent" page; one message, one e-mail
    sent = f"/s/{tenant_a.org.slug}/orders/sent"
    assert [(r.status_code, r["Location"]) for r in (first, second)] == [(303, sent), (303, sent)]
    assert lookup_messages() == 1
    drain_outbox(topics={TOPIC_ORDER_LINKS_REQUESTED})
    assert len(mail.outbox) == 1
    # and: one of the address's three hourly lookups was spent
    assert lookups_left(tenant_a, "ann@example.test") == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_reposted_lookup_form_spends_one_lookup(browser: Client, tenant_a: Any, shop: Shop, settings: Any) -> None:
    # given: three lookups an hour per e-mail address
    settings.SHOP_ORDER_LOOKUP_EMAIL_RATE = "3/hour"
    an_order(shop, "ann@example.test")
    form = lookup_form(browser, tenant_a, "ann@example.test")
    # when: the form is posted, then posted again (a reload that re-posts, a browser retry)
    answers = [ask(browser, tenant_a, form) for _ in range(2)]
    # then: the same "sent" page, one message, and one lookup spent
    assert [a.status_code for a in answers] == [303, 303]
    assert lookup_messages() == 1
    assert lookups_left(tenant_a, "ann@example.test") == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_second_click_while_the_first_is_processed_lands_on_the_sent_page_and_spends_nothing(
    tenant_a: Any, shop: Shop, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: three lookups an hour per e-mail address; Ann opens the form in a fresh browser
    settings.SHOP_ORDER_LOOKUP_EMAIL_RATE = "3/hour"
    an_order(shop, "ann@example.test")
    browser = Client()
    form = lookup_form(browser, tenant_a, "ann@example.test")
    second_click = twin_of(browser)
    answers: dict[str, Any] = {}

    def click_again() -> None:
        try:
            answers["second"] = ask(second_click, tenant_a, form)
        finally:
            connection.close()

    competitor = threading.Thread(target=click_again)

    def slow_request(**kwargs: Any) -> int:
        # the second click arrives while the first is inside its transaction
        if not competitor.is_alive() and "second" not in answers:
            competitor.start()
            time.sleep(0.5)
        return order_links_request(**kwargs)

    monkeypatch.setattr(orders_view, "order_links_request", slow_request)
    # when: she clicks, and clicks again while the first click is being processed
    first = ask(browser, tenant_a, form)
    competitor.join(timeout=30)
    # then: both land on the "sent" page, with one message and one lookup spent
    sent = f"/s/{tenant_a.org.slug}/orders/sent"
    assert (first.status_code, first["Location"]) == (303, sent)
    assert (answers["second"].status_code, answers["second"]["Location"]) == (303, sent)
    assert lookup_messages() == 1
    monkeypatch.setattr(orders_view, "order_links_request", order_links_request)
    assert lookups_left(tenant_a, "ann@example.test") == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_asking_again_for_the_same_address_soon_sends_nothing_more_and_spends_nothing(
    browser: Client, tenant_a: Any, shop: Shop, settings: Any
) -> None:
    # given: three lookups an hour per e-mail address; Ann asked for her orders
    settings.SHOP_ORDER_LOOKUP_EMAIL_RATE = "3/hour"
    an_order(shop, "ann@example.test")
    first = ask(browser, tenant_a, lookup_form(browser, tenant_a, "ann@example.test"))
    assert first.status_code == 303
    before = lookup_writes()
    # when: impatient, she goes back to a fresh form and asks again, twice, typing it otherwise
    typed = ["ann@example.test", "ANN@example.test"]
    again = [ask(browser, tenant_a, lookup_form(browser, tenant_a, email)) for email in typed]
    # then: the same "sent" page each time, nothing written, one e-mail, and one lookup spent
    assert [(a.status_code, a["Location"]) for a in again] == [(303, first["Location"])] * 2
    assert lookup_writes() == before
    drain_outbox(topics={TOPIC_ORDER_LINKS_REQUESTED})
    assert len(mail.outbox) == 1
    assert lookups_left(tenant_a, "ann@example.test") == 2


@pytest.mark.django_db
def test_another_address_from_the_same_session_still_counts(browser: Client, tenant_a: Any, shop: Shop,
                                                            settings: Any) -> None:  # fmt: skip
    # given: two lookups an hour per client address
    settings.SHOP_ORDER_LOOKUP_ADDRESS_RATE = "2/hour"
    # when: one browser asks about Ann three times, then about Bob, then about Carl
    ann = [ask(browser, tenant_a, lookup_form(browser, tenant_a, "ann@example.test")) for _ in range(3)]
    bob = ask(browser, tenant_a, lookup_form(browser, tenant_a, "bob@example.test"))
    carl = ask(browser, tenant_a, lookup_form(browser, tenant_a, "carl@example.test"))
    # then: Ann's repeats are free, Bob's lookup counts, and Carl's is one too many
    assert [a.status_code for a in ann] == [303, 303, 303]
    assert (bob.status_code, carl.status_code) == (303, 429)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_asking_again_after_the_repeat_window_counts_and_sends_again(browser: Client, tenant_a: Any, shop: Shop,
                                                                     settings: Any) -> None:  # fmt: skip
    # given: repeats are free for one second only
    settings.SHOP_ORDER_LOOKUP_REPEAT_SECONDS = 1
    settings.SHOP_ORDER_LOOKUP_EMAIL_RATE = "3/hour"
    an_order(shop, "ann@example.test")
    assert ask(browser, tenant_a, lookup_form(browser, tenant_a, "ann@example.test")).status_code == 303
    # when: she asks again once the window has passed (her e-mail did not come)
    time.sleep(1.2)
    assert ask(browser, tenant_a, lookup_form(browser, tenant_a, "ann@example.test")).status_code == 303
    # then: a second message, and a second lookup spent
    assert lookup_messages() == 2
    assert lookups_left(tenant_a, "ann@example.test") == 1


@pytest.mark.django_db
def test_many_sessions_asking_about_one_address_are_each_counted(tenant_a: Any, shop: Shop, settings: Any) -> None:
    # given: three lookups an hour per e-mail address
    settings.SHOP_ORDER_LOOKUP_EMAIL_RATE = "3/hour"
    # when: fresh browsers from one network ask about Ann's address, each twice
    statuses = []
    for _ in range(4):
        browser = Client()
        statuses += [ask(browser, tenant_a, lookup_form(browser, tenant_a, "ann@example.test")).status_code]
    # then: each new session is counted, and the fourth is refused
    assert statuses == [303, 303, 303, 429]


def queued_lookup(tenant: Any, shop: Shop) -> OutboxMessage:
    """Ann's paid order, and the message her lookup queued."""
    an_order(shop, "ann@example.test")
    browser = Client()
    ask(browser, tenant, lookup_form(browser, tenant, "ann@example.test"))
    with system_context("test: the message"):
        return OutboxMessage.objects.get(topic=TOPIC_ORDER_LINKS_REQUESTED)


def consume(message: OutboxMessage) -> bool:
    """What the consumer does with the message (as a redelivery would run it again)."""
    with tenant_context(message.tenant_id):
        return order_links_send(
            message_id=message.pk,
            tenant_id=int(message.payload["tenant_id"]),
            to=message.payload["to"],
            checkout_ids=message.payload["checkout_ids"],
        )


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_redelivered_message_sends_nothing_more(tenant_a: Any, shop: Shop) -> None:
    # given: a lookup whose e-mail went out
    message = queued_lookup(tenant_a, shop)
    drain_outbox(topics={TOPIC_ORDER_LINKS_REQUESTED})
    # when: the broker delivers the message again, twice
    again = [consume(message), consume(message)]
    # then: nothing is sent a second time
    assert again == [False, False]
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_failed_send_gives_its_claim_back_and_the_retry_sends_once(tenant_a: Any, shop: Shop) -> None:
    message = queued_lookup(tenant_a, shop)
    # when: the mail server refuses the connection
    with override_settings(EMAIL_BACKEND="tests.commerce.test_receipts.ExplodingBackend"):
        with pytest.raises(ConnectionRefusedError):
            consume(message)
    # then: nothing went out, and the task's retry sends the e-mail, once
    assert mail.outbox == []
    assert [consume(message), consume(message)] == [True, False]
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_lookup_whose_message_the_broker_lost_is_sent_by_the_lost_message_sweep(tenant_a: Any, shop: Shop) -> None:
    # given: a lookup whose message was published an hour ago, then lost by the broker (Redis
    # restarted): its consumer never ran
    message = queued_lookup(tenant_a, shop)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    with system_context("test: published, then lost"):
        OutboxMessage.objects.filter(pk=message.pk).update(
            status=OutboxMessage.Status.PUBLISHED, published_at=an_hour_ago, created_at=an_hour_ago
        )
    # when: the beat's lost-message sweep runs, then the relay and a worker
    assert requeue_unconsumed()["order_link_emails"] == 1
    assert drain_outbox(topics={TOPIC_ORDER_LINKS_REQUESTED}) == [TOPIC_ORDER_LINKS_REQUESTED]
    # then: the e-mail goes out, once; a later sweep finds the message handled
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ann@example.test"]
    with system_context("test: published long ago"):
        OutboxMessage.objects.filter(pk=message.pk).update(published_at=an_hour_ago)
    assert requeue_unconsumed()["order_link_emails"] == 0
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_live_claim_holds_a_second_sender_back_until_it_lapses(tenant_a: Any, shop: Shop, settings: Any) -> None:
    # given: a sender claimed the message (and died, or is still sending)
    message = queued_lookup(tenant_a, shop)
    claimed_at = timezone.now()
    InboxEntry.objects.create(consumer=f"{ORDER_LINKS_CONSUMER}:claim", message_id=message.pk, processed_at=claimed_at)
    # when: the redelivery comes while the claim is live
    with pytest.raises(MailBusy):
        consume(message)
    assert mail.outbox == []
    # then: once the claim has lapsed, the redelivery sends
    InboxEntry.objects.filter(message_id=message.pk).update(
        processed_at=claimed_at - timedelta(seconds=settings.RECEIPT_CLAIM_SECONDS + 1)
    )
    assert consume(message) is True
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_the_email_lists_the_newest_orders_only(tenant_a: Any, shop: Shop, settings: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    settings.DARKROOM_PUBLIC_BASE_URL = BASE
    monkeypatch.setattr(order_links_service, "MAX_ORDER_LINKS", 2)
    _oldest, middle, newest = (an_order(shop, "ann@example.test", days_ago=days) for days in (3, 2, 1))
    browser = Client()
    ask(browser, tenant_a, lookup_form(browser, tenant_a, "ann@example.test"))
    drain_outbox(topics={TOPIC_ORDER_LINKS_REQUESTED})
    [message] = mail.outbox
    assert links_in(message.body) == [
        f"/s/{tenant_a.org.slug}/orders/{order_token(tenant_id=tenant_a.org.pk, checkout_id=c.pk)}"
        for c in (newest, middle)
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("email", ["not-an-address", ""])
def test_a_bad_address_is_refused_and_writes_nothing(browser: Client, tenant_a: Any, email: str) -> None:
    before = lookup_writes()
    response = ask(browser, tenant_a, lookup_form(browser, tenant_a, email))
    assert response.status_code == 400
    assert 'name="nonce"' in response.content.decode()  # the form again, to correct
    assert lookup_writes() == before


@pytest.mark.django_db
def test_lookups_are_limited_per_email_address(tenant_a: Any, shop: Shop, settings: Any) -> None:
    # given: two lookups an hour per e-mail address, and Ann's paid order
    settings.SHOP_ORDER_LOOKUP_EMAIL_RATE = "2/hour"
    an_order(shop, "ann@example.test")
    # when: three browsers (three addresses) ask about Ann's address, the last in another case
    statuses = []
    for n, email in enumerate(["ann@example.test", "ann@example.test", "ANN@example.test"]):
        browser = Client(REMOTE_ADDR=f"198.51.100.{n + 1}")
        before = lookup_writes()
        response = ask(browser, tenant_a, lookup_form(browser, tenant_a, email))
        statuses.append(response.status_code)
    # then: the third gets the 429 page with Retry-After and writes nothing
    assert statuses == [303, 303, 429]
    assert int(response["Retry-After"]) >= 1
    assert "Too many requests" in response.content.decode()
    assert lookup_writes() == before
    # and: another address is counted apart
    browser = Client(REMOTE_ADDR="198.51.100.9")
    assert ask(browser, tenant_a, lookup_form(browser, tenant_a, "bob@example.test")).status_code == 303


@pytest.mark.django_db
def test_lookups_are_limited_per_client_address(browser: Client, tenant_a: Any, tenant_b: Any, shop: Shop,
                                                settings: Any) -> None:  # fmt: skip
    # given: two lookups an hour per client address
    settings.SHOP_ORDER_LOOKUP_ADDRESS_RATE = "2/hour"
    an_order(shop, "carl@example.test")
    # when: one browser asks about three addresses
    answers = [ask(browser, tenant_a, lookup_form(browser, tenant_a, f"{name}@example.test")) for name in "ab"]
    before = lookup_writes()
    limited = ask(browser, tenant_a, lookup_form(browser, tenant_a, "carl@example.test"))
    # then: the third is refused with Retry-After, before anything is looked up or written
    assert [a.status_code for a in answers] == [303, 303]
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) >= 1
    assert lookup_writes() == before
    # and: bad forms count too, and another studio's shop has its own budget
    assert ask(browser, tenant_a, {"nonce": "n", "email": "x"}).status_code == 429
    assert ask(browser, tenant_b, lookup_form(browser, tenant_b, "carl@example.test")).status_code == 303


@pytest.mark.django_db
def test_the_lookup_needs_the_csrf_token(tenant_a: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    before = lookup_writes()
    response = browser.post(f"/s/{tenant_a.org.slug}/orders/", {"nonce": "n", "email": "ann@example.test"})
    assert response.status_code == 403
    assert lookup_writes() == before


@pytest.mark.django_db
def test_find_my_orders_is_linked_from_every_shop_page_and_the_404_page(browser: Client, tenant_a: Any,
                                                                        shop: Shop) -> None:  # fmt: skip
    lookup = f'href="/s/{tenant_a.org.slug}/orders/"'
    assert lookup in browser.get(f"/s/{tenant_a.org.slug}/").content.decode()
    missing = browser.get(f"/s/{tenant_a.org.slug}/checkouts/{uuid.uuid4()}/")
    assert missing.status_code == 404
    body = missing.content.decode()
    assert lookup in body
    assert "browser that placed it" not in body
