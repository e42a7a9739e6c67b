"""The bulk item ("All photos of this event") includes the downloads of its photos, so the cart
never holds both: adding it takes the event's downloads out (and says so), a download is refused
while it is in, prints and other events' downloads stay; a cart holding both is not checked out."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.factories.commerce import Shop, make_shop
from tests.web.shop.conftest import make_ready, url, written
from tests.web.shop.test_checkout import add, cart_of, checkout_form, photo_path, submit
from tests.web.shop.test_photo_and_cart import offer_row

pytestmark = pytest.mark.django_db

BULK = "All photos of this event (downloads)"


def cart_path(tenant: Any) -> str:
    return url(tenant.org.slug, "cart")


def test_adding_the_bulk_item_takes_the_events_downloads_out(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: in the cart, the downloads of two photos of the event, a print of one, and the
    # download of another event's photo
    photo_2, download_2 = shop.add_photo()
    make_ready(photo_2)
    other = make_shop(org=tenant_a.org)
    make_ready(other.photo)
    add(browser, tenant_a, shop, shop.download)
    assert browser.post(url(tenant_a.org.slug, shop.event.slug, "photos", photo_2.pk),
                        {"product": download_2.pk}).status_code == 303  # fmt: skip
    add(browser, tenant_a, shop, shop.print, 2)
    assert browser.post(url(tenant_a.org.slug, other.event.slug, "photos", other.photo.pk),
                        {"product": other.download.pk}).status_code == 303  # fmt: skip
    assert len(cart_of(browser, tenant_a)) == 4
    # when: "All photos of this event" is added
    add(browser, tenant_a, shop, shop.bulk)
    # then: the event's downloads are out; the print and the other event's download stay
    assert cart_of(browser, tenant_a) == {
        str(shop.print.pk): 2,
        str(other.download.pk): 1,
        str(shop.bulk.pk): 1,
    }
    # and: the cart says why
    body = browser.get(cart_path(tenant_a)).content.decode()
    assert (
        f"“All photos of this event” includes every photo of {shop.event.title}, so the downloads of "
        f"photo {shop.photo.pk}, photo {photo_2.pk} were taken out of your cart."
    ) in body


def test_a_download_is_refused_while_its_events_bulk_item_is_in_the_cart(browser: Client, tenant_a: Any,
                                                                         shop: Shop) -> None:  # fmt: skip
    # given: "All photos of this event" in the cart
    add(browser, tenant_a, shop, shop.bulk)
    # when: the photo's page is shown
    body = browser.get(photo_path(tenant_a, shop)).content.decode()
    # then: its download is shown as included, with no button; its prints can still be added
    row = offer_row(body, "Digital download")
    assert "Included in “All photos of this event” in your cart" in row and "<button" not in row
    assert "<button" in offer_row(body, "Print A4")
    # when: the download is posted anyway (a stale page)
    response = browser.post(photo_path(tenant_a, shop), {"product": shop.download.pk})
    # then: refused with the reason; the cart is unchanged
    assert response.status_code == 409
    assert f"which includes the download of photo {shop.photo.pk}" in response.content.decode()
    assert cart_of(browser, tenant_a) == {str(shop.bulk.pk): 1}
    # and: a print of the photo is physical and still goes in
    add(browser, tenant_a, shop, shop.print)
    assert cart_of(browser, tenant_a) == {str(shop.bulk.pk): 1, str(shop.print.pk): 1}


def test_a_cart_holding_both_is_not_checked_out(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: a cart from before the rule, holding the download and the event's bulk item
    session = browser.session
    session["shop_carts"] = {str(tenant_a.org.pk): {str(shop.download.pk): 1, str(shop.bulk.pk): 1}}
    session.save()
    # when: the cart is shown and checked out
    body = browser.get(cart_path(tenant_a)).content.decode()
    before = written()
    response = submit(browser, tenant_a, checkout_form(browser, tenant_a))
    # then: the cart says which line to remove, and the service refuses the order: nothing written
    assert f"includes the download of photo {shop.photo.pk}; remove the download to check out." in body
    assert response.status_code == 400
    assert "includes the downloads of its photos" in response.content.decode()
    assert written() == before
    # when: the download is removed, the order goes through
    browser.post(f"{cart_path(tenant_a)}remove", {"product": shop.download.pk})
    assert submit(browser, tenant_a, checkout_form(browser, tenant_a)).status_code == 303
