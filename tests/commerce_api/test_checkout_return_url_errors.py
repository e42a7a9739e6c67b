"""`POST /api/v1/checkouts` says what is wrong with a `return_url` once: "Enter a valid URL." for
what is not a URL at all, its own sentence for a URL that is not http(s); nothing is written."""

from __future__ import annotations

from typing import Any

import pytest

from tests.commerce.fixtures import checkout_body, post_checkout
from tests.commerce.helpers import NOTHING_WRITTEN, checkout_write_counts
from tests.factories.commerce import Shop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("row_lock_strategy")]


@pytest.mark.parametrize(
    ("return_url", "errors"),
    [
        ("not a url", ["Enter a valid URL."]),
        ("shop.example.test/orders/1", ["Enter a valid URL."]),
        ("javascript:alert(1)", ["Enter a valid URL."]),
        ("ftp://shop.example.test/orders/1", ["A return URL is an http or https URL."]),
        ("FTPS://shop.example.test/orders/1", ["A return URL is an http or https URL."]),
    ],
)
def test_a_bad_return_url_is_reported_once(tenant_a: Any, shop_a: Shop, return_url: str, errors: list[str]) -> None:
    # given: a valid checkout body but for its return URL
    body = {**checkout_body(shop_a, {"product": shop_a.download.pk}), "return_url": return_url}
    # when: it is posted
    response = post_checkout(tenant_a.client(), body)
    # then: a 400 problem whose return_url error is said once, and no row
    assert response.status_code == 400, response.content
    problem = response.json()
    assert problem["type"] == "/problems/validation-error"
    assert problem["errors"] == {"return_url": errors}
    assert checkout_write_counts() == NOTHING_WRITTEN


def test_an_http_return_url_is_taken(tenant_a: Any, shop_a: Shop) -> None:
    body = {**checkout_body(shop_a, {"product": shop_a.download.pk}), "return_url": "HTTPS://shop.example.test/o/1"}
    response = post_checkout(tenant_a.client(), body)
    assert response.status_code == 201, response.content
