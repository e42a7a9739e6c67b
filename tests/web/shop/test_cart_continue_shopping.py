"""The cart leads back to shopping (QA walkthrough: it had no way back but the browser's): to the
gallery of the event its items are from, or to the studio's shop page when they are from more
than one event."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.catalog.models import Product
from tests.factories.commerce import Shop
from tests.web.shop.conftest import a_photo, a_priced_download, an_event, url
from tests.web.shop.html_tree import parse

pytestmark = pytest.mark.django_db


def add(browser: Client, tenant: Any, product: Product) -> None:
    """`product` put in the cart from its photo's page."""
    page = url(tenant.org.slug, product.event.slug, "photos", product.photo_id)
    response = browser.post(page, {"product": product.pk, "quantity": 1})
    assert response.status_code == 303, response.content.decode()


def continue_links(browser: Client, tenant: Any) -> list[str]:
    """Where the cart page's "Continue shopping" links go."""
    response = browser.get(url(tenant.org.slug, "cart"))
    assert response.status_code == 200
    return [a.attrs["href"] for a in parse(response.content.decode()).find_all("a") if a.text == "Continue shopping"]


def test_a_cart_of_one_event_leads_back_to_its_gallery(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: a download and a print of one event in the cart
    add(browser, tenant_a, shop.download)
    add(browser, tenant_a, shop.print)
    # when: the shopper opens the cart
    links = continue_links(browser, tenant_a)
    # then: one link to continue shopping, to that event's gallery, which opens
    assert links == [url(tenant_a.org.slug, shop.event.slug)]
    gallery = browser.get(links[0])
    assert gallery.status_code == 200 and shop.event.title in gallery.content.decode()


def test_a_cart_of_two_events_leads_back_to_the_studios_shop(browser: Client, tenant_a: Any, shop: Shop) -> None:
    # given: items of two events of the studio in the cart
    other = an_event(tenant_a.org, title="Harbour Swim")
    other_download = a_priced_download(other, a_photo(other), currency="EUR", amount_minor=500)
    add(browser, tenant_a, shop.download)
    add(browser, tenant_a, other_download)
    # when: the shopper opens the cart
    links = continue_links(browser, tenant_a)
    # then: one link to continue shopping, to the studio's shop page listing both events
    assert links == [url(tenant_a.org.slug)]
    studio_page = browser.get(links[0]).content.decode()
    assert shop.event.title in studio_page and "Harbour Swim" in studio_page
