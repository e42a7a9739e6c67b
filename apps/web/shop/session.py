"""What the shop keeps in the shopper's session: the cart per studio, the protected events whose
code was entered, and the checkouts this session created or opened by their signed order link
(the only ones it may look at).

Everything is JSON-serialisable (Django's session serializer) and bounded, so a session cannot
grow without limit. Keys are per studio (tenant id) where the data is: one browser can shop at
two studios without their carts mixing.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest

CART_KEY = "shop_carts"
# tenant id -> the cart's version: a random token, new whenever the cart's items change.
CART_VERSION_KEY = "shop_cart_versions"
# event id -> the access-code fingerprint it was unlocked with (PublicEvent.access_fingerprint).
UNLOCKED_KEY = "shop_unlocked_codes"
# Before the fingerprint: a list of event ids, which a changed code could not revoke. Ignored.
LEGACY_UNLOCKED_KEY = "shop_unlocked_events"
CHECKOUTS_KEY = "shop_checkouts"
MAX_UNLOCKED_EVENTS = 100
MAX_CHECKOUTS_PER_STUDIO = 50
_VERSION_BYTES = 18


@dataclass(frozen=True)
class CartLine:
    product_id: int
    quantity: int


class Cart:
    """The session cart of one studio: product id -> quantity, in the order first added.

    Adding sets the quantity (it does not add to it), so a resubmitted "add to cart" form changes
    nothing. The session is marked modified only when something changes.

    `version()` names the cart as it is now: a token that changes whenever its items change
    (emptied by a checkout and filled again with the same items, it is another cart). The checkout
    form's nonce is the version, so every form rendered of one cart places one order.
    """

    def __init__(self, session: SessionBase, tenant_id: int) -> None:
        self._session = session
        self._key = str(tenant_id)

    def _items(self) -> dict[str, int]:
        carts = self._session.get(CART_KEY) or {}
        items = carts.get(self._key) or {}
        return {str(k): int(v) for k, v in items.items()}

    def _store(self, items: dict[str, int]) -> None:
        carts = dict(self._session.get(CART_KEY) or {})
        if items:
            carts[self._key] = items
        else:
            carts.pop(self._key, None)
        self._session[CART_KEY] = carts
        # An emptied cart forgets its version (the session stays bounded): the next is a new one.
        self._new_version(keep=bool(items))

    def _new_version(self, *, keep: bool = True) -> str:
        versions = dict(self._session.get(CART_VERSION_KEY) or {})
        version = secrets.token_urlsafe(_VERSION_BYTES)
        if keep:
            versions[self._key] = version
        else:
            versions.pop(self._key, None)
        self._session[CART_VERSION_KEY] = versions
        return version

    def version(self) -> str:
        """The cart's version (one is made for a cart that has none yet)."""
        version = (self._session.get(CART_VERSION_KEY) or {}).get(self._key)
        return str(version) if version else self._new_version()

    def lines(self) -> list[CartLine]:
        return [CartLine(product_id=int(k), quantity=v) for k, v in self._items().items()]

    def quantity_of(self, product_id: int) -> int:
        return self._items().get(str(product_id), 0)

    def set(self, product_id: int, quantity: int) -> None:
        items = self._items()
        if items.get(str(product_id)) != quantity:
            items[str(product_id)] = quantity
            self._store(items)

    def remove(self, product_id: int) -> None:
        items = self._items()
        if items.pop(str(product_id), None) is not None:
            self._store(items)

    def clear(self) -> None:
        if self._items():
            self._store({})

    def item_count(self) -> int:
        return sum(self._items().values())

    def __len__(self) -> int:
        return len(self._items())


def _unlocked_codes(request: HttpRequest) -> dict[str, str]:
    codes = request.session.get(UNLOCKED_KEY)
    return {str(k): str(v) for k, v in codes.items()} if isinstance(codes, dict) else {}


def unlocked(request: HttpRequest, event_id: int, fingerprint: str) -> bool:
    """Whether this session entered the event's current code: the fingerprint it kept is the
    event's fingerprint now (a new code changes it, so sessions that knew the old one relock)."""
    return bool(fingerprint) and _unlocked_codes(request).get(str(event_id)) == fingerprint


def locked(request: HttpRequest, *, event_id: int, protected: bool, fingerprint: str) -> bool:
    """The shop's one access rule: a protected event is locked for this session unless it entered
    the event's current code. Its photos stay hidden, and nothing of it may be bought: not a
    download, a print nor its "all photos" item, even one put in the cart before the code changed."""
    return protected and not unlocked(request, event_id, fingerprint)


def unlock(request: HttpRequest, event_id: int, fingerprint: str) -> None:
    """Remember the event as unlocked with the code whose fingerprint is given (the most recent
    MAX_UNLOCKED_EVENTS events are kept)."""
    codes = _unlocked_codes(request)
    codes.pop(str(event_id), None)
    codes[str(event_id)] = fingerprint
    request.session[UNLOCKED_KEY] = dict(list(codes.items())[-MAX_UNLOCKED_EVENTS:])
    request.session.pop(LEGACY_UNLOCKED_KEY, None)


def remember_checkout(request: HttpRequest, tenant_id: int, checkout_id: uuid.UUID | str) -> None:
    mine = dict(request.session.get(CHECKOUTS_KEY) or {})
    ids = [c for c in mine.get(str(tenant_id), []) if c != str(checkout_id)]
    ids.append(str(checkout_id))
    mine[str(tenant_id)] = ids[-MAX_CHECKOUTS_PER_STUDIO:]
    request.session[CHECKOUTS_KEY] = mine


def session_checkouts(request: HttpRequest, tenant_id: int) -> list[str]:
    """The checkout ids of this studio the session created or opened by their link, oldest first."""
    mine = request.session.get(CHECKOUTS_KEY) or {}
    return [str(c) for c in mine.get(str(tenant_id), [])]


def owns_checkout(request: HttpRequest, tenant_id: int, checkout_id: uuid.UUID | str) -> bool:
    mine = request.session.get(CHECKOUTS_KEY) or {}
    return str(checkout_id) in mine.get(str(tenant_id), [])
