"""The shop in a real browser: a shopper buys a download end to end (the sandbox's signed webhook
goes through the outbox relay and a real Celery worker, and htmx brings the download link), a
checkout form sent again while its first answer is slow makes one checkout, and a protected
event opens with its access code."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from playwright.sync_api import Page, Route, expect
from pytest_django.live_server_helper import LiveServer

from apps.catalog.models import Event
from apps.commerce.models import Checkout
from apps.payments.models import WebhookEvent
from apps.tenancy.context import tenant_context
from tests.commerce.fixtures import running_relay, worker_running
from tests.commerce.helpers import system_count
from tests.factories.commerce import Shop
from tests.fixtures import TenantBundle
from tests.web.shop.conftest import ACCESS_CODE, checkouts_of

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def pipeline(settings: Any, live_server: LiveServer) -> Iterator[None]:
    """What makes a payment happen as in production: providers send the shopper back to the live
    server, the outbox relay runs in a thread, and a real Celery worker (in a thread; its sandbox
    webhooks go through Django's WSGI handler) takes the relayed tasks."""
    settings.DARKROOM_PUBLIC_BASE_URL = live_server.url
    with worker_running(), running_relay():
        yield


def add_download_to_cart(page: Page, tenant: TenantBundle, shop: Shop) -> None:
    """From the studio's shop through the event's gallery to the photo, its download into the cart, and
    the cart's checkout form filled in."""
    page.goto(f"/s/{tenant.org.slug}/")
    page.get_by_role("link", name=shop.event.title).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(shop.event.title)
    page.get_by_role("link", name=f"Photo {shop.photo.pk}", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Photo {shop.photo.pk}")
    page.get_by_role("button", name="Add to cart: Digital download", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your cart")
    expect(page.get_by_role("link", name="Cart (1 item)")).to_be_visible()
    expect(page.get_by_role("link", name=f"Digital download, photo {shop.photo.pk}")).to_be_visible()
    page.get_by_label("E-mail address").fill("ann@example.test")


@pytest.mark.usefixtures("pipeline")
def test_a_shopper_buys_a_download_pays_at_the_sandbox_and_downloads_the_original(
    page: Page, tenant_a: TenantBundle, shop: Shop
) -> None:
    # given: the photo's download in the cart
    add_download_to_cart(page, tenant_a, shop)
    # when: the shopper places the order
    page.get_by_role("button", name="Place order").click()
    # then: their order page, which htmx (served by the live server) keeps up to date
    expect(page.get_by_role("heading", level=1)).to_have_text("Your order")
    page.wait_for_function("() => window.htmx !== undefined")
    order_url = page.url
    [checkout] = checkouts_of(tenant_a.org.pk)
    assert order_url.endswith(f"/s/{tenant_a.org.slug}/checkouts/{checkout.pk}/")
    # when: the relay and the worker have opened the sandbox session, the Pay link shows (the
    # status block polls for it)
    page.get_by_role("link", name="Pay 9.00 EUR").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Pay 9.00 EUR")
    # and: the shopper pays; the sandbox sends its signed webhook and sends them back
    page.get_by_role("button", name="Pay", exact=True).click()
    expect(page).to_have_url(re.compile(re.escape(order_url) + r"\?confirming="))
    # then: once the webhook is processed the order shows as paid, with the download link
    expect(page.get_by_role("heading", level=2, name="Paid, thank you!")).to_be_visible()
    link = page.get_by_role("link", name=f"Download photo {shop.photo.pk} (original)")
    # and: the link streams the original
    with page.expect_download() as download:
        link.click()
    body = Path(download.value.path()).read_bytes()
    assert shop.photo.original.name
    with default_storage.open(shop.photo.original.name, "rb") as handle:
        original = handle.read()
    assert body[:2] == b"\xff\xd8" and body == original
    # and: the payment was confirmed by the provider's webhook, once
    with tenant_context(tenant_a.org.pk):
        assert Checkout.objects.get(pk=checkout.pk).status == Checkout.Status.PAID
    assert system_count(lambda: WebhookEvent.objects.filter(status="processed")) == 1


@pytest.mark.usefixtures("pipeline")
def test_back_from_paying_the_order_page_confirms_without_a_pay_button_until_the_webhook_lands(
    page: Page, tenant_a: TenantBundle, shop: Shop, settings: Any
) -> None:
    # given: the sandbox's webhook takes a few seconds, as a real provider's may
    settings.SANDBOX_WEBHOOK_DELAY_SECONDS = 10
    add_download_to_cart(page, tenant_a, shop)
    page.get_by_role("button", name="Place order").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your order")
    order_url = page.url
    # when: the shopper goes to pay, then comes back without paying
    page.get_by_role("link", name="Pay 9.00 EUR").click()
    page.get_by_role("link", name="Back without paying").click()
    # then: the order still waits to be paid, and offers to pay
    expect(page.get_by_role("heading", level=2, name="Ready to pay")).to_be_visible()
    # when: they pay after all, and the sandbox sends them back before its webhook lands
    page.get_by_role("link", name="Pay 9.00 EUR").click()
    page.get_by_role("button", name="Pay", exact=True).click()
    expect(page).to_have_url(re.compile(re.escape(order_url) + r"\?confirming="))
    page.wait_for_function("() => window.htmx !== undefined")
    # then: the page confirms the payment, offering no Pay button
    expect(page.get_by_role("heading", level=2, name="Confirming your payment…")).to_be_visible()
    expect(page.get_by_role("link", name="Pay 9.00 EUR")).to_have_count(0)
    # and: its poll brings the webhook's outcome without a reload
    expect(page.get_by_role("heading", level=2, name="Paid, thank you!")).to_be_visible()
    expect(page.get_by_role("link", name=f"Download photo {shop.photo.pk} (original)")).to_be_visible()
    expect(page.get_by_role("link", name="Pay 9.00 EUR")).to_have_count(0)


def test_clicking_place_order_again_while_the_answer_is_slow_makes_one_checkout(
    page: Page, tenant_a: TenantBundle, shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    # given: a filled checkout form, and a network that is slow to bring the first answer back
    add_download_to_cart(page, tenant_a, shop)
    place_order = page.get_by_role("button", name="Place order")
    box = place_order.bounding_box()
    assert box is not None
    held: list[Route] = []

    def slow_answer_then_click_again(route: Route) -> None:
        if held:  # the second submission goes through as usual
            route.continue_()
            return
        # The server gets and processes the first submission; its answer never reaches the
        # page, which still shows the form when the shopper clicks the button again. (A raw
        # mouse click: locators wait for the pending navigation, which this handler holds.)
        held.append(route)
        route.fetch(max_redirects=0)
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)

    page.route("**/cart/checkout", slow_answer_then_click_again)
    # when: the shopper clicks "Place order", and again
    with caplog.at_level(logging.INFO, logger="darkroom.request"):
        place_order.click(no_wait_after=True)
        # then: they land on their order page, the one the first submission made
        expect(page.get_by_role("heading", level=1)).to_have_text("Your order")
    [checkout] = checkouts_of(tenant_a.org.pk)
    assert page.url.endswith(f"/s/{tenant_a.org.slug}/checkouts/{checkout.pk}/")
    # and: the server answered both submissions of the form with that page
    checkout_path = f"/s/{tenant_a.org.slug}/cart/checkout"
    answered = [getattr(r, "status", None) for r in caplog.records if getattr(r, "path", "") == checkout_path]
    assert answered == [303, 303]
    # and: going back to the form shows the emptied cart: nothing to order twice
    page.go_back()
    expect(page.get_by_text("Your cart is empty.")).to_be_visible()
    expect(page.get_by_role("button", name="Place order")).to_have_count(0)
    assert len(checkouts_of(tenant_a.org.pk)) == 1


def test_a_protected_event_opens_with_its_access_code(
    page: Page, tenant_a: TenantBundle, protected_event: Event
) -> None:
    # given: the link to a private event
    page.goto(f"/s/{tenant_a.org.slug}/{protected_event.slug}/")
    expect(page.get_by_role("heading", level=1)).to_have_text(protected_event.title)
    code = page.get_by_label("Access code")
    # when: a wrong code is entered
    code.fill("not-the-code")
    page.get_by_role("button", name="See the photos").click()
    # then: refused, the reason announced and tied to the field, and no photos
    expect(page.get_by_role("alert")).to_have_text("That access code is not correct.")
    expect(code).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("link", name=re.compile(r"^Photo \d+$"))).to_have_count(0)
    # when: the right code is entered
    code.fill(ACCESS_CODE)
    page.get_by_role("button", name="See the photos").click()
    # then: the gallery, and the form is gone
    expect(page.get_by_role("link", name=re.compile(r"^Photo \d+$"))).to_have_count(1)
    expect(code).to_have_count(0)
