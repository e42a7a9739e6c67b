"""A checkout never sells a photo twice: the bulk product of an event ("all its photos") includes
the download of each of its photos, so `POST /api/v1/checkouts` refuses both in one checkout (400
`invalid-checkout-line` at the later line, nothing written). Prints stay allowed (goods), other
events' downloads too, and what the shopper bought earlier is not the checkout's concern."""

from __future__ import annotations

import pytest

from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import (
    NOTHING_WRITTEN,
    checkout_write_counts,
    deliver,
    drain_outbox,
    sandbox_paid,
)
from tests.factories.commerce import make_shop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker")]


@pytest.mark.parametrize("bulk_first", [False, True], ids=["download-then-bulk", "bulk-then-download"])
def test_a_download_and_its_events_bulk_product_are_refused_together(tenant_a, shop_a, bulk_first):
    # given: the download of a photo of event E and the bulk product of E, in either order
    lines = [{"product": shop_a.download.pk}, {"product": shop_a.bulk.pk}]
    if bulk_first:
        lines.reverse()
    # when: a checkout of both is posted
    response = post_checkout(tenant_a.client(), checkout_body(shop_a, *lines))
    # then: 400 invalid-checkout-line at the second line, saying why; nothing written
    assert response.status_code == 400, response.content
    problem = response.json()
    assert (problem["type"], problem["line"]) == ("/problems/invalid-checkout-line", 1)
    assert "includes the downloads of its photos" in problem["detail"]
    assert checkout_write_counts() == NOTHING_WRITTEN


def test_a_download_of_another_photo_of_the_event_is_refused_too(tenant_a, shop_a):
    _, download_2 = shop_a.add_photo()
    body = checkout_body(shop_a, {"product": shop_a.bulk.pk}, {"product": download_2.pk})
    response = post_checkout(tenant_a.client(), body)
    assert (response.status_code, response.json()["type"]) == (400, "/problems/invalid-checkout-line")
    assert checkout_write_counts() == NOTHING_WRITTEN


def test_prints_and_other_events_downloads_go_with_the_bulk_product(tenant_a, shop_a):
    # given: the bulk product of E, a print of a photo of E, and the download of another event's photo
    other = make_shop(org=tenant_a.org)
    body = checkout_body(
        shop_a, {"product": shop_a.bulk.pk}, {"product": shop_a.print.pk}, {"product": other.download.pk}
    )
    # when / then: one checkout of the three lines
    response = post_checkout(tenant_a.client(), body)
    assert response.status_code == 201, response.content
    assert [line["kind"] for line in response.json()["lines"]] == ["bulk", "print", "download"]


def test_the_bulk_product_can_be_bought_after_a_download_was_paid(tenant_a, shop_a):
    # given: the photo's download, bought and paid earlier
    first = post_checkout(tenant_a.client(), checkout_body(shop_a, {"product": shop_a.download.pk})).json()
    drain_outbox()
    deliver([sandbox_paid(first["id"])])
    drain_outbox()
    assert tenant_a.client().get(f"/api/v1/checkouts/{first['id']}").json()["status"] == "paid"
    # when: the same shopper buys all the photos of the event
    response = post_checkout(tenant_a.client(), checkout_body(shop_a, {"product": shop_a.bulk.pk}))
    # then: accepted (earlier purchases are not this checkout's concern)
    assert response.status_code == 201, response.content
