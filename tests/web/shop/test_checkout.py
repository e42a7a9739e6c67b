"""Checking out the cart (one checkout per form, refusals write nothing, the kill switch) and the
checkout page (only for its session; reserved, confirmed, sold out; pay link; downloads)."""

from __future__ import annotations

import re
import threading
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
from django.db import connection
from django.http import FileResponse
from django.test import Client
from django.urls import reverse

from apps.catalog.models import Product
from apps.commerce.models import CheckoutLine
from apps.ops.killswitch import kill_switch_engage
from apps.tenancy.context import tenant_context
from tests.commerce.helpers import deliver, drain_outbox, sandbox_paid, sandbox_provider
from tests.factories.commerce import Shop
from tests.web.shop.conftest import a_photo, a_priced_download, an_event, checkouts_of, url, written

SHIPPING_FORM = {
    "shipping_name": "Ann Example",
    "shipping_line1": "Hauptstrasse 1",
    "shipping_city": "Berlin",
    "shipping_postal_code": "10115",
    "shipping_country": "DE",
}


def photo_path(tenant: Any, shop: Shop) -> str:
    return url(tenant.org.slug, shop.event.slug, "photos", shop.photo.pk)


def add(browser: Client, tenant: Any, shop: Shop, product: Product, quantity: int = 1) -> None:
    response = browser.post(photo_path(tenant, shop), {"product": product.pk, "quantity": quantity})
    assert response.status_code == 303, response.content.decode()


def checkout_form(browser: Client, tenant: Any, **fields: str) -> dict[str, str]:
    """The checkout form's fields as the cart page renders them (fresh nonce, cart digest)."""
    body = browser.get(url(tenant.org.slug, "cart")).content.decode()
    nonce = re.search(r'name="nonce" value="([^"]+)"', body)
    digest = re.search(r'name="cart" value="([^"]+)"', body)
    assert nonce and digest, "no checkout form on the cart page"
    # A cart with prints asks for the shipping address: fill it in as a shopper would.
    address = SHIPPING_FORM if 'name="shipping_name"' in body else {}
    return {"nonce": nonce.group(1), "cart": digest.group(1), "email": "ann@example.test", "provider": "sandbox",
            **address, **fields}  # fmt: skip


def submit(browser: Client, tenant: Any, form: dict[str, str]) -> Any:
    return browser.post(f"/s/{tenant.org.slug}/cart/checkout", form)


def cart_of(browser: Client, tenant: Any) -> dict[str, int]:
    return dict((browser.session.get("shop_carts") or {}).get(str(tenant.org.pk), {}))


@pytest.mark.django_db
def test_checkout_creates_one_checkout_with_the_cart_lines(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: a download and 2 prints in the cart
    add(browser, tenant_a, shop, shop.download)
    add(browser, tenant_a, shop, shop.print, 2)
    # when: the checkout form is submitted
    response = submit(browser, tenant_a, checkout_form(browser, tenant_a))
    # then: one checkout with those lines, and a 303 to its page
    [checkout] = checkouts_of(tenant_a.org.pk)
    assert response.status_code == 303
    assert response["Location"] == f"/s/{tenant_a.org.slug}/checkouts/{checkout.pk}/"
    assert (checkout.email, checkout.provider, checkout.currency) == ("ann@example.test", "sandbox", "EUR")
    with tenant_context(tenant_a.org.pk):
        lines = list(CheckoutLine.objects.filter(checkout=checkout).order_by("position"))
    assert [(line.product_id, line.photo_id, line.quantity, line.amount_minor) for line in lines] == [
        (shop.download.pk, shop.photo.pk, 1, 900),
        (shop.print.pk, shop.photo.pk, 2, 5000),
    ]
    # and: the cart is empty, and the page shows the lines while the prints are reserved
    assert cart_of(browser, tenant_a) == {}
    page = browser.get(response["Location"])
    assert page.status_code == 200
    body = page.content.decode()
    assert "Reserving your prints" in body
    assert "Reserving…" in body and "Confirmed" in body
    assert f'hx-get="/s/{tenant_a.org.slug}/checkouts/{checkout.pk}/status?since=' in body
    assert f'href="/s/{tenant_a.org.slug}/checkouts/{checkout.pk}/"' in body  # the no-JS refresh link
    assert "Cart (0 items)" in body


@pytest.mark.django_db
def test_a_double_submitted_form_creates_one_checkout_and_lands_on_it_twice(browser: Client, tenant_a: Any,
                                                                           shop: Shop) -> None:  # fmt: skip
    add(browser, tenant_a, shop, shop.print, 3)
    form = checkout_form(browser, tenant_a)
    first = submit(browser, tenant_a, form)
    second = submit(browser, tenant_a, form)
    assert (first.status_code, second.status_code) == (303, 303)
    assert first["Location"] == second["Location"]
    assert len(checkouts_of(tenant_a.org.pk)) == 1
    assert written()["reservations"] == 1
    # and: the same fields under a new nonce find the cart emptied: refused, not a second order
    assert submit(browser, tenant_a, {**form, "nonce": "another-nonce"}).status_code == 400
    assert len(checkouts_of(tenant_a.org.pk)) == 1


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_submissions_of_one_form_make_one_checkout(browser: Client, tenant_a: Any,
                                                                    shop: Shop) -> None:  # fmt: skip
    # given: one rendered form, sent from two threads at once with the session's cookie
    add(browser, tenant_a, shop, shop.download)
    form = checkout_form(browser, tenant_a)
    cookies = browser.cookies
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def send() -> None:
        client = Client()
        client.cookies = cookies
        try:
            barrier.wait(60)
            statuses.append(submit(client, tenant_a, form).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    # then: one checkout; each answer is its redirect or "still being processed"
    assert len(checkouts_of(tenant_a.org.pk)) == 1
    assert sorted(statuses) in ([303, 303], [303, 409])


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"email": "not-an-address"}, 400, "Enter a valid email address."),
        ({"email": ""}, 400, "This field is required."),
        ({"provider": "bitcoin"}, 400, "Choose how to pay."),
        ({"cart": "0" * 32}, 409, "Your cart changed"),
        ({"nonce": ""}, 400, "no valid nonce"),
    ],
)
def test_bad_checkout_input_is_refused_and_writes_nothing(browser: Client, tenant_a: Any, shop: Shop,
                                                          fields: dict[str, str], status: int,
                                                          message: str) -> None:  # fmt: skip
    add(browser, tenant_a, shop, shop.print, 2)
    before = written()
    response = submit(browser, tenant_a, checkout_form(browser, tenant_a, **fields))
    assert response.status_code == status
    body = response.content.decode()
    assert message in body
    assert 'name="nonce"' in body  # the form again, to correct
    assert written() == before
    assert cart_of(browser, tenant_a) == {str(shop.print.pk): 2}


@pytest.mark.django_db
def test_a_refused_payment_choice_is_tied_to_its_menu(browser: Client, tenant_a: Any, shop: Shop,
                                                      settings: Any) -> None:  # fmt: skip
    # given: a cart, and two providers offered (so the form has a "Pay with" menu)
    settings.SHOP_PAYMENT_PROVIDERS = ["sandbox", "stripe"]
    add(browser, tenant_a, shop, shop.download)
    # when: the form comes back with a provider the menu does not offer
    response = submit(browser, tenant_a, checkout_form(browser, tenant_a, provider="bitcoin"))
    # then: the menu is marked invalid and points at the error, which a screen reader reads with it
    body = response.content.decode()
    assert response.status_code == 400
    menu = re.search(r"<select id=\"provider\"[^>]*>", body)
    assert menu and 'aria-invalid="true"' in menu.group(0) and 'aria-describedby="provider-error"' in menu.group(0)
    assert '<p class="error" id="provider-error" role="alert">Choose how to pay.</p>' in body


@pytest.mark.django_db
def test_an_empty_cart_cannot_be_checked_out(browser: Client, tenant_a: Any, shop: Shop) -> None:
    add(browser, tenant_a, shop, shop.download)
    form = checkout_form(browser, tenant_a)
    browser.post(f"/s/{tenant_a.org.slug}/cart/remove", {"product": shop.download.pk})
    before = written()
    response = submit(browser, tenant_a, form)
    assert response.status_code == 400
    assert "Your cart is empty" in response.content.decode()
    assert written() == before


@pytest.mark.django_db
def test_an_item_withdrawn_from_sale_fails_the_checkout_and_writes_nothing(browser: Client, tenant_a: Any,
                                                                           shop: Shop) -> None:  # fmt: skip
    add(browser, tenant_a, shop, shop.download)
    add(browser, tenant_a, shop, shop.print)
    form = checkout_form(browser, tenant_a)
    with tenant_context(shop.org.pk):
        Product.objects.filter(pk=shop.print.pk).update(active=False)
    before = written()
    response = submit(browser, tenant_a, form)
    # the page the shopper reviewed showed the print on sale at its price: the cart changed
    assert response.status_code == 409
    assert "Your cart changed" in response.content.decode()
    assert "No longer on sale" in response.content.decode()
    assert written() == before
    # and: the new page's form (a new cart version: a new nonce) goes through once the shopper
    # removed the item
    browser.post(f"/s/{tenant_a.org.slug}/cart/remove", {"product": shop.print.pk})
    retry_form = checkout_form(browser, tenant_a)
    assert retry_form["nonce"] != form["nonce"]
    retry = submit(browser, tenant_a, retry_form)
    assert retry.status_code == 303
    assert len(checkouts_of(tenant_a.org.pk)) == 1


@pytest.mark.django_db
def test_mixed_currencies_are_refused_and_write_nothing(browser: Client, tenant_a: Any, shop: Shop) -> None:
    event = an_event(tenant_a.org)
    photo = a_photo(event)
    usd = a_priced_download(event, photo, currency="USD", amount_minor=500)
    add(browser, tenant_a, shop, shop.download)
    assert browser.post(url(tenant_a.org.slug, event.slug, "photos", photo.pk), {"product": usd.pk}).status_code == 303
    before = written()
    response = submit(browser, tenant_a, checkout_form(browser, tenant_a))
    assert response.status_code == 400
    assert "one checkout, one currency" in response.content.decode()
    assert written() == before


@pytest.mark.django_db
def test_checkout_kill_switch_gives_a_503_page_and_writes_nothing(browser: Client, tenant_a: Any, shop: Shop) -> None:
    add(browser, tenant_a, shop, shop.download)
    form = checkout_form(browser, tenant_a)
    kill_switch_engage(capability="checkout", reason="provider outage", actor_label="test")
    before = written()
    response = submit(browser, tenant_a, form)
    assert response.status_code == 503
    assert int(response["Retry-After"]) > 0
    assert "Checkout is paused" in response.content.decode()
    assert written() == before
    assert cart_of(browser, tenant_a) == {str(shop.download.pk): 1}  # kept for later
    assert "Checkout is paused" in browser.get(url(tenant_a.org.slug, "cart")).content.decode()


@pytest.mark.django_db
def test_only_the_session_that_created_a_checkout_sees_it(browser: Client, tenant_a: Any, tenant_b: Any,
                                                          shop: Shop) -> None:  # fmt: skip
    add(browser, tenant_a, shop, shop.download)
    location = submit(browser, tenant_a, checkout_form(browser, tenant_a))["Location"]
    checkout_id = location.rstrip("/").rsplit("/", 1)[-1]
    assert browser.get(location).status_code == 200
    assert browser.get(f"{location}status").status_code == 200
    # another browser, and the same browser under another studio's URL, get the 404 page
    stranger = Client()
    for client, path in [
        (stranger, location),
        (stranger, f"{location}status"),
        (browser, f"/s/{tenant_b.org.slug}/checkouts/{checkout_id}/"),
        (browser, f"/s/{tenant_a.org.slug}/checkouts/00000000-0000-0000-0000-000000000001/"),
    ]:
        response = client.get(path)
        assert response.status_code == 404, path
        assert "Page not found" in response.content.decode()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_checkout_page_follows_the_stock_decision_payment_and_downloads(browser: Client, tenant_a: Any,
                                                                       shop: Shop) -> None:  # fmt: skip
    # given: the cart holds the download and 2 A4 prints, checked out while they were in stock
    add(browser, tenant_a, shop, shop.download)
    add(browser, tenant_a, shop, shop.print, 2)
    location = submit(browser, tenant_a, checkout_form(browser, tenant_a))["Location"]
    status_url = f"{location}status"
    # and: other shoppers bought all but one before the SKU's writer reached this reservation
    shop.set_stock_quantity(1)
    # when: the SKU's writer decides the reservation, the checkout settles and its sandbox
    # session is created (each outbox message through its consumer's code)
    drain_outbox()
    # then: the print line is sold out and not charged; only the download is; "Pay" is offered
    body = browser.get(status_url).content.decode()
    assert re.search(r"Print A4.*?Sold out \(not charged\)", body, re.S)
    assert re.search(r"Digital download.*?Confirmed", body, re.S)
    assert re.search(r"Total to pay</th><td class=\"num\"><strong>9.00 EUR", body)
    [checkout] = checkouts_of(tenant_a.org.pk)
    assert f'href="{checkout.payment_url}"' in body
    assert "Pay 9.00 EUR" in body
    # and: nothing reloads the whole page under its reader (no meta refresh, not even for
    # browsers without JavaScript, which get a link to refresh it)
    open_page = browser.get(location).content.decode()
    assert 'http-equiv="refresh"' not in open_page
    assert f'<a href="{location}">Refresh now</a>' in open_page
    # and: the block keeps polling until paid; a poll finding nothing changed gets an empty 204
    poll = re.search(r'hx-get="([^"]+)"', body)
    assert poll
    assert browser.get(poll.group(1)).status_code == 204
    # when: the shopper pays at the sandbox, whose signed webhook is processed
    deliver([sandbox_paid(str(checkout.pk))])
    drain_outbox()
    # then: the next poll brings the paid block, which stops polling
    polled = browser.get(poll.group(1))
    assert polled.status_code == 200
    assert "Paid, thank you!" in polled.content.decode()
    assert "hx-get" not in polled.content.decode()
    # and: the page shows what was charged and a download link that streams the original
    page = browser.get(location).content.decode()
    assert re.search(r"Total charged</th><td class=\"num\"><strong>9.00 EUR", page)
    links = re.findall(r'href="(/downloads/[^"]+)"', page)
    assert len(links) == 1
    download = cast(FileResponse, Client().get(links[0]))
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment;")
    assert download.getvalue()[:2] == b"\xff\xd8"  # the JPEG original


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_a_fully_sold_out_checkout_says_so_and_charges_nothing(browser: Client, tenant_a: Any, shop: Shop) -> None:
    add(browser, tenant_a, shop, shop.print, 2)
    location = submit(browser, tenant_a, checkout_form(browser, tenant_a))["Location"]
    # the stock fell under the order's 2 after the checkout form's check, before the SKU's writer decided
    shop.set_stock_quantity(1)
    drain_outbox()
    body = browser.get(location).content.decode()
    assert "Everything in this order sold out" in body
    assert "0.00 EUR" in body
    assert "/sandbox/pay/" not in body
    assert "hx-get" not in body


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_broker")
def test_the_provider_sends_the_shopper_back_to_the_shops_checkout_page(browser: Client, tenant_a: Any, shop: Shop,
                                                                        settings: Any) -> None:  # fmt: skip
    # given: a shop served at its public address (not the test client's host)
    settings.DARKROOM_PUBLIC_BASE_URL = "https://photos.example.test/"
    add(browser, tenant_a, shop, shop.download)
    # when: the cart is checked out and the sandbox session is created
    location = submit(browser, tenant_a, checkout_form(browser, tenant_a))["Location"]
    drain_outbox()
    # then: the checkout's return URL is this checkout's shop page, absolute on the public base
    [checkout] = checkouts_of(tenant_a.org.pk)
    page_url = f"https://photos.example.test/s/{tenant_a.org.slug}/checkouts/{checkout.pk}/"
    assert location == f"/s/{tenant_a.org.slug}/checkouts/{checkout.pk}/"
    assert checkout.return_url == page_url
    # and: the sandbox session sends the shopper there, whether they pay or give up, saying which
    session = sandbox_provider().session_details(reference=f"sbx_{checkout.pk}")
    assert (session["success_url"], session["cancel_url"]) == (
        f"{page_url}?darkroom_return=paid",
        f"{page_url}?darkroom_return=cancelled",
    )
    # when: the shopper presses Pay on the sandbox's page, it sends them to the success URL
    paid = browser.post(reverse("sandbox-pay", args=[checkout.pk]), {"action": "pay"})
    assert (paid.status_code, paid["Location"]) == (302, session["success_url"])
    # and: the payment's webhook arrives
    deliver([sandbox_paid(str(checkout.pk))])
    drain_outbox()
    back = browser.get(f"{urlsplit(session['success_url']).path}?{urlsplit(session['success_url']).query}", follow=True)
    # then: it is their checkout page, paid, with the download link
    assert back.status_code == 200
    body = back.content.decode()
    assert "Paid, thank you!" in body
    assert len(re.findall(r'href="(/downloads/[^"]+)"', body)) == 1
