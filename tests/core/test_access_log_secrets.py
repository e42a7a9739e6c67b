"""Credentials that travel in URL paths (order-link, download and attendee tokens; password-reset
links) never reach the logs: the access log (`darkroom.request`) writes the path with them
redacted, and so do Django's own request records (`django.request`, e.g. "Not Found: <path>")."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.test import Client
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from apps.commerce.order_links import order_token
from tests.factories.commerce import Shop
from tests.web.shop.conftest import checkouts_of, shop  # noqa: F401 - fixture
from tests.web.shop.test_checkout import add, checkout_form, submit

pytestmark = pytest.mark.django_db


def logged(caplog: Any) -> str:
    """Everything the captured records would write: message, path and request fields."""
    return "\n".join(f"{r.getMessage()} {getattr(r, 'path', '')} {getattr(r, 'request', '')}" for r in caplog.records)


def test_an_order_links_token_is_not_in_the_access_log(tenant_a: Any, shop: Shop, caplog: Any) -> None:  # noqa: F811
    # given: a shopper's order and its link's token, which opens the order from any browser
    buyer = Client()
    add(buyer, tenant_a, shop, shop.download)
    assert submit(buyer, tenant_a, checkout_form(buyer, tenant_a)).status_code == 303
    [checkout] = checkouts_of(tenant_a.org.pk)
    token = order_token(tenant_id=tenant_a.org.pk, checkout_id=checkout.pk)
    # when: the link is opened
    with caplog.at_level(logging.INFO, logger="darkroom.request"):
        opened = Client().get(f"/s/{tenant_a.org.slug}/orders/{token}")
    # then: the access line names the route with the token redacted
    assert opened.status_code == 303
    lines = [r.path for r in caplog.records if r.name == "darkroom.request" and "/orders/" in r.path]
    assert lines == [f"/s/{tenant_a.org.slug}/orders/[redacted]"]
    assert token not in logged(caplog)


def test_a_password_reset_links_token_is_not_in_the_access_log(tenant_a: Any, caplog: Any) -> None:
    user = tenant_a.owner
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    with caplog.at_level(logging.INFO, logger="darkroom.request"):
        response = Client().get(f"/studio/reset/{uid}/{token}/")
    assert response.status_code == 302  # a live link (Django moves the token into the session)
    assert token not in logged(caplog) and uid not in logged(caplog)


def test_djangos_not_found_record_of_a_token_path_is_redacted_too(caplog: Any) -> None:
    token = "a-download-token-that-names-nothing"
    with caplog.at_level(logging.INFO):
        response = Client().get(f"/downloads/{token}")
    assert response.status_code in (403, 404, 410)
    records = [r for r in caplog.records if r.name == "django.request"]
    assert records, "Django logged no record for the refused download"
    assert token not in logged(caplog)
    assert "/downloads/[redacted]" in records[0].getMessage()
