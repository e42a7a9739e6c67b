"""Which address a request is attributed to: the socket's peer unless that peer is one of our
own reverse proxies, whose `X-Forwarded-For` is then walked from the right."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory

from apps.core.client_address import client_address, trusted_networks


def request_from(peer: str, forwarded: str | None = None) -> Any:
    extra = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


def test_without_trusted_proxies_the_header_is_ignored(settings: Any) -> None:
    # given: no proxy is trusted (the default)
    settings.TRUSTED_PROXIES = []
    # when / then: whatever the client claims, the peer is the client
    assert client_address(request_from("198.51.100.7", "203.0.113.1")) == "198.51.100.7"


def test_a_peer_that_is_not_a_trusted_proxy_cannot_claim_another_address(settings: Any) -> None:
    # given: our proxies live in 10.0.0.0/8
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    # when / then: a direct client's forged header is ignored
    assert client_address(request_from("198.51.100.7", "203.0.113.1, 10.0.0.5")) == "198.51.100.7"


def test_behind_trusted_proxies_the_first_untrusted_hop_from_the_right_is_the_client(settings: Any) -> None:
    # given: two layers of our proxies (10.0.0.0/8 and 192.0.2.10)
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "192.0.2.10"]
    # when: the client forged a leftmost hop; our edge proxy appended what it saw, then the inner one
    request = request_from("10.0.0.5", "1.2.3.4, 203.0.113.9, 192.0.2.10")
    # then: the forged hop is never reached
    assert client_address(request) == "203.0.113.9"


def test_ports_brackets_and_mapped_addresses_are_understood(settings: Any) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "fd00::/8"]
    assert client_address(request_from("10.0.0.5", "203.0.113.9:4711")) == "203.0.113.9"
    assert client_address(request_from("10.0.0.5", "[2001:db8::7]:4711")) == "2001:db8::7"
    assert client_address(request_from("fd00::1", "::ffff:203.0.113.9")) == "203.0.113.9"
    assert client_address(request_from("::ffff:10.0.0.5", "203.0.113.9")) == "203.0.113.9"


def test_garbage_in_the_header_falls_back_on_the_last_trusted_hop(settings: Any) -> None:
    # given: every real hop is ours and the client put a name of its choosing on the left
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    # then: the limit falls on our proxy, never on a key the client can vary
    assert client_address(request_from("10.0.0.5", "not-an-address, 10.0.0.9")) == "10.0.0.9"
    # and: with no header at all, the proxy itself
    assert client_address(request_from("10.0.0.5")) == "10.0.0.5"
    assert client_address(request_from("10.0.0.5", " , ")) == "10.0.0.5"


def test_a_peer_that_is_not_an_address_is_unknown(settings: Any) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client_address(request_from("")) == "unknown"


def test_a_misspelt_trusted_proxy_is_refused_at_start_up(settings: Any) -> None:
    # given: a typo in the setting
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "10.0.0.300"]
    # then: the parser and the system check both name it
    with pytest.raises(ImproperlyConfigured, match=r"10\.0\.0\.300"):
        trusted_networks(tuple(settings.TRUSTED_PROXIES))
    errors = [e for e in run_checks() if e.id == "core.E001"]
    assert len(errors) == 1 and "10.0.0.300" in errors[0].msg
