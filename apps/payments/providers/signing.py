"""Stripe's webhook signature scheme (`t=<unix>,v1=<hex>[,v1=<hex>...]`), used by Stripe and by
the sandbox provider.

The signed payload is ``f"{t}."`` followed by the raw request bytes, HMAC-SHA256 with the
endpoint secret, hex encoded. A delivery is authentic when ANY `v1` value matches ANY configured
secret (during a secret rotation Stripe sends one `v1` per active secret, and Darkroom may list
old and new secrets), compared in constant time, and its timestamp is within `tolerance` seconds
of now in either direction (a replay window; future timestamps beyond it are refused as well).
Other schemes (`v0`, test-mode signatures) are ignored, as Stripe recommends.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Sequence

from apps.payments.providers.base import WebhookSignatureError

MAX_SIGNATURES = 16  # bounds the HMAC work one forged header can cause
# Unix seconds up to the year 33658; a longer t= is no time (int() refuses more than 4,300 digits,
# and a float cannot hold the replay-window arithmetic of 309 or more).
MAX_TIMESTAMP_DIGITS = 12


def compute_signature(*, body: bytes, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign_header(*, body: bytes, secrets: Sequence[str], timestamp: int | None = None) -> str:
    """The header value a sender puts on a delivery: one `v1` per secret (rotation)."""
    ts = int(time.time()) if timestamp is None else timestamp
    parts = [f"t={ts}", *(f"v1={compute_signature(body=body, secret=s, timestamp=ts)}" for s in secrets)]
    return ",".join(parts)


def parse_header(header: str, *, header_name: str) -> tuple[int, list[str]]:
    """Split a `t=...,v1=...` header. Raises WebhookSignatureError when it is malformed."""
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or not key or not value:
            raise WebhookSignatureError(f"malformed {header_name} header: element {item.strip()!r} is not key=value")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value)
    if (
        len(timestamps) != 1
        or not timestamps[0].isascii()
        or not timestamps[0].isdigit()
        or len(timestamps[0]) > MAX_TIMESTAMP_DIGITS
    ):
        raise WebhookSignatureError(f"malformed {header_name} header: it needs exactly one numeric t=")
    if not signatures:
        raise WebhookSignatureError(f"{header_name} header has no v1 signature")
    if len(signatures) > MAX_SIGNATURES:
        raise WebhookSignatureError(f"{header_name} header has more than {MAX_SIGNATURES} signatures")
    return int(timestamps[0]), signatures


def verify_header(
    *,
    body: bytes,
    header: str | None,
    secrets: Sequence[str],
    tolerance_seconds: int,
    header_name: str,
    now: Callable[[], float] = time.time,
) -> int:
    """Verify a delivery; return its signed timestamp. Raises WebhookSignatureError (reason)."""
    usable = [s for s in secrets if s]
    if not usable:
        raise WebhookSignatureError(f"no webhook secret is configured for {header_name}")
    if not header:
        raise WebhookSignatureError(f"missing {header_name} header")
    timestamp, signatures = parse_header(header, header_name=header_name)
    expected = [compute_signature(body=body, secret=secret, timestamp=timestamp) for secret in usable]
    # Every pair is compared (no early exit) so timing does not reveal which one matched.
    matched = False
    for candidate in signatures:
        for digest in expected:
            matched |= hmac.compare_digest(candidate.encode(), digest.encode())
    if not matched:
        raise WebhookSignatureError(f"no {header_name} v1 signature matches the body and a configured secret")
    skew = now() - timestamp
    if skew > tolerance_seconds:
        raise WebhookSignatureError(f"{header_name} timestamp is {int(skew)} s old (tolerance {tolerance_seconds} s)")
    if -skew > tolerance_seconds:
        raise WebhookSignatureError(
            f"{header_name} timestamp is {int(-skew)} s in the future (tolerance {tolerance_seconds} s)"
        )
    return timestamp
