"""Coming back to the order page from the provider's page (QA walkthrough): a return after paying
lands on "Confirming your payment…" without a Pay button until the webhook's outcome shows, a
return after cancelling keeps "Ready to pay". The return URL proves nothing: it grants and writes
nothing, and after PAYMENT_CONFIRMATION_WAIT_SECONDS without a webhook the page says the payment
is not confirmed yet, that one may still be on its way, and offers to pay."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from apps.commerce.models import Checkout, Entitlement, Transaction
from apps.idempotency.models import IdempotencyKey
from apps.outbox.models import OutboxMessage
from apps.payments.models import WebhookEvent
from apps.web.shop.views import checkout as checkout_views
from tests.commerce.helpers import deliver, drain_outbox, sandbox_failed, sandbox_paid, sandbox_provider, system_count
from tests.commerce.test_payment_session import FakeFlutterwave
from tests.commerce.test_payment_session import flutterwave as flutterwave  # the fixture, by name
from tests.factories.commerce import Shop
from tests.web.shop.conftest import checkouts_of
from tests.web.shop.test_checkout import add, checkout_form, submit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]

CONFIRMING = "Confirming your payment…"
READY = "Ready to pay"
NOT_CONFIRMED = "Payment not confirmed yet"


def payable_order(browser: Client, tenant: Any, shop: Shop, **form: str) -> tuple[str, Checkout]:
    """A download ordered in the shop, its payment session created: the page offers Pay."""
    add(browser, tenant, shop, shop.download)
    page_url = submit(browser, tenant, checkout_form(browser, tenant, **form))["Location"]
    drain_outbox()
    [checkout] = checkouts_of(tenant.org.pk)
    assert checkout.status == Checkout.Status.AWAITING_PAYMENT
    return page_url, checkout


def local(url: str) -> str:
    """The path and query of an absolute URL, for the test client."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def poll_url(body: str) -> str:
    found = re.search(r'hx-get="([^"]+)"', body)
    assert found, "the status block does not poll"
    return found.group(1).replace("&amp;", "&")


def offers_to_pay(body: str) -> bool:
    return "Pay 9.00 EUR" in body


def rows_the_webhook_decides(checkout: Checkout) -> dict[str, Any]:
    return {
        "checkout": system_count(lambda: Checkout.objects.filter(pk=checkout.pk, status="awaiting_payment")),
        "paid": system_count(lambda: Transaction.objects.exclude(status="pending")),
        "entitlements": system_count(lambda: Entitlement.objects.all()),
        "webhooks": system_count(lambda: WebhookEvent.objects.all()),
        "outbox": system_count(lambda: OutboxMessage.objects.all()),
        "keys": system_count(lambda: IdempotencyKey.objects.all()),
    }


def test_a_return_after_paying_confirms_without_a_pay_button_until_the_webhook_lands(
    browser: Client, tenant_a: Any, shop: Shop
) -> None:
    # given: an order whose sandbox session sends the shopper back after paying, or cancelling
    page_url, checkout = payable_order(browser, tenant_a, shop)
    session = sandbox_provider().session_details(reference=f"sbx_{checkout.pk}")
    assert session["success_url"] != session["cancel_url"]
    # when: the shopper pays at the sandbox, which sends them back; its webhook is not in yet
    assert sandbox_paid(str(checkout.pk))
    before = rows_the_webhook_decides(checkout)
    back = browser.get(local(session["success_url"]), follow=True)
    # then: their order page says the payment is being confirmed and offers no Pay button
    body = back.content.decode()
    assert back.status_code == 200 and urlsplit(back.redirect_chain[-1][0]).path == page_url
    assert CONFIRMING in body and READY not in body
    assert not offers_to_pay(body) and "After paying, come back" not in body
    assert "Order status: Confirming your payment…" in body  # the live region
    # and: the return wrote nothing the webhook decides
    assert rows_the_webhook_decides(checkout) == before
    # and: the block keeps polling, a 204 while nothing changed; reloading keeps confirming
    poll = poll_url(body)
    assert browser.get(poll).status_code == 204
    reloaded = browser.get(back.redirect_chain[-1][0]).content.decode()
    assert CONFIRMING in reloaded and not offers_to_pay(reloaded)
    # when: the webhook lands
    assert deliver([sandbox_paid(str(checkout.pk))]) == [200]
    drain_outbox()
    # then: the poll brings the paid block, with the download
    polled = browser.get(poll).content.decode()
    assert "Paid, thank you!" in polled and CONFIRMING not in polled
    assert f"Download photo {shop.photo.pk} (original)" in polled


def test_a_return_after_cancelling_keeps_the_ready_to_pay_page(browser: Client, tenant_a: Any, shop: Shop) -> None:
    _, checkout = payable_order(browser, tenant_a, shop)
    session = sandbox_provider().session_details(reference=f"sbx_{checkout.pk}")
    back = browser.get(local(session["cancel_url"]), follow=True)
    body = back.content.decode()
    assert READY in body and offers_to_pay(body) and CONFIRMING not in body
    assert "After paying, come back to this page" in body


def test_the_sandbox_sends_the_shopper_back_by_what_they_pressed(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: an order payable at the sandbox
    _, checkout = payable_order(browser, tenant_a, shop)
    session = sandbox_provider().session_details(reference=f"sbx_{checkout.pk}")
    pay_page = browser.get(f"/sandbox/pay/{checkout.pk}").content.decode()
    # then: its page offers a way back without paying, to the cancel URL
    assert f'href="{session["cancel_url"]}"' in pay_page
    # when: the shopper presses Pay, the sandbox sends them to the success URL
    paid = browser.post(f"/sandbox/pay/{checkout.pk}", {"action": "pay"})
    assert (paid.status_code, paid["Location"]) == (302, session["success_url"])


def test_a_failed_payment_at_the_sandbox_returns_as_not_paid(browser: Client, tenant_a: Any, shop: Shop) -> None:
    _, checkout = payable_order(browser, tenant_a, shop)
    session = sandbox_provider().session_details(reference=f"sbx_{checkout.pk}")
    failed = browser.post(f"/sandbox/pay/{checkout.pk}", {"action": "fail"})
    assert (failed.status_code, failed["Location"]) == (302, session["cancel_url"])
    assert CONFIRMING not in browser.get(local(failed["Location"]), follow=True).content.decode()


def test_a_forged_paid_return_only_changes_the_words_and_lapses_into_not_confirmed(
    browser: Client, tenant_a: Any, shop: Shop
) -> None:
    # given: an order nobody paid
    page_url, checkout = payable_order(browser, tenant_a, shop)
    before = rows_the_webhook_decides(checkout)
    # when: the shopper opens the page as if the provider had sent them back after paying
    back = browser.get(f"{page_url}?darkroom_return=paid", follow=True)
    # then: the page waits for the confirmation, and nothing was written or granted
    body = back.content.decode()
    assert CONFIRMING in body and not offers_to_pay(body)
    assert rows_the_webhook_decides(checkout) == before
    # when: two minutes pass without a webhook (the return is stamped when it arrived)
    stale = checkout_views.payment_return_stamp(
        checkout_id=checkout.pk,
        at=timezone.now() - timedelta(seconds=checkout_views.PAYMENT_CONFIRMATION_WAIT_SECONDS + 1),
    )
    page = browser.get(f"{page_url}?confirming={stale}").content.decode()
    # then: the page says the payment is not confirmed yet, that it may still be on its way, and
    # only then offers to pay; it goes on polling for the webhook
    assert NOT_CONFIRMED in page and CONFIRMING not in page
    assert "may still be on its way" in page and offers_to_pay(page)
    assert page.index("may still be on its way") < page.index("Pay 9.00 EUR")
    assert "hx-get" in page
    # and: the poll of a page that was confirming turns to it too when the wait runs out
    poll = poll_url(body)
    fresh_stamp = re.search(r"confirming=([^&\"]+)", poll)
    assert fresh_stamp
    lapsed = browser.get(poll.replace(fresh_stamp.group(1), stale))
    assert lapsed.status_code == 200 and NOT_CONFIRMED in lapsed.content.decode()
    assert rows_the_webhook_decides(checkout) == before
    # and: a stamp that was tampered with is ignored: the page is the plain one
    plain = browser.get(f"{page_url}?confirming={stale[:-2]}xx").content.decode()
    assert READY in plain and offers_to_pay(plain)


def test_a_return_after_paying_that_the_webhook_failed_shows_the_failure_and_a_way_on(
    browser: Client, tenant_a: Any, shop: Shop
) -> None:
    page_url, checkout = payable_order(browser, tenant_a, shop)
    confirming = browser.get(f"{page_url}?darkroom_return=paid", follow=True).content.decode()
    assert deliver([sandbox_failed(str(checkout.pk))]) == [200]
    drain_outbox()
    polled = browser.get(poll_url(confirming)).content.decode()
    assert "Payment failed" in polled and CONFIRMING not in polled
    assert "Put these items back in my cart" in polled


def test_another_sessions_return_is_not_found(browser: Client, tenant_a: Any, shop: Shop) -> None:
    page_url, _ = payable_order(browser, tenant_a, shop)
    stranger = Client().get(f"{page_url}?darkroom_return=paid")
    assert stranger.status_code == 404


def test_flutterwaves_single_redirect_is_told_apart_by_its_status(
    browser: Client, tenant_a: Any, shop: Shop, flutterwave: FakeFlutterwave
) -> None:
    # given: an order paid through Flutterwave, whose one redirect_url serves every outcome
    with override_settings(SHOP_PAYMENT_PROVIDERS=["flutterwave"]):
        page_url, checkout = payable_order(browser, tenant_a, shop, provider="flutterwave")
    [request] = flutterwave.requests
    redirect_url = request["body"]["redirect_url"]
    assert urlsplit(redirect_url).path == page_url and "darkroom_return" not in redirect_url
    joiner = "&" if "?" in redirect_url else "?"
    # when: Flutterwave sends the shopper back after cancelling (its own query parameters)
    cancelled = f"{redirect_url}{joiner}status=cancelled&tx_ref={checkout.pk}"
    body = browser.get(local(cancelled), follow=True).content.decode()
    # then: the page still offers to pay
    assert READY in body and CONFIRMING not in body
    # when: it sends them back after a successful charge
    successful = f"{redirect_url}{joiner}status=successful&tx_ref={checkout.pk}&transaction_id=2784792"
    body = browser.get(local(successful), follow=True).content.decode()
    # then: the page confirms, offering no Pay button
    assert CONFIRMING in body and "Pay 9.00 EUR" not in body
