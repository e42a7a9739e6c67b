"""The client's address, as the deployment's own reverse proxies report it.

`REMOTE_ADDR` is the socket's peer. Behind a reverse proxy (a load balancer, nginx in front of
gunicorn) that is the proxy, so every shopper would share one address's rate-limit budget.
`TRUSTED_PROXIES` (`DARKROOM_TRUSTED_PROXIES`, addresses or CIDR networks) names the proxies
whose `X-Forwarded-For` is believed:

* the peer is not a trusted proxy (the default: none is): `REMOTE_ADDR`, and the header is
  ignored, since anyone can send it;
* the peer is a trusted proxy: the header is read from the right, each hop that is itself a
  trusted proxy is skipped, and the first hop that is not is the client. Entries to its left
  were written by the client or by proxies we do not run, so they never count.

A hop that is not an address (garbage a client prepended can only be reached once every hop to
its right is trusted) stops the walk at the last trusted hop: the limit then falls on that proxy,
never on a name the client chose.

Rate limits count against `rate_limit_address`, not the address itself: an IPv6 client is
handed a whole /64 (at least) and picks a fresh address of it at will, so a budget per
address would restart with every one. IPv4 addresses (IPv4-mapped IPv6 ones included) count
as themselves. Logs keep the real address (`client_address`).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN = "unknown"


@functools.lru_cache(maxsize=8)
def trusted_networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """Parse `TRUSTED_PROXIES`. Raises ImproperlyConfigured on an entry that is not an address
    or a network, so a typo cannot silently trust nobody (or everybody)."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ImproperlyConfigured(f"TRUSTED_PROXIES: {entry!r} is not an IP address or network") from exc
    return tuple(networks)


def parse_hop(value: str) -> IPAddress | None:
    """One `X-Forwarded-For` hop or `REMOTE_ADDR` as an address; None if it is not one.

    Accepts the forms proxies write: `192.0.2.1`, `2001:db8::1`, and with a port
    `192.0.2.1:4711` or `[2001:db8::1]:4711`."""
    text = value.strip()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


# The prefix length an IPv6 client is assumed to own (RFC 6177: a site gets a /64 or more).
IPV6_LIMIT_PREFIX = 64


def _client(request: HttpRequest) -> IPAddress | None:
    peer = parse_hop(str(request.META.get("REMOTE_ADDR") or ""))
    if peer is None:
        return None
    networks = trusted_networks(tuple(settings.TRUSTED_PROXIES))
    if not networks or not _is_trusted(peer, networks):
        return peer
    client = peer
    forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR") or "")
    for raw in reversed([hop for hop in forwarded.split(",") if hop.strip()]):
        hop = parse_hop(raw)
        if hop is None:
            break
        client = hop
        if not _is_trusted(hop, networks):
            break
    return client


def client_address(request: HttpRequest) -> str:
    """The address logs attribute the request to (see the module docstring); "unknown" when
    the peer is not an address. Rate limits use `rate_limit_address`."""
    client = _client(request)
    return UNKNOWN if client is None else str(client)


def address_network(address: IPAddress) -> str:
    """The network an address counts as: an IPv4 address is itself, an IPv6 one its /64
    (`2001:db8:1:2::/64`: one client's, or one LAN's)."""
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, IPV6_LIMIT_PREFIX), strict=False))
    return str(address)


def rate_limit_address(request: HttpRequest) -> str:
    """What per-address rate limits count the request against: its client's `address_network`,
    so every address of one IPv6 client shares one budget; "unknown" as `client_address`."""
    client = _client(request)
    return UNKNOWN if client is None else address_network(client)
