"""Rate limits of the web pages: the shop's access-code attempts, find-me searches and "find my
orders" requests, and the studio dashboard's sign-in attempts (`apps/web/studio/views/auth.py`).

The same sliding-window limiter as the API (`apps.ops.rate_limit_check`, one Lua call in Redis),
keyed by what a shopper cannot shed cheaply: the client address (`apps.core.client_address`,
which believes `X-Forwarded-For` only from `TRUSTED_PROXIES`) and, for searches, also the
session; order look-ups also by the e-mail address asked about (hashed: no address is kept in
Redis), so nobody can flood one mailbox. Rates are the settings `SHOP_ACCESS_CODE_RATE`,
`SHOP_FINDME_SESSION_RATE`, `SHOP_FINDME_ADDRESS_RATE`, `SHOP_ORDER_LOOKUP_ADDRESS_RATE` and
`SHOP_ORDER_LOOKUP_EMAIL_RATE` (sign-in: `STUDIO_LOGIN_RATE`, `STUDIO_LOGIN_ADDRESS_RATE`); they
follow `RATE_LIMIT_ENABLED`. As for the API, an unreachable Redis lets requests through (logged
and counted): the limiter protects capacity and slows guessing; the access code is
still checked with the slow password hasher either way.
"""

from __future__ import annotations

import hashlib

from django.http import HttpRequest

from apps.core.client_address import client_address
from apps.ops.ratelimit import setting_rate_wait


def wait_seconds(*checks: tuple[str, str]) -> int:
    """Count one attempt against each (key, name of the rate's setting), keys under "web:"; 0 if
    every limit admits it, else the seconds to wait before the longest-refusing one would."""
    return setting_rate_wait(*((f"web:{key}", setting) for key, setting in checks))


def access_code_wait(request: HttpRequest, *, tenant_id: int, event_id: int) -> int:
    return wait_seconds((f"code:t{tenant_id}:e{event_id}:a{client_address(request)}", "SHOP_ACCESS_CODE_RATE"))


def findme_wait(request: HttpRequest, *, tenant_id: int, event_id: int, session_key: str) -> int:
    return wait_seconds(
        (f"findme:t{tenant_id}:e{event_id}:s{session_key}", "SHOP_FINDME_SESSION_RATE"),
        (f"findme:t{tenant_id}:e{event_id}:a{client_address(request)}", "SHOP_FINDME_ADDRESS_RATE"),
    )


def order_lookup_wait(request: HttpRequest, *, tenant_id: int, email: str | None) -> int:
    """Count a "find my orders" request per studio and client address and, once the form holds a
    valid address (`email`), per studio and that address (case-insensitive)."""
    checks = [(f"orders:t{tenant_id}:a{client_address(request)}", "SHOP_ORDER_LOOKUP_ADDRESS_RATE")]
    if email:
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        checks.append((f"orders:t{tenant_id}:e{digest}", "SHOP_ORDER_LOOKUP_EMAIL_RATE"))
    return wait_seconds(*checks)
