"""What per-address rate limits count a request against: an IPv4 client's address, an IPv6
client's /64 (it owns that much and picks any address of it), while logs keep the real address."""

from __future__ import annotations

from typing import Any

from django.test import RequestFactory

from apps.core.client_address import client_address, rate_limit_address


def request_from(peer: str, forwarded: str | None = None) -> Any:
    extra = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


def test_every_address_of_one_ipv6_64_counts_as_that_64(settings: Any) -> None:
    # given: no proxy is trusted
    settings.TRUSTED_PROXIES = []
    # when: two addresses of one /64 and one of its neighbour /64 ask
    same = {rate_limit_address(request_from(peer)) for peer in ("2001:db8:77:1::1", "2001:db8:77:1:ffff::9")}
    neighbour = rate_limit_address(request_from("2001:db8:77:2::1"))
    # then: the first two share one key, the neighbour has its own
    assert same == {"2001:db8:77:1::/64"}
    assert neighbour == "2001:db8:77:2::/64"


def test_ipv4_and_mapped_addresses_count_as_themselves(settings: Any) -> None:
    settings.TRUSTED_PROXIES = []
    assert rate_limit_address(request_from("198.51.100.7")) == "198.51.100.7"
    assert rate_limit_address(request_from("198.51.100.8")) == "198.51.100.8"
    assert rate_limit_address(request_from("::ffff:198.51.100.7")) == "198.51.100.7"


def test_the_forwarded_client_is_counted_by_its_64_and_logged_by_its_address(settings: Any) -> None:
    # given: our proxies live in 10.0.0.0/8 and forward an IPv6 client
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    request = request_from("10.0.0.5", "[2001:db8:5:6:7:8:9:a]:4711")
    # then: limits count its /64, logs see the address it used
    assert rate_limit_address(request) == "2001:db8:5:6::/64"
    assert client_address(request) == "2001:db8:5:6:7:8:9:a"


def test_a_peer_that_is_not_an_address_is_unknown_to_both(settings: Any) -> None:
    settings.TRUSTED_PROXIES = []
    assert rate_limit_address(request_from("not-an-address")) == client_address(request_from("")) == "unknown"
