"""Sign-in limits behind our reverse proxy: each forwarded client has its own budget, and a client
that talks to us directly cannot buy a new one by forging `X-Forwarded-For`."""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from django.test import Client

from tests.web.studio.conftest import StudioPeople, text

pytestmark = pytest.mark.django_db


def fresh_address() -> str:
    """An address no earlier run has counted (the limiter's windows outlive a test)."""
    return f"2001:db8:{secrets.token_hex(2)}::{secrets.token_hex(2)}"


def test_sign_in_limits_count_per_forwarded_client_behind_our_proxy(studio: StudioPeople, settings: Any) -> None:
    # given: 2 sign-in attempts per address, and every request arriving through our proxy 10.0.0.5
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.STUDIO_LOGIN_ADDRESS_RATE = "2/min"
    settings.STUDIO_LOGIN_RATE = "100/min"
    through_proxy = Client(REMOTE_ADDR="10.0.0.5")
    first_client, second_client = fresh_address(), fresh_address()

    def attempt(client_ip: str, n: int) -> int:
        response = through_proxy.post(
            "/studio/login/",
            {"username": studio.owner.username, "password": f"guess-{n}"},
            HTTP_X_FORWARDED_FOR=client_ip,
        )
        return response.status_code

    # when: one client uses up its budget, and another client behind the same proxy tries
    first = [attempt(first_client, n) for n in range(3)]
    other = attempt(second_client, 0)
    # then: only the first client is refused
    assert first == [200, 200, 429]
    assert other == 200


def test_a_direct_client_cannot_escape_the_limit_by_forging_the_header(studio: StudioPeople, settings: Any) -> None:
    # given: the same limit, and a client talking to us directly
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.STUDIO_LOGIN_ADDRESS_RATE = "2/min"
    settings.STUDIO_LOGIN_RATE = "100/min"
    direct = Client(REMOTE_ADDR=fresh_address())
    # when: it claims a new address on every attempt
    statuses = [
        direct.post(
            "/studio/login/",
            {"username": studio.owner.username, "password": f"guess-{n}"},
            HTTP_X_FORWARDED_FOR=fresh_address(),
        )
        for n in range(3)
    ]
    # then: its own address is counted, and the third attempt is refused
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert "Too many sign-in attempts" in text(statuses[2])
