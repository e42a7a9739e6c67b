"""Every per-address limit of the pages counts an IPv6 client by its /64
(`apps.core.client_address.rate_limit_address`): a fresh address of the same /64 buys no fresh
budget, for studio sign-in, "find my orders" and the attendee pages alike."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from apps.notifications.selectors import attendee_token
from tests.factories.commerce import Shop
from tests.fixtures import forget_rate_limit_windows
from tests.notifications.helpers import event_with_attendees
from tests.web.shop.conftest import shop  # noqa: F401 - fixture, used by name
from tests.web.shop.test_orders import ask, lookup_form
from tests.web.studio.conftest import StudioPeople, studio  # noqa: F401 - fixture, used by name

pytestmark = pytest.mark.django_db


def test_sign_in_attempts_from_one_ipv6_64_share_the_address_budget(
    studio: StudioPeople,  # noqa: F811
    settings: Any,
) -> None:
    # given: two sign-in attempts per client address (and plenty per username)
    settings.RATE_LIMIT_ENABLED = True
    settings.STUDIO_LOGIN_ADDRESS_RATE = "2/min"
    settings.STUDIO_LOGIN_RATE = "100/min"
    form = {"username": studio.owner.username, "password": "wrong"}
    # when: three addresses of one /64 try once each
    statuses = [
        Client(REMOTE_ADDR=f"2001:db8:64:1::{n + 1}").post("/studio/login/", form).status_code for n in range(3)
    ]
    # then: the third is refused; another /64 still may try
    assert statuses == [200, 200, 429]
    assert Client(REMOTE_ADDR="2001:db8:64:2::1").post("/studio/login/", form).status_code == 200


def test_order_lookups_from_one_ipv6_64_share_the_address_budget(
    tenant_a: Any,
    shop: Shop,  # noqa: F811
    settings: Any,
) -> None:
    # given: two "find my orders" requests an hour per client address
    settings.RATE_LIMIT_ENABLED = True
    settings.SHOP_ORDER_LOOKUP_ADDRESS_RATE = "2/hour"
    clients = [Client(REMOTE_ADDR=f"2001:db8:64:3::{n + 1}") for n in range(3)]
    # when: three addresses of one /64 ask once each
    statuses = [
        ask(c, tenant_a, lookup_form(c, tenant_a, f"p{n}@example.test")).status_code for n, c in enumerate(clients)
    ]
    # then: the third is refused with Retry-After
    assert statuses == [303, 303, 429]


@pytest.fixture
def _fresh_attendee_windows() -> Iterator[None]:
    forget_rate_limit_windows("attendee:page:")
    yield
    forget_rate_limit_windows("attendee:page:")


@pytest.mark.usefixtures("_fresh_attendee_windows")
def test_attendee_pages_from_one_ipv6_64_share_the_address_budget(tenant_a: Any, settings: Any) -> None:
    # given: two attendee-page requests a minute per client address
    settings.RATE_LIMIT_ENABLED = True
    settings.ATTENDEE_PAGE_RATE = "2/min"
    _, people = event_with_attendees(tenant_a.org, consenting=1)
    inbox = f"/attendee/{attendee_token(tenant_id=tenant_a.org.pk, attendee_id=people[0].pk)}/"
    # when: three addresses of one /64 open the inbox
    statuses = [Client(REMOTE_ADDR=f"2001:db8:64:4::{n + 1}").get(inbox).status_code for n in range(3)]
    # then: the third is refused; another /64 still gets the page
    assert statuses == [200, 200, 429]
    assert Client(REMOTE_ADDR="2001:db8:64:5::1").get(inbox).status_code == 200
