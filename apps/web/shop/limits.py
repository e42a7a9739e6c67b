"""Rate limits of the web pages: the shop's access-code attempts, find-me searches, "find my
orders" requests and checkouts, and the studio dashboard's sign-in attempts
(`apps/web/studio/views/auth.py`).

The same sliding-window limiter as the API (`apps.ops.rate_limit_check`, one Lua call in Redis),
keyed by what a shopper cannot shed cheaply: the client address (`apps.core.rate_limit_address`:
the address for IPv4, the /64 for IPv6, which one client owns whole; `X-Forwarded-For` is
believed only from `TRUSTED_PROXIES`) and, for searches and checkouts, also the session; order
look-ups also by the e-mail address asked about (hashed: no address is kept in Redis), so nobody
can flood one mailbox; a session asking again about an address it asked about within
SHOP_ORDER_LOOKUP_REPEAT_SECONDS is not counted (`order_lookup_asked_recently`: it is sent
nothing either). Access codes also have a budget per event across all addresses
(`SHOP_ACCESS_CODE_EVENT_RATE`), which counts wrong codes only: a guesser with many addresses
or networks still gets that many guesses at one event, then every attempt at it (right code or
not) is refused until the window slides past them; a session that already entered the code
keeps its access. Rates are the settings `SHOP_ACCESS_CODE_RATE`,
`SHOP_ACCESS_CODE_EVENT_RATE`, `SHOP_FINDME_SESSION_RATE`, `SHOP_FINDME_ADDRESS_RATE`,
`SHOP_ORDER_LOOKUP_ADDRESS_RATE`, `SHOP_ORDER_LOOKUP_EMAIL_RATE`, `SHOP_CHECKOUT_ADDRESS_RATE` and
`SHOP_CHECKOUT_SESSION_RATE` (sign-in: `STUDIO_LOGIN_RATE`, `STUDIO_LOGIN_ADDRESS_RATE`); they
follow `RATE_LIMIT_ENABLED`. As for the API, an unreachable Redis lets requests through (logged
and counted): the limiter protects capacity and slows guessing; the access code is
still checked with the slow password hasher either way.

What a checkout may hold is not a rate but a count in PostgreSQL: `checkout_holder` names who a
checkout from this request holds stock for (the client network as above, and a keyed digest of
the session's key), and `checkout_create` counts that holder's open checkouts and held print units
under its locks (SHOP_OPEN_CHECKOUTS_PER_SESSION, SHOP_NETWORK_PRINT_HOLD_PERCENT,
SHOP_NETWORK_LAPSED_HOLD_SECONDS; `apps/commerce/services/checkout.py`). Those do not depend on
`RATE_LIMIT_ENABLED` or Redis.
"""

from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django.utils.crypto import salted_hmac

from apps.commerce.services.checkout import HolderIn
from apps.core.client_address import UNKNOWN, rate_limit_address
from apps.core.redis_guard import REDIS_ERRORS, redis_failed, redis_skipped
from apps.ops.ratelimit import setting_rate_wait

logger = logging.getLogger("darkroom.web.limits")


def wait_seconds(*checks: tuple[str, str], count: bool = True) -> int:
    """Count one attempt against each (key, name of the rate's setting), keys under "web:"; 0 if
    every limit admits it, else the seconds to wait before the longest-refusing one would (with
    `count=False`, only look)."""
    return setting_rate_wait(*((f"web:{key}", setting) for key, setting in checks), count=count)


def _wrong_codes_key(tenant_id: int, event_id: int) -> tuple[str, str]:
    return (f"code-wrong:t{tenant_id}:e{event_id}", "SHOP_ACCESS_CODE_EVENT_RATE")


def access_code_wait(request: HttpRequest, *, tenant_id: int, event_id: int) -> int:
    """Before an access code is checked: 0 if it may be, else the seconds to wait. Refused while
    the event's budget of wrong codes is spent (only looked at here: `access_code_wrong` counts
    it); otherwise the attempt counts against the client address's budget."""
    wait = wait_seconds(_wrong_codes_key(tenant_id, event_id), count=False)
    if wait:
        return wait
    return wait_seconds((f"code:t{tenant_id}:e{event_id}:a{rate_limit_address(request)}", "SHOP_ACCESS_CODE_RATE"))


def access_code_wrong(*, tenant_id: int, event_id: int) -> None:
    """Count a wrong access code against the event's budget (from any address). Looking and
    counting are two calls, so concurrent guesses may overshoot the budget by as many as run at
    once (each of them also counted against its address's budget)."""
    wait_seconds(_wrong_codes_key(tenant_id, event_id))


def findme_wait(request: HttpRequest, *, tenant_id: int, event_id: int, session_key: str, count: bool = True) -> int:
    """Count one face search per event and session (`session_key`, the session's caller) and per
    event and client address: 0 if both admit it, else the seconds to wait (with `count=False`,
    only look). An empty `session_key` (a request without a session yet, which cannot have spent
    a session's budget) is looked at or counted by its address alone."""
    checks = [(f"findme:t{tenant_id}:e{event_id}:a{rate_limit_address(request)}", "SHOP_FINDME_ADDRESS_RATE")]
    if session_key:
        checks.append((f"findme:t{tenant_id}:e{event_id}:s{session_key}", "SHOP_FINDME_SESSION_RATE"))
    return wait_seconds(*checks, count=count)


def _email_digest(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]


def order_lookup_wait(request: HttpRequest, *, tenant_id: int, email: str | None) -> int:
    """Count a "find my orders" request per studio and client address and, once the form holds a
    valid address (`email`), per studio and that address (case-insensitive)."""
    checks = [(f"orders:t{tenant_id}:a{rate_limit_address(request)}", "SHOP_ORDER_LOOKUP_ADDRESS_RATE")]
    if email:
        checks.append((f"orders:t{tenant_id}:e{_email_digest(email)}", "SHOP_ORDER_LOOKUP_EMAIL_RATE"))
    return wait_seconds(*checks)


def _order_lookup_asked_key(*, tenant_id: int, session_key: str, email: str) -> str:
    # Under the cache's key prefix; neither the session's key nor the address is kept in clear.
    return f"web:orders-asked:t{tenant_id}:s{session_digest(session_key)[:32]}:e{_email_digest(email)}"


def order_lookup_asked_recently(*, tenant_id: int, session_key: str, email: str) -> bool:
    """Whether this session's lookup of `email` (case-insensitive) at the studio landed on the
    "sent" page less than SHOP_ORDER_LOOKUP_REPEAT_SECONDS ago (`order_lookup_asked`). False
    when the window is 0 or Redis is unreachable (logged; not asked while `redis_skipped`): the
    request then counts as any other."""
    if settings.SHOP_ORDER_LOOKUP_REPEAT_SECONDS <= 0 or redis_skipped("order_lookup"):
        return False
    try:
        return cache.get(_order_lookup_asked_key(tenant_id=tenant_id, session_key=session_key, email=email)) is not None
    except REDIS_ERRORS as error:
        logger.warning("order lookup repeat unknown (redis); counted", exc_info=True)
        redis_failed("order_lookup", error, log=False)
        return False


def order_lookup_asked(*, tenant_id: int, session_key: str, email: str) -> None:
    """Remember for SHOP_ORDER_LOOKUP_REPEAT_SECONDS that this session's lookup of `email` landed
    on the "sent" page. The window runs from the first landing (a repeat does not stretch it).
    An unreachable Redis forgets it (logged; not asked while `redis_skipped`): the next repeat is
    counted."""
    seconds = int(settings.SHOP_ORDER_LOOKUP_REPEAT_SECONDS)
    if seconds <= 0 or redis_skipped("order_lookup"):
        return
    try:
        cache.add(_order_lookup_asked_key(tenant_id=tenant_id, session_key=session_key, email=email), 1, seconds)
    except REDIS_ERRORS as error:
        logger.warning("order lookup not remembered (redis)", exc_info=True)
        redis_failed("order_lookup", error, log=False)


def checkout_wait(request: HttpRequest, *, tenant_id: int, session_key: str) -> int:
    """Count one attempt to place an order per studio and client address and per studio and
    session: 0 if both admit it, else the seconds to wait."""
    return wait_seconds(
        (f"checkout:t{tenant_id}:a{rate_limit_address(request)}", "SHOP_CHECKOUT_ADDRESS_RATE"),
        (f"checkout:t{tenant_id}:s{session_key}", "SHOP_CHECKOUT_SESSION_RATE"),
    )


def session_digest(session_key: str) -> str:
    """What a checkout stores of the session that placed it (`Checkout.client_session`): a keyed
    digest (SECRET_KEY), so the table never holds a key that would open the session."""
    return salted_hmac("darkroom.shop.checkout-session", session_key, algorithm="sha256").hexdigest()


def checkout_holder(request: HttpRequest) -> HolderIn:
    """Who a checkout placed by this request holds stock for: its client network (an IPv4 address
    or an IPv6 /64, as the rate limits count it; none when the address is unknown) and its
    session (which must have a key: `apps.web.submit_once.session_caller` makes one)."""
    network = rate_limit_address(request)
    key = request.session.session_key
    return HolderIn(network="" if network == UNKNOWN else network, session=session_digest(key) if key else "")
