"""Checkout writes: create (lines, reservations, outbox), settle, provider session, expiry.

Transaction boundaries. `checkout_create` joins the caller's transaction: the API's
Idempotency-Key protocol holds ONE transaction around the request, so the checkout, its lines,
its reservations, its `Transaction` row and the `checkout.created` outbox message commit (or
roll back) together with the idempotency key. The provider is never called in there.

Provider session (chosen design). The session is created AFTER that commit by the durable
path only: the outbox relay hands `checkout.created` to a consumer
(`tasks.commerce.on_checkout_created`) that calls `checkout_payment_session_ensure` outside any
transaction, with the checkout id as the provider's idempotency key, and stores the reference
and payment URL. So the 201 answers `status: awaiting_payment_session, payment_url: null`;
`GET /api/v1/checkouts/{id}` shows `awaiting_payment` and the URL once it exists (for every
provider alike, the sandbox included). No `on_commit` fast path: inside the idempotency
protocol it would run before the response is sent anyway, and the replayed body would still say
null. A provider failure leaves the checkout `awaiting_payment_session` with
`payment_session_error`; the consumer retries with backoff, and the client may ask again with
`POST /api/v1/checkouts/{id}/payment-session` (another outbox message). Every attempt sends the
same idempotency key, so no attempt can make a second session, and the reference columns are
unique. The provider is told when the checkout expires (`expires_at`), so a provider that can
time a session out ends it then, or as soon after as it allows (Stripe: 35 minutes later;
Flutterwave: `session_duration`; the sandbox: then). A checkout already past its expiry gets no
session: the expiry sweep closes it instead.

Closing the session (chosen design). A checkout that expires unpaid releases its stock, so the
provider's session must stop taking the shopper's money. The expiry transaction
(`checkout_expire`) writes a `checkout.payment_session_close_requested` outbox message when the
checkout has a provider reference; if the session was still being created, `_session_created`
writes it when it stores the reference of a checkout that expired meanwhile. Both decide under
the checkout's row lock, so each expired checkout gets exactly one such message. Its consumer
(`tasks.commerce.close_payment_session`, providers queue) calls
`checkout_payment_session_close` outside any transaction: the adapter's `close_payment_session`
(Stripe expires the session; PayPal and Flutterwave have no such call, see their adapters), then
one short transaction writes the message's inbox row and the checkout's
`payment_session_close_concluded_at`, so neither a redelivered message nor a later one calls the
provider again. A payment that still races the close is refunded as a late payment (`payment.py`).
Whoever writes the message stamps `payment_session_close_queued_at`; a close queued and not
concluded is still owed, and `payment_session_closes_requeue_stale` queues it again once its
message is REQUEUE_STALE_AFTER_SECONDS old (the broker lost it, or the consumer ran out of
retries), for as long as a provider session can outlive its checkout (SESSION_CLOSE_OWED_FOR).

Shipping (prints are physical). A checkout with print lines carries the shopper's shipping
address (`ShippingIn`, stored as its `CheckoutShipping` row); one without print lines carries
none. Both are refused before anything is written (InvalidShippingAddress, field errors under
`shipping.<field>`). The row is written in the checkout's own INSERT statement (one more
data-modifying CTE), so shipping costs no extra round trip, and download-only checkouts run
exactly the statement they ran before. The address is checked as a carrier reads a label
(`_check_shipping`): text a label can carry (NFC, no control characters, no combining mark without
its letter), the postal code in the country's format and the region where carriers need one
(`apps.commerce.countries`). Fulfilment (`unfulfilled` → `shipped`) lives in
`apps/commerce/services/fulfilment.py`.

Closing early (chosen design). A studio that withdraws a photo (`apps.catalog.withdrawal`) stops
its sale at once: from that commit on no payment of an open checkout can buy it (`payment.py`
refuses and refunds, under the photos' row locks), and the withdrawal's consumer closes the open
checkouts that sell it (`checkouts_close_for_withdrawn_photo`) with the expiry's machinery
(`_expire_locked`): `expired` with `closed_reason` `photo_withdrawn`, stock released once, the
provider session closed as above.

Holds per client (chosen design). Every unpaid checkout holds stock until it is paid or lapses,
so `checkout_create` bounds what one client may hold, given who it is (`HolderIn`, stored on the
checkout as `client_network` and `client_session`): the shop passes the client's network (an
IPv4 address, or an IPv6 /64, `rate_limit_address`) and a digest of its session's key; an API
client may pass the shopper's address (`shopper_ip`). In the checkout's own transaction, before
anything is written, it takes a transaction-scoped advisory lock per holder (session, network; in
key order) and then counts that holder's checkouts (indexed), so two checkouts of one holder are
decided one after the other and neither can miss the other (a count without the lock would):
* a session may have SHOP_OPEN_CHECKOUTS_PER_SESSION open checkouts at the studio
  (OpenCheckoutsLimitReached, 429);
* per print of the checkout, a network's open checkouts may hold SHOP_NETWORK_PRINT_HOLD_PERCENT
  of the print's stock (`initial_quantity`, at least one unit) at once: dropping the session
  cookie gives a client no more of it. A share, not an absolute number, since a venue's Wi-Fi or a
  carrier's NAT puts hundreds of shoppers behind one IPv4 address (and a LAN's devices share its
  IPv6 /64), and genuine shoppers pay within minutes: only units awaiting payment count;
* units a network let lapse unpaid (`expired`, not closed early) in the last
  SHOP_NETWORK_LAPSED_HOLD_SECONDS count as still held by it while what is left of the print
  (its stock plus what the network holds) does not cover them too: a client that lets a scarce
  print lapse cannot take it straight back, while others can buy it (re-hoarding). While plenty
  is left this costs nobody anything.
A refusal writes nothing (PrintHoldLimitReached: 429 with the seconds until the soonest counted
hold stops counting, or 409 for a quantity above the share itself, which no wait helps). A holder
the caller does not know (blank) is not limited: no lock, no count, so the API's hot-stock path
(no `shopper_ip`) does the work it did before.

Lock order, everywhere: holder advisory locks (checkout creation only, key order) → checkout row →
transaction row → photo rows (FOR KEY SHARE, a paid fact only) → reservations → stock rows (pk
order).
"""

from __future__ import annotations

import functools
import logging
import math
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, Field, OuterRef
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from apps.catalog.errors import PriceNotSet
from apps.catalog.models import Photo, Price, Product, ProductKind
from apps.commerce.countries import COUNTRY_CODES, COUNTRY_NAMES, NO_POSTAL_CODE, POSTAL_RULES, REGIONS, region_code
from apps.commerce.errors import (
    CheckoutNotAwaitingSession,
    CheckoutNotFound,
    InvalidCheckoutLine,
    InvalidReturnUrl,
    InvalidShippingAddress,
    MixedCurrencies,
    OpenCheckoutsLimitReached,
    PrintHoldLimitReached,
    ProviderUnavailable,
)
from apps.commerce.inventory import get_strategy
from apps.commerce.models import (
    PROVIDER_REFERENCE_FIELD,
    RETURN_URL_MAX_LENGTH,
    SHIPPING_CITY_MAX_LENGTH,
    SHIPPING_LINE_MAX_LENGTH,
    SHIPPING_NAME_MAX_LENGTH,
    SHIPPING_PHONE_MAX_LENGTH,
    SHIPPING_POSTAL_CODE_MAX_LENGTH,
    SHIPPING_REGION_MAX_LENGTH,
    Checkout,
    CheckoutLine,
    CheckoutShipping,
    InventoryReservation,
    Provider,
    Transaction,
)
from apps.core.client_address import address_network, parse_hop
from apps.core.text import is_unicode_text, text_field_problem
from apps.outbox.models import InboxEntry
from apps.outbox.requeue import requeue_stale
from apps.outbox.services import consume_once, outbox_publish
from apps.payments.providers.base import ProviderError, ProviderSession, SessionCloseOutcome, UnknownProviderError
from apps.payments.providers.registry import get_provider
from apps.payments.providers.returns import ShopperReturn, return_url_marked
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import Membership

logger = logging.getLogger("darkroom.commerce")

TOPIC_CHECKOUT_CREATED = "checkout.created"
TOPIC_CHECKOUT_PAYABLE = "checkout.payable"
TOPIC_PAYMENT_SESSION_REQUESTED = "checkout.payment_session_requested"
TOPIC_PAYMENT_SESSION_CLOSE_REQUESTED = "checkout.payment_session_close_requested"
# The consumer of TOPIC_PAYMENT_SESSION_CLOSE_REQUESTED: also the name of its inbox rows.
SESSION_CLOSE_CONSUMER = "commerce.close_payment_session"
# How long after its checkout's expiry a session's close is still owed: the longest a provider
# session can outlive its checkout. A Stripe session ends at most 24 hours after its create
# request (Stripe's cap), which is made before the checkout's expiry; the sandbox's ends at the
# expiry; Flutterwave and PayPal have no close call. Past this a close that never concluded (a
# provider down for a day, a provider no longer configured) is not asked for again.
SESSION_CLOSE_OWED_FOR = timedelta(hours=24)


@dataclass(frozen=True)
class LineIn:
    """One requested line: a product, the photo it is of (optional: the product names it), and
    a quantity (prints only may exceed 1)."""

    product_id: int
    quantity: int = 1
    photo_id: int | None = None


@dataclass(frozen=True)
class ShippingIn:
    """Where a checkout's prints go, as the shopper typed it (the service trims and checks it).
    `country` is an ISO 3166-1 alpha-2 code (any case); `line2`, `region`, `phone` are optional."""

    name: str
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str = ""
    region: str = ""
    phone: str = ""


@dataclass(frozen=True)
class HolderIn:
    """Who a new checkout holds stock for, as far as its caller knows (see the module docstring);
    blank: unknown, not limited. `network` as `client_network_of` gives it (an IPv4 address, or an
    IPv6 /64); `session` a digest of the shop session's key (`apps.web.shop.limits`), never the
    key itself. Stored on the checkout as `client_network` and `client_session`."""

    network: str = ""
    session: str = ""


def client_network_of(address: str) -> str:
    """The network a client address counts as, as the rate limits count it
    (`apps.core.client_address.address_network`; an IPv4-mapped IPv6 address is its IPv4 one).
    Raises ValueError for a string that is not an IP address."""
    parsed = parse_hop(address)
    if parsed is None:
        raise ValueError(f"{address!r} is not an IP address")
    return address_network(parsed)


# (field, required, max length): what `_check_shipping` enforces, in the order errors are listed.
SHIPPING_FIELDS: tuple[tuple[str, bool, int], ...] = (
    ("name", True, SHIPPING_NAME_MAX_LENGTH),
    ("line1", True, SHIPPING_LINE_MAX_LENGTH),
    ("line2", False, SHIPPING_LINE_MAX_LENGTH),
    ("city", True, SHIPPING_CITY_MAX_LENGTH),
    ("postal_code", False, SHIPPING_POSTAL_CODE_MAX_LENGTH),  # required by `_check_postal_code`
    ("region", False, SHIPPING_REGION_MAX_LENGTH),
    ("country", True, 2),
    ("phone", False, SHIPPING_PHONE_MAX_LENGTH),
)
_PHONE_CHARACTERS = frozenset("0123456789+-(). /")
_POSTAL_CODE_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -")
# Fields a label is routed by: one without a letter or digit ("---", an emoji) is no address.
_NEEDS_LETTER_OR_DIGIT = frozenset({"name", "line1", "city"})


class _ProductForSale(NamedTuple):
    """An active product with its photo's photographer and its event's price (None: unpriced)."""

    product_id: int
    event_id: int
    kind: str
    size: str
    photo_id: int | None
    photographer_id: int | None
    amount_minor: int | None
    currency: str | None


@dataclass(frozen=True)
class _PricedLine:
    """A validated line: bulk lines carry no photo and credit the studio's owner."""

    product: _ProductForSale
    photo_id: int | None
    photographer_id: int | None
    quantity: int
    unit_amount_minor: int
    currency: str


# --- create --------------------------------------------------------------------------------


def _check_provider(provider: str) -> None:
    if provider not in Provider.values:
        raise ProviderUnavailable(f"Unknown payment provider {provider!r}.")
    if provider == Provider.SANDBOX and not settings.SANDBOX_ENABLED:
        raise ProviderUnavailable("The sandbox provider is turned off here.")
    try:
        get_provider(provider)
    except (UnknownProviderError, ValueError) as exc:
        raise ProviderUnavailable(f"Payment provider {provider!r} is not configured: {exc}") from exc


def _check_return_url(return_url: str) -> None:
    """Refuse what a provider could not send a browser back to: the URL goes into every
    provider's session as it is (`darkroom_return` added to its query), only once the checkout is
    committed, and a refusal then would leave the shopper a checkout without a way to pay. Host
    names need no dot (a deployment's DARKROOM_PUBLIC_BASE_URL may be `http://web:8000`)."""
    if not return_url:
        return
    if len(return_url) > RETURN_URL_MAX_LENGTH:
        raise InvalidReturnUrl(f"A return URL has at most {RETURN_URL_MAX_LENGTH} characters.")
    # RFC 3986: a URI is ASCII; whitespace and control characters are never part of one.
    if not return_url.isascii() or any(ch.isspace() or not ch.isprintable() for ch in return_url):
        raise InvalidReturnUrl("A return URL is ASCII without spaces or control characters (percent-encode the rest).")
    absolute = "A return URL is an absolute http or https URL."
    try:
        parts = urlsplit(return_url)
        port = parts.port  # ValueError: not a number, or out of range
    except ValueError as exc:
        raise InvalidReturnUrl(absolute) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise InvalidReturnUrl(absolute)
    if parts.username is not None or parts.password is not None:
        raise InvalidReturnUrl("A return URL carries no user name or password.")


def _label_text_problem(value: str) -> str:
    """What makes an NFC, stripped, printable field unfit for a shipping label, as a sentence for
    the user; "" when nothing does. A combining mark must follow the character it marks (one at
    the start, or after a space, has none: a carrier's printer renders it as a stray accent or a
    box)."""
    previous = " "
    for ch in value:
        if unicodedata.category(ch).startswith("M") and previous.isspace():
            return "An accent or other combining mark must follow a letter."
        previous = ch
    return ""


def _check_postal_code(value: str, country: str) -> tuple[str, str]:
    """The stored postal code (upper-cased) of a stripped, NFC `value` for `country`, and what is
    wrong with it ("" when nothing is): letters, digits, spaces and hyphens only (ASCII: what a
    label and a carrier's systems take), in the country's format where POSTAL_RULES has one.
    Required, except in the countries that have no postal codes (NO_POSTAL_CODE)."""
    code = value.upper()
    if not code:
        return code, "" if country in NO_POSTAL_CODE else "This field is required."
    # ASCII before upper-casing: "ß" upper-cases to "SS".
    if not value.isascii() or set(code) - _POSTAL_CODE_CHARACTERS:
        return code, "A postal code has letters, digits, spaces and hyphens only."
    rule = POSTAL_RULES.get(country)
    if rule is not None and rule.pattern is not None and not rule.pattern.fullmatch(code):
        return code, f"Not a postal code of {COUNTRY_NAMES[country]} (like {rule.example})."
    return code, ""


def _check_region(value: str, country: str) -> tuple[str, str]:
    """The stored region of `value` for `country`, and what is wrong with it: where carriers need
    one (REGIONS) it is required and must name one of the country's (by code or name; the code
    is stored); elsewhere it is optional and kept as typed."""
    if country not in REGIONS:
        return value, ""
    if not value:
        return value, f"Required for an address in {COUNTRY_NAMES[country]}."
    code = region_code(country, value)
    if code is None:
        return value, f"Not a state, province or territory of {COUNTRY_NAMES[country]}: use its name or code."
    return code, ""


def _check_shipping(*, shipping: ShippingIn | None, has_prints: bool) -> dict[str, str] | None:
    """The cleaned address columns of `shipping` (None for a checkout without prints).

    A checkout with print lines needs a complete address; one without must not carry one.
    Values are NFC-normalised and trimmed (whitespace runs inside kept as typed); every field is
    text a label can carry (no control or format characters, no combining mark without its
    letter); the name, first line and city hold a letter or digit; the country is upper-cased and
    must be an assigned ISO 3166-1 alpha-2 code; the postal code is upper-cased, letters, digits,
    spaces and hyphens, in the country's format (`POSTAL_RULES`); the region is required, and
    stored as its code, where carriers need one (`REGIONS`: US, CA, AU). Raises
    InvalidShippingAddress with every problem at once in `errors` (`shipping.<field>`).
    """
    if not has_prints:
        if shipping is not None:
            raise InvalidShippingAddress(
                "Only a checkout with prints takes a shipping address; this one has none.",
                extra={"errors": {"shipping": ["Leave the shipping address out: nothing in this order is shipped."]}},
            )
        return None
    if shipping is None:
        raise InvalidShippingAddress(
            "Prints are shipped: a checkout with prints needs a shipping address.",
            extra={"errors": {"shipping": ["A shipping address is required for prints."]}},
        )
    cleaned: dict[str, str] = {}
    errors: dict[str, list[str]] = {}
    for field, required, max_length in SHIPPING_FIELDS:
        raw = getattr(shipping, field)
        value = unicodedata.normalize("NFC", raw).strip() if isinstance(raw, str) and is_unicode_text(raw) else ""
        problem = (
            "Must be text."
            if not isinstance(raw, str) or not is_unicode_text(raw)
            else text_field_problem(value, required=required, max_length=max_length) or _label_text_problem(value)
        )
        if not problem and field in _NEEDS_LETTER_OR_DIGIT and not any(ch.isalnum() for ch in value):
            problem = "Must hold a letter or digit."
        if not problem and field == "country":
            value = value.upper()
            if value not in COUNTRY_CODES:
                problem = "Not an ISO 3166-1 alpha-2 country code."
        elif not problem and field == "phone" and value:
            if set(value) - _PHONE_CHARACTERS or not any(c.isdigit() for c in value):
                problem = "A phone number has digits, spaces and + - ( ) . / only."
        if problem:
            errors[f"shipping.{field}"] = [problem]
        cleaned[field] = value
    # Checked against the country once it is known to be one (SHIPPING_FIELDS lists it after them).
    if "shipping.country" not in errors:
        for field, check in (("postal_code", _check_postal_code), ("region", _check_region)):
            if f"shipping.{field}" not in errors:
                cleaned[field], problem = check(cleaned[field], cleaned["country"])
                if problem:
                    errors[f"shipping.{field}"] = [problem]
    if errors:
        # Read by shoppers (the shop's cart) and integrators (`errors` holds the fields) alike.
        raise InvalidShippingAddress(
            "The shipping address is incomplete or has mistakes: check the fields marked.", extra={"errors": errors}
        )
    return cleaned


def _studio_owner_id(tenant_id: int) -> int | None:
    """Who is credited for bulk sales: the studio's first owner."""
    return (
        Membership.objects.filter(tenant_id=tenant_id, role=Membership.Role.OWNER)
        .order_by("pk")
        .values_list("user_id", flat=True)
        .first()
    )


_PRODUCTS_FOR_SALE_SQL = f"""
    SELECT p.id, p.event_id, p.kind, p.size, p.photo_id, ph.photographer_id, pr.amount_minor, pr.currency
      FROM {Product._meta.db_table} p
      LEFT JOIN {Photo._meta.db_table} ph ON ph.tenant_id = p.tenant_id AND ph.id = p.photo_id
      LEFT JOIN {Price._meta.db_table} pr
             ON pr.tenant_id = p.tenant_id AND pr.event_id = p.event_id AND pr.kind = p.kind AND pr.size = p.size
     WHERE p.tenant_id = %s AND p.id = ANY(%s::bigint[]) AND p.active AND ph.withdrawn_at IS NULL
"""


def _products_for_sale(*, tenant_id: int, lines: Sequence[LineIn]) -> list[_ProductForSale]:
    """The active products the `lines` name (not those of a withdrawn photo; a bulk product has no
    photo, and the LEFT JOIN's NULL passes), each with its photo's photographer
    and its event's price for (kind, size) (None when unpriced): one statement, on the hot
    path of every checkout."""
    with connection.cursor() as cursor:
        cursor.execute(_PRODUCTS_FOR_SALE_SQL, [tenant_id, sorted({line.product_id for line in lines})])
        return [_ProductForSale(*row) for row in cursor.fetchall()]


def _price_lines(*, tenant_id: int, lines: Sequence[LineIn]) -> list[_PricedLine]:
    """Validate and price every line (reads only). Raises InvalidCheckoutLine, PriceNotSet,
    MixedCurrencies."""
    if not lines:
        raise InvalidCheckoutLine("A checkout needs at least one line.")
    if len(lines) > settings.CHECKOUT_MAX_LINES:
        raise InvalidCheckoutLine(f"A checkout has at most {settings.CHECKOUT_MAX_LINES} lines.")
    products = {row.product_id: row for row in _products_for_sale(tenant_id=tenant_id, lines=lines)}
    owner_id: int | None = None
    priced: list[_PricedLine] = []
    seen: set[tuple[str, int]] = set()
    # A bulk line covers every photo of its event, so a download of one of them next to it would
    # be paid twice (prints are goods, not covered). Events of the lines so far, by kind.
    events_of: dict[str, set[int]] = {ProductKind.BULK: set(), ProductKind.DOWNLOAD: set()}
    for index, line in enumerate(lines):
        where = {"line": index}
        product = products.get(line.product_id)
        if product is None:
            raise InvalidCheckoutLine(f"Product {line.product_id} is not for sale.", extra=where)
        if line.quantity < 1:
            raise InvalidCheckoutLine("Quantity must be at least 1.", extra=where)
        if product.kind != ProductKind.PRINT and line.quantity != 1:
            raise InvalidCheckoutLine(f"A {product.kind} is bought once per checkout (quantity 1).", extra=where)
        if line.quantity > settings.CHECKOUT_MAX_PRINT_QUANTITY:
            raise InvalidCheckoutLine(
                f"At most {settings.CHECKOUT_MAX_PRINT_QUANTITY} prints of one product per line.", extra=where
            )
        if product.kind == ProductKind.BULK:
            if line.photo_id is not None:
                raise InvalidCheckoutLine("A bulk product covers a whole event; do not name a photo.", extra=where)
            if owner_id is None:
                owner_id = _studio_owner_id(tenant_id)
            photographer_id = owner_id
            photo_id = None
        else:
            if line.photo_id is not None and line.photo_id != product.photo_id:
                raise InvalidCheckoutLine(
                    f"Product {product.product_id} is not a product of photo {line.photo_id}.", extra=where
                )
            assert product.photo_id is not None, "download and print products name a photo (check constraint)"
            photographer_id = product.photographer_id
            photo_id = product.photo_id
        if photographer_id is None:
            raise InvalidCheckoutLine("Nobody at this studio can be credited for the sale.", extra=where)
        # One entitlement per photo (or event) per payment: buying it twice would charge twice.
        identity = (
            (product.kind, product.product_id) if product.kind == ProductKind.PRINT else ("original", photo_id or 0)
        )
        if product.kind == ProductKind.BULK:
            identity = ("bulk", product.event_id)
        if identity in seen:
            raise InvalidCheckoutLine("The same item appears twice; combine the lines.", extra=where)
        seen.add(identity)
        if product.kind in events_of:
            other_kind = ProductKind.DOWNLOAD if product.kind == ProductKind.BULK else ProductKind.BULK
            if product.event_id in events_of[other_kind]:
                raise InvalidCheckoutLine(
                    f"The bulk product of event {product.event_id} (all its photos) includes the downloads of its "
                    "photos; leave the downloads out.",
                    extra=where,
                )
            events_of[product.kind].add(product.event_id)
        if product.amount_minor is None or product.currency is None:
            raise PriceNotSet(f"Product {product.product_id} has no price yet.", extra=where)
        priced.append(
            _PricedLine(
                product=product,
                photo_id=photo_id,
                photographer_id=photographer_id,
                quantity=line.quantity,
                unit_amount_minor=product.amount_minor,
                currency=product.currency,
            )
        )
    currencies = {line.currency for line in priced}
    if len(currencies) != 1:
        raise MixedCurrencies(f"Lines are priced in {', '.join(sorted(currencies))}; one checkout, one currency.")
    return priced


# --- holds per client (see the module docstring) ---------------------------------------------

_OPEN = ", ".join(f"'{status}'" for status in Checkout.OPEN_STATUSES)
_HOLDER_LOCK_CLASS = "commerce:checkout-holder"

# Per print of a new checkout: its stock (left, and every unit offered) and what the network's
# checkouts hold of it: units of open ones (`held`) and, of those, units their confirmed
# reservations took out of the stock (`taken`), units of ones that lapsed unpaid since `since`
# (`lapsed`), and when the soonest of each stops counting. Sold-out lines held nothing. Reads the
# network's checkouts through `commerce_checkout_net_holds`, their lines by checkout.
_NETWORK_HOLDS_SQL = f"""
    WITH holds AS (
        SELECT l.product_id,
               SUM(l.quantity) FILTER (WHERE c.status IN ({_OPEN})) AS held,
               SUM(r.quantity) FILTER (WHERE c.status IN ({_OPEN}) AND r.status = 'confirmed') AS taken,
               SUM(l.quantity) FILTER (WHERE c.status = 'expired') AS lapsed,
               MIN(c.expires_at) FILTER (WHERE c.status IN ({_OPEN})) AS open_ends,
               MIN(c.expires_at) FILTER (WHERE c.status = 'expired') AS lapsed_since
          FROM {Checkout._meta.db_table} c
          JOIN {CheckoutLine._meta.db_table} l ON l.tenant_id = c.tenant_id AND l.checkout_id = c.id
          LEFT JOIN {InventoryReservation._meta.db_table} r ON r.line_id = l.id
         WHERE c.tenant_id = %(tenant_id)s AND c.client_network = %(network)s AND c.expires_at > %(since)s
           AND (c.status IN ({_OPEN}) OR (c.status = 'expired' AND c.closed_reason = ''))
           AND l.product_id = ANY(%(product_ids)s::bigint[]) AND l.state <> 'sold_out'
         GROUP BY l.product_id
    )
    SELECT s.product_id, s.quantity, s.initial_quantity, COALESCE(h.held, 0), COALESCE(h.taken, 0),
           COALESCE(h.lapsed, 0), h.open_ends, h.lapsed_since
      FROM catalog_stock s
      LEFT JOIN holds h ON h.product_id = s.product_id
     WHERE s.tenant_id = %(tenant_id)s AND s.product_id = ANY(%(product_ids)s::bigint[])
"""


def _lock_holders(*, tenant_id: int, names: Sequence[str]) -> None:
    """Take the transaction-scoped advisory lock of each holder name, in key order (so two
    checkouts never wait for each other in a cycle). In the caller's transaction; held to its end."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(name))"
            " FROM unnest(%s::text[]) AS name ORDER BY hashtext(name), name",
            [_HOLDER_LOCK_CLASS, [f"t{tenant_id}:{name}" for name in names]],
        )


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


def _check_session_open_checkouts(*, tenant_id: int, session: str, now: datetime) -> None:
    """Refuse a checkout of a session that has SHOP_OPEN_CHECKOUTS_PER_SESSION open checkouts at
    the studio. Under the session's lock (`_lock_holders`). Raises OpenCheckoutsLimitReached."""
    cap = settings.SHOP_OPEN_CHECKOUTS_PER_SESSION
    held = list(
        Checkout.objects.filter(tenant_id=tenant_id, client_session=session, status__in=Checkout.OPEN_STATUSES)
        .order_by("expires_at", "pk")
        .values_list("pk", "expires_at")
    )
    if len(held) >= cap:
        raise OpenCheckoutsLimitReached(
            f"You have {len(held)} orders waiting for payment. Pay for one of them, or wait until an unpaid one "
            "lapses, then place this order.",
            retry_after=_seconds_until(held[0][1], now) if held else settings.INVENTORY_RESERVATION_TTL_SECONDS,
            checkout_ids=[str(pk) for pk, _ in held],
        )


def _check_network_holds(*, tenant_id: int, network: str, wanted: dict[int, int], now: datetime) -> None:
    """Refuse a checkout whose prints (`wanted`: product id -> units) would leave the network
    holding more of one than it may (see the module docstring). Under the network's lock
    (`_lock_holders`). A print without a stock row is left to the inventory (sold out). Raises
    PrintHoldLimitReached."""
    percent = settings.SHOP_NETWORK_PRINT_HOLD_PERCENT
    lapsed_for = timedelta(seconds=settings.SHOP_NETWORK_LAPSED_HOLD_SECONDS)
    with connection.cursor() as cursor:
        cursor.execute(
            _NETWORK_HOLDS_SQL,
            {"tenant_id": tenant_id, "network": network, "since": now - lapsed_for, "product_ids": sorted(wanted)},
        )
        rows = cursor.fetchall()
    for product_id, left, offered, held, taken, lapsed, open_ends, lapsed_since in sorted(rows, key=lambda r: r[0]):
        requested = wanted[product_id]
        share = max(1, offered * percent // 100) if percent > 0 else None
        if share is not None and held + requested > share:
            room = max(0, share - held)
            over_share = requested > share  # no wait helps (409): a smaller order does
            raise PrintHoldLimitReached(
                f"At most {share} of product {product_id} can await payment from one network at once; "
                + (
                    f"order at most {share} (more once they are paid)."
                    if over_share
                    else f"this network's open checkouts hold {held}, so at most {room} more until one is paid or "
                    "lapses."
                ),
                retry_after=None if over_share else _seconds_until(open_ends, now),
                extra={"product": product_id, "available": room, "share": share, "reason": "share"},
            )
        # What the network could get now: the stock left plus what its open checkouts took from it.
        obtainable = left + taken
        if lapsed_for and lapsed and held + requested <= obtainable < held + lapsed + requested:
            raise PrintHoldLimitReached(
                f"{lapsed} of product {product_id} ordered from this network lapsed unpaid in the last "
                f"{math.ceil(lapsed_for.total_seconds() / 60)} minutes, and too few are left for this network to "
                "hold them again yet.",
                retry_after=_seconds_until(lapsed_since + lapsed_for, now),
                extra={
                    "product": product_id,
                    "available": max(0, obtainable - held - lapsed),
                    "share": share,
                    "reason": "lapsed",
                },
            )


def _check_holds(*, tenant_id: int, holder: HolderIn, lines: Sequence[_PricedLine], now: datetime) -> None:
    """Lock the checkout's holders and check what they hold (see the module docstring). In the
    checkout's transaction, before anything is written. Raises OpenCheckoutsLimitReached,
    PrintHoldLimitReached."""
    if not (holder.session or holder.network):
        return
    wanted = {line.product.product_id: line.quantity for line in lines if line.product.kind == ProductKind.PRINT}
    by_network = bool(
        holder.network
        and wanted
        and (settings.SHOP_NETWORK_PRINT_HOLD_PERCENT > 0 or settings.SHOP_NETWORK_LAPSED_HOLD_SECONDS > 0)
    )
    names = ([f"s:{holder.session}"] if holder.session else []) + ([f"n:{holder.network}"] if by_network else [])
    if not names:
        return
    _lock_holders(tenant_id=tenant_id, names=names)
    if holder.session:
        _check_session_open_checkouts(tenant_id=tenant_id, session=holder.session, now=now)
    if by_network:
        _check_network_holds(tenant_id=tenant_id, network=holder.network, wanted=wanted, now=now)


@functools.cache
def _checkout_insert_sql(line_count: int, with_shipping: bool = False) -> str:
    """INSERT a checkout and `line_count` lines in one statement: the checkout in a data-modifying
    CTE, its shipping row (`with_shipping`) in a second one, the lines in the main statement
    (their same-tenant foreign keys to the checkout are checked at the end of the statement, when
    all rows exist). Every concrete column is written, as the ORM would."""
    qn = connection.ops.quote_name
    checkout_columns = [qn(str(f.column)) for f in _checkout_fields()]
    line_columns = [qn(str(f.column)) for f in _line_fields()]
    line_row = "(" + ", ".join(["%s"] * len(line_columns)) + ")"
    shipping = ""
    if with_shipping:
        shipping_columns = [qn(str(f.column)) for f in _shipping_fields()]
        shipping = (
            f", new_shipping AS (INSERT INTO {qn(CheckoutShipping._meta.db_table)} "
            f"({', '.join(shipping_columns)}) VALUES ({', '.join(['%s'] * len(shipping_columns))}))"
        )
    return (
        f"WITH new_checkout AS (INSERT INTO {qn(Checkout._meta.db_table)} "
        f"({', '.join(checkout_columns)}) VALUES ({', '.join(['%s'] * len(checkout_columns))})){shipping} "
        f"INSERT INTO {qn(CheckoutLine._meta.db_table)} ({', '.join(line_columns)}) "
        f"VALUES {', '.join([line_row] * line_count)} RETURNING id, position"
    )


def _shipping_fields() -> list[Field]:
    return list(CheckoutShipping._meta.concrete_fields)


def _checkout_fields() -> list[Field]:
    return list(Checkout._meta.concrete_fields)


def _line_fields() -> list[Field]:
    return [field for field in CheckoutLine._meta.concrete_fields if not field.primary_key]


def _insert_checkout_with_lines(
    checkout: Checkout, lines: list[CheckoutLine], shipping: CheckoutShipping | None = None
) -> list[CheckoutLine]:
    """Write a new checkout, its lines and its shipping row (if any) in one round trip; returns
    the lines with their ids.

    The hottest write of the shop: one statement instead of the ORM's two, and no per-request
    insert compilation. Values go through each field's `get_db_prep_save`, as the ORM's would;
    afterwards every instance is marked saved, so later `save(update_fields=...)` calls update.
    """
    params = [field.get_db_prep_save(getattr(checkout, field.attname), connection) for field in _checkout_fields()]
    if shipping is not None:
        params.extend(
            field.get_db_prep_save(getattr(shipping, field.attname), connection) for field in _shipping_fields()
        )
    line_fields = _line_fields()
    for line in lines:
        params.extend(field.get_db_prep_save(getattr(line, field.attname), connection) for field in line_fields)
    with connection.cursor() as cursor:
        cursor.execute(_checkout_insert_sql(len(lines), shipping is not None), params)
        line_ids = {position: line_id for line_id, position in cursor.fetchall()}
    for instance in (checkout, *lines, *([shipping] if shipping is not None else [])):
        instance._state.adding = False
        instance._state.db = connection.alias
    for line in lines:
        line.pk = line_ids[line.position]
    # The reverse one-to-one, cached (None: none), so rendering `checkout.shipping` reads nothing.
    Checkout.shipping.related.set_cached_value(checkout, shipping)
    return lines


# savepoint=False: inside the API's transaction a savepoint would cost two round trips per
# checkout for nothing; an error here rolls the whole request back anyway.
@transaction.atomic(savepoint=False)
def checkout_create(
    *,
    tenant_id: int,
    email: str,
    provider: str,
    lines: Sequence[LineIn],
    return_url: str = "",
    checkout_id: uuid.UUID | None = None,
    shipping: ShippingIn | None = None,
    holder: HolderIn | None = None,
) -> Checkout:
    """Create a checkout with its lines, stock reservations, transaction row and outbox message.

    Joins the caller's transaction (the Idempotency-Key protocol's, around the API request):
    everything commits together or not at all. The provider session is created after commit
    by the `checkout.created` consumer (see the module docstring). Lines are priced from the
    event's price list now; print lines get a reservation through the configured inventory
    strategy (`row_lock`: stock rows locked FOR UPDATE until that commit). A sold-out line is
    marked and left out of the amount; a checkout with nothing left to charge is `sold_out`.
    `return_url` is where the provider sends the shopper back (blank: CHECKOUT_RETURN_URL).
    `checkout_id` lets a caller name the checkout before it exists (the web shop's return URL is
    the checkout's own page): a fresh `uuid.uuid4()`, never one that may exist already (its
    primary key would collide). `shipping` is required when a line is a print and refused
    otherwise (see the module docstring); it is stored as the checkout's `CheckoutShipping`
    row, `unfulfilled`. `holder` is who the checkout holds stock for (stored with it): its holds
    are checked under the holder's locks, taken here and held until the caller's transaction
    ends (see the module docstring). Raises (before writing anything) InvalidReturnUrl,
    ProviderUnavailable, InvalidCheckoutLine, PriceNotSet, MixedCurrencies,
    InvalidShippingAddress, OpenCheckoutsLimitReached, PrintHoldLimitReached. The returned
    checkout carries its new lines in `lines_by_position` (as `checkout_get` does), so the
    caller can render it without reading it back.
    """
    _check_return_url(return_url)
    _check_provider(provider)
    priced = _price_lines(tenant_id=tenant_id, lines=lines)
    address = _check_shipping(
        shipping=shipping, has_prints=any(line.product.kind == ProductKind.PRINT for line in priced)
    )
    holder = holder or HolderIn()
    now = timezone.now()
    _check_holds(tenant_id=tenant_id, holder=holder, lines=priced, now=now)
    checkout = Checkout(
        id=checkout_id or uuid.uuid4(),
        tenant_id=tenant_id,
        email=email,
        provider=provider,
        return_url=return_url,
        status=Checkout.Status.RESERVING,
        currency=priced[0].currency,
        amount_minor=0,
        expires_at=now + timedelta(seconds=settings.INVENTORY_RESERVATION_TTL_SECONDS),
        client_network=holder.network,
        client_session=holder.session,
        created_at=now,
        updated_at=now,
    )
    rows = _insert_checkout_with_lines(
        checkout,
        [
            CheckoutLine(
                tenant_id=tenant_id,
                checkout=checkout,
                position=position,
                product_id=line.product.product_id,
                event_id=line.product.event_id,
                photo_id=line.photo_id,
                photographer_id=line.photographer_id,
                kind=line.product.kind,
                size=line.product.size,
                quantity=line.quantity,
                unit_amount_minor=line.unit_amount_minor,
                amount_minor=line.unit_amount_minor * line.quantity,
                currency=line.currency,
                state=CheckoutLine.State.RESERVED
                if line.product.kind == ProductKind.PRINT
                else CheckoutLine.State.CONFIRMED,
            )
            for position, line in enumerate(priced)
        ],
        CheckoutShipping(tenant_id=tenant_id, checkout=checkout, **address) if address is not None else None,
    )
    get_strategy().reserve(checkout=checkout, lines=[r for r in rows if r.kind == ProductKind.PRINT], now=now)
    _settle(checkout=checkout, lines=rows)
    outbox_publish(
        topic=TOPIC_CHECKOUT_CREATED,
        tenant_id=tenant_id,
        aggregate_type="checkout",
        aggregate_id=checkout.pk,
        payload={"checkout_id": str(checkout.pk)},
    )
    checkout.lines_by_position = rows
    return checkout


def _settle(*, checkout: Checkout, lines: Sequence[CheckoutLine]) -> bool:
    """Decide what a checkout whose reservations are all decided will charge.

    In the caller's transaction, checkout row new or locked. Leaves a checkout with undecided
    lines `reserving`; else charges the confirmed lines only: `awaiting_payment_session` plus
    its pending `Transaction`, or `sold_out` when nothing is left. Returns True once payable.
    """
    if any(line.state == CheckoutLine.State.RESERVED for line in lines):
        return False
    amount = sum(line.amount_minor for line in lines if line.state == CheckoutLine.State.CONFIRMED)
    checkout.amount_minor = amount
    if amount == 0:
        checkout.status = Checkout.Status.SOLD_OUT
        checkout.save(update_fields=["amount_minor", "status", "updated_at"])
        return False
    checkout.status = Checkout.Status.AWAITING_PAYMENT_SESSION
    checkout.save(update_fields=["amount_minor", "status", "updated_at"])
    Transaction.objects.create(
        tenant_id=checkout.tenant_id,
        checkout=checkout,
        provider=checkout.provider,
        amount_minor=amount,
        currency=checkout.currency,
    )
    return True


_LINE_STATE_OF_RESERVATION = {
    InventoryReservation.Status.PENDING: CheckoutLine.State.RESERVED,
    InventoryReservation.Status.CONFIRMED: CheckoutLine.State.CONFIRMED,
    InventoryReservation.Status.REJECTED: CheckoutLine.State.SOLD_OUT,
    InventoryReservation.Status.RELEASED: CheckoutLine.State.RELEASED,
}


@transaction.atomic
def checkout_reservations_settle(*, tenant_id: int, checkout_id: uuid.UUID | str) -> Checkout:
    """For deferred strategies: call after deciding reservations of a `reserving` checkout.

    Joins the caller's transaction (the inventory writer's, which decided the reservations).
    Locks the checkout row, copies each reservation's outcome to its line, and once none is
    pending settles the checkout (see `_settle`) and publishes `checkout.payable` so the
    provider session is created after commit. A no-op for a checkout no longer `reserving`.
    """
    checkout = Checkout.objects.select_for_update().filter(tenant_id=tenant_id, pk=checkout_id).first()
    if checkout is None:
        raise CheckoutNotFound(f"Checkout {checkout_id} does not exist.")
    if checkout.status != Checkout.Status.RESERVING:
        return checkout
    lines = list(checkout.lines.select_related("reservation").order_by("position"))
    for line in lines:
        reservation = getattr(line, "reservation", None)
        if reservation is None:
            continue
        state = _LINE_STATE_OF_RESERVATION[InventoryReservation.Status(reservation.status)]
        if line.state != state:
            line.state = state
            line.save(update_fields=["state"])
    if _settle(checkout=checkout, lines=lines):
        outbox_publish(
            topic=TOPIC_CHECKOUT_PAYABLE,
            tenant_id=tenant_id,
            aggregate_type="checkout",
            aggregate_id=checkout.pk,
            payload={"checkout_id": str(checkout.pk)},
        )
    return checkout


# --- provider session ----------------------------------------------------------------------


def _description(checkout: Checkout) -> str:
    count = checkout.lines.filter(state=CheckoutLine.State.CONFIRMED).count()
    return f"Darkroom order {str(checkout.pk)[:8]} ({count} item{'s' if count != 1 else ''})"


def checkout_payment_session_ensure(*, checkout_id: uuid.UUID | str) -> Checkout:
    """Create the provider session of a checkout awaiting one, and store reference and URL.

    Runs OUTSIDE any transaction (it calls the provider; TransactionManagementError otherwise),
    in the checkout's tenant context. Idempotent: a checkout that is not
    `awaiting_payment_session` is returned untouched, and the checkout id is the provider's
    idempotency key, so a retry after a timeout gets the same session back. The shopper comes
    back to the checkout's `return_url`, else to CHECKOUT_RETURN_URL, with `darkroom_return=paid`
    after paying and `darkroom_return=cancelled` otherwise (`apps.payments.providers.returns`;
    the same URLs on every attempt, which Stripe's idempotency key requires). The session
    is asked to end when the checkout expires (`expires_at`); a checkout already past its expiry
    is returned untouched (the expiry sweep closes it; a session now would only be closed again).
    A non-retryable provider error is recorded on the checkout (`payment_session_error`) and not
    raised; a retryable one is recorded and re-raised (ProviderError) for the consumer's backoff.
    Raises CheckoutNotFound.
    """
    if connection.in_atomic_block:
        raise TransactionManagementError("the provider must not be called inside a transaction")
    checkout = Checkout.objects.filter(pk=checkout_id).first()
    if checkout is None:
        raise CheckoutNotFound(f"Checkout {checkout_id} does not exist.")
    if checkout.status != Checkout.Status.AWAITING_PAYMENT_SESSION or checkout.expires_at <= timezone.now():
        return checkout
    return_url = checkout.return_url or settings.CHECKOUT_RETURN_URL.format(checkout_id=checkout.pk)
    try:
        session = get_provider(checkout.provider).create_session(
            checkout_id=str(checkout.pk),
            amount_minor=checkout.amount_minor,
            currency=checkout.currency,
            email=checkout.email,
            description=_description(checkout),
            success_url=return_url_marked(return_url, ShopperReturn.PAID),
            cancel_url=return_url_marked(return_url, ShopperReturn.CANCELLED),
            expires_at=checkout.expires_at,
        )
    except ProviderError as exc:
        _session_failed(checkout_id=checkout.pk, error=exc)
        if exc.retryable:
            raise
        logger.warning("payment session refused", extra={"checkout_id": str(checkout.pk), "error": str(exc)})
        return Checkout.objects.get(pk=checkout.pk)
    return _session_created(checkout_id=checkout.pk, session=session)


@transaction.atomic(durable=True)
def _session_created(*, checkout_id: uuid.UUID, session: ProviderSession) -> Checkout:
    """Store the session (outermost transaction, checkout row locked). The reference is stored
    even if the checkout expired meanwhile, so a late payment can still be matched and refunded,
    and the session is then closed: the expiry found no reference to close, so the
    `checkout.payment_session_close_requested` message is written (and its queued time stamped)
    here instead."""
    checkout = Checkout.objects.select_for_update().get(pk=checkout_id)
    field = PROVIDER_REFERENCE_FIELD[checkout.provider]
    update = ["payment_session_attempts", "payment_session_error", "updated_at"]
    if getattr(checkout, field) is None:
        setattr(checkout, field, session.reference)
        update.append(field)
        if checkout.status == Checkout.Status.EXPIRED:
            _publish_session_close_requested(checkout)
            update.append("payment_session_close_queued_at")
    elif getattr(checkout, field) != session.reference:
        logger.error(
            "provider returned another session for the same idempotency key",
            extra={"checkout_id": str(checkout_id), "stored": getattr(checkout, field), "new": session.reference},
        )
    if checkout.status == Checkout.Status.AWAITING_PAYMENT_SESSION:
        checkout.status = Checkout.Status.AWAITING_PAYMENT
        checkout.payment_url = session.payment_url
        update += ["status", "payment_url"]
    checkout.payment_session_attempts += 1
    checkout.payment_session_error = ""
    checkout.save(update_fields=update)
    return checkout


@transaction.atomic(durable=True)
def _session_failed(*, checkout_id: uuid.UUID, error: ProviderError) -> None:
    """Record a failed attempt (outermost transaction, checkout row locked)."""
    checkout = Checkout.objects.select_for_update().get(pk=checkout_id)
    checkout.payment_session_attempts += 1
    checkout.payment_session_error = str(error)[:2000]
    checkout.save(update_fields=["payment_session_attempts", "payment_session_error", "updated_at"])


@transaction.atomic
def checkout_payment_session_request(*, tenant_id: int, checkout_id: uuid.UUID | str) -> Checkout:
    """Ask again for the provider session of a checkout whose session creation failed.

    Joins the caller's transaction (the API's Idempotency-Key protocol): publishes a
    `checkout.payment_session_requested` outbox message; its consumer calls
    `checkout_payment_session_ensure` after commit. Raises CheckoutNotFound and
    CheckoutNotAwaitingSession (the checkout has a session already, or cannot be paid).
    """
    checkout = Checkout.objects.select_for_update().filter(tenant_id=tenant_id, pk=checkout_id).first()
    if checkout is None:
        raise CheckoutNotFound(f"Checkout {checkout_id} does not exist.")
    if checkout.status != Checkout.Status.AWAITING_PAYMENT_SESSION:
        raise CheckoutNotAwaitingSession(f"Checkout {checkout_id} is {checkout.status}.")
    _publish_payment_session_requested(checkout)
    return checkout


@transaction.atomic(durable=True)
def checkouts_requeue_stale(*, older_than_seconds: float, limit: int = 500) -> dict[str, int]:
    """Move on the open checkouts whose next step's message the broker lost (`apps.outbox.requeue`),
    `older_than_seconds` after their last change; returns how many of each kind:

    * `settled`: `reserving` checkouts none of whose reservations is pending any more (the
      writer's `inventory.reservation_decided` messages were lost) are settled here and now,
      as their consumer would (`checkout_reservations_settle`: lines copied, session asked for);
    * `sessions_requested`: `awaiting_payment_session` checkouts get a fresh
      `checkout.payment_session_requested` message, as `POST .../payment-session` would send
      (the `checkout.created`/`checkout.payable` message, or a retry, was lost; a session the
      provider refused is asked for again too, at most once per `older_than_seconds`).

    Checkouts past their `expires_at` are left to the expiry sweep. Outermost transaction, in the
    system context (the beat task's). Harmless when a message was only slow: settling is a no-op
    for a checkout no longer reserving, and the provider session is created with the checkout
    id as idempotency key.
    """
    pending = InventoryReservation.objects.filter(
        checkout_id=OuterRef("pk"), status=InventoryReservation.Status.PENDING
    )
    open_checkouts = Checkout.objects.filter(expires_at__gt=timezone.now())  # the overdue ones expire instead
    settled = requeue_stale(
        open_checkouts.filter(status=Checkout.Status.RESERVING).exclude(Exists(pending)),
        queued_field="updated_at",
        fallback_field="created_at",
        older_than_seconds=older_than_seconds,
        limit=limit,
        requeue=_settle_in_its_tenant,
        flow="checkout_settlements",
    )
    sessions = requeue_stale(
        open_checkouts.filter(status=Checkout.Status.AWAITING_PAYMENT_SESSION),
        queued_field="updated_at",
        fallback_field="created_at",
        older_than_seconds=older_than_seconds,
        limit=limit,
        requeue=_publish_payment_session_requested,
        flow="payment_sessions",
    )
    return {"settled": len(settled), "sessions_requested": len(sessions)}


def _settle_in_its_tenant(checkout: Checkout) -> None:
    with tenant_context(checkout.tenant_id):
        checkout_reservations_settle(tenant_id=checkout.tenant_id, checkout_id=checkout.pk)


def _publish_payment_session_requested(checkout: Checkout) -> None:
    outbox_publish(
        topic=TOPIC_PAYMENT_SESSION_REQUESTED,
        tenant_id=checkout.tenant_id,
        aggregate_type="checkout",
        aggregate_id=checkout.pk,
        payload={"checkout_id": str(checkout.pk)},
    )


# --- expiry --------------------------------------------------------------------------------


def checkouts_expire_due(*, now: datetime | None = None, batch_size: int | None = None) -> int:
    """Expire open checkouts past their deadline, one short transaction each; returns how many.

    Finds candidates across tenants in the audited system context, then expires each in its
    own tenant context (`checkout_expire`). Safe to run concurrently with itself and with
    payment processing: each checkout is decided under its row lock. Must run outside a
    transaction.
    """
    moment = now or timezone.now()
    limit = batch_size or settings.COMMERCE_EXPIRE_BATCH_SIZE
    with system_context("checkout expiry sweep"):
        due = list(
            Checkout.objects.filter(status__in=Checkout.OPEN_STATUSES, expires_at__lte=moment)
            .order_by("expires_at")
            .values_list("tenant_id", "pk")[:limit]
        )
    expired = 0
    for tenant_id, checkout_id in due:
        with tenant_context(tenant_id):
            expired += int(checkout_expire(tenant_id=tenant_id, checkout_id=checkout_id, now=moment))
    return expired


@transaction.atomic(durable=True)
def checkout_expire(*, tenant_id: int, checkout_id: uuid.UUID | str, now: datetime | None = None) -> bool:
    """Expire one open, overdue checkout: transaction `expired`, stock released exactly once,
    and, if it has a provider session, a `checkout.payment_session_close_requested` message
    (its consumer closes the session after commit, so the shopper cannot pay any more) with the
    checkout's `payment_session_close_queued_at` stamped (the close is owed until it concludes).

    Outermost transaction; locks the checkout row (skipping it if a payment is being
    processed: the next sweep sees the outcome), then its transaction and reservations.
    Returns False when there is nothing to do (paid, already closed, not yet due, locked).
    """
    moment = now or timezone.now()
    checkout = Checkout.objects.select_for_update(skip_locked=True).filter(tenant_id=tenant_id, pk=checkout_id).first()
    if checkout is None or checkout.status not in Checkout.OPEN_STATUSES or checkout.expires_at > moment:
        return False
    _expire_locked(checkout=checkout, source="reservation expiry", now=moment)
    return True


def _expire_locked(*, checkout: Checkout, source: str, now: datetime, closed_reason: str = "") -> None:
    """Close an open checkout unpaid through the payment state machine (an `expired` fact: its
    transaction `expired`, its stock released once), with `closed_reason` when it closes before
    its expiry, and ask for its provider session's close. In the caller's transaction, checkout
    row locked."""
    from apps.commerce.services.payment import PaymentFact, apply_fact_locked

    apply_fact_locked(checkout=checkout, fact=PaymentFact(status="expired", source=source), now=now)
    if checkout.status != Checkout.Status.EXPIRED:
        return
    update = []
    if closed_reason:
        checkout.closed_reason = closed_reason
        update.append("closed_reason")
    if checkout.provider_reference:
        # Without a reference no session exists yet: `_session_created` asks for the close if
        # one is being created (it takes this row's lock, so it sees the checkout expired).
        _publish_session_close_requested(checkout)
        update.append("payment_session_close_queued_at")
    if update:
        checkout.save(update_fields=update)


# --- closing early: a photo in the checkout was withdrawn ---------------------------------


def _selling_photo(photo_id: int) -> Exists:
    """The checkout (OuterRef) has a line that would sell the photo: confirmed, or a print still
    waiting for stock. Sold-out and released lines sell nothing."""
    return Exists(
        CheckoutLine.objects.filter(
            checkout_id=OuterRef("pk"),
            photo_id=photo_id,
            state__in=[CheckoutLine.State.CONFIRMED, CheckoutLine.State.RESERVED],
        )
    )


def checkouts_close_for_withdrawn_photo(*, tenant_id: int, photo_id: int) -> int:
    """Close the studio's open checkouts that would sell a withdrawn photo (the consumer of
    `catalog.photo_withdrawn`, `apps.catalog.withdrawal`), one short transaction each
    (`checkout_close_for_withdrawn_photo`); returns how many it closed. Idempotent: a second run
    finds none open. Runs outside any transaction, in the studio's tenant context.

    A checkout opened after this read (it read the photo before the withdrawal committed) stays
    open until its expiry; it cannot be paid for the photo either (`payment.py` refuses it).
    """
    checkout_ids = list(
        Checkout.objects.filter(tenant_id=tenant_id, status__in=Checkout.OPEN_STATUSES)
        .filter(_selling_photo(photo_id))
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
    )
    return sum(
        checkout_close_for_withdrawn_photo(tenant_id=tenant_id, checkout_id=checkout_id, photo_id=photo_id)
        for checkout_id in checkout_ids
    )


@transaction.atomic(durable=True)
def checkout_close_for_withdrawn_photo(*, tenant_id: int, checkout_id: uuid.UUID | str, photo_id: int) -> bool:
    """Close an open checkout that would sell a withdrawn photo, before its expiry, as
    `checkout_expire` closes an overdue one: status `expired` with `closed_reason`
    `photo_withdrawn` (the shop's order page says why), its transaction `expired`, stock released
    exactly once, and, if it has a provider session, a `checkout.payment_session_close_requested`
    message. A payment that lands afterwards is refunded (reason `photo_withdrawn`).

    Outermost transaction. Locks the checkout row, WAITING for it (the expiry sweep skips a
    locked one because it comes back; nothing comes back for this one), then its transaction
    and reservations. A payment processed meanwhile holds that lock and ends first: refused and
    refunded (it sees the withdrawal, `payment.py`), or paid if it locked the photo before the
    withdrawal committed (a purchase made before it); either way this then finds nothing open.
    Returns False when there is nothing to do (paid or closed already, no line selling the
    photo, or the photo is not withdrawn).
    """
    checkout = Checkout.objects.select_for_update().filter(tenant_id=tenant_id, pk=checkout_id).first()
    if checkout is None or checkout.status not in Checkout.OPEN_STATUSES:
        return False
    selling = Checkout.objects.filter(pk=checkout.pk).filter(_selling_photo(photo_id)).exists()
    if not selling or not Photo.objects.filter(tenant_id=tenant_id, pk=photo_id, withdrawn_at__isnull=False).exists():
        return False
    _expire_locked(
        checkout=checkout,
        source=f"photo {photo_id} withdrawn",
        now=timezone.now(),
        closed_reason=Checkout.ClosedReason.PHOTO_WITHDRAWN,
    )
    return checkout.status == Checkout.Status.EXPIRED


def _publish_session_close_requested(checkout: Checkout) -> None:
    """The message that closes an expired checkout's provider session, and the checkout's
    `payment_session_close_queued_at` set to now (the caller saves it). In the caller's
    transaction, checkout row locked: one message per checkout, and one more per lost-message
    sweep that finds the close still owed (see the module docstring)."""
    checkout.payment_session_close_queued_at = timezone.now()
    outbox_publish(
        topic=TOPIC_PAYMENT_SESSION_CLOSE_REQUESTED,
        tenant_id=checkout.tenant_id,
        aggregate_type="checkout",
        aggregate_id=checkout.pk,
        payload={"checkout_id": str(checkout.pk)},
    )


def checkout_payment_session_close(*, checkout_id: uuid.UUID | str, message_id: uuid.UUID | str) -> str:
    """Close the provider session of an expired checkout, for the close message `message_id`;
    returns what happened (for the task result and logs).

    Runs OUTSIDE any transaction (it calls the provider; TransactionManagementError otherwise),
    in the checkout's tenant context. Calls the provider at most once per message and not at all
    once the close concluded: after the adapter's final answer one short transaction writes the
    inbox row (SESSION_CLOSE_CONSUMER, message_id) and the checkout's
    `payment_session_close_concluded_at`; a message that has its inbox row (a redelivery), or
    arrives for a checkout whose close concluded (a copy the lost-message sweep queued while the
    first was slow), calls nothing. Two copies running at the same moment may both call the
    provider, which is harmless: closing is idempotent at every provider (a second close answers
    "already closed").

    Final answers, each concluding the close: every SessionCloseOutcome (closed, already closed,
    completed: paid first, not supported), a provider refusal that is not retryable (logged; the
    session's own expiry still bounds it and a late payment is refunded; a session the provider
    does not know is such a refusal, 404), and a checkout that is not expired or has no provider
    reference (nothing to close). A retryable refusal (timeout, 409, 429, 5xx) is raised
    (ProviderError) for the consumer's backoff with nothing written: the close stays owed, and
    once the consumer runs out of retries `payment_session_closes_requeue_stale` asks again.
    Raises CheckoutNotFound.
    """
    if connection.in_atomic_block:
        raise TransactionManagementError("the provider must not be called inside a transaction")
    if InboxEntry.objects.filter(consumer=SESSION_CLOSE_CONSUMER, message_id=message_id).exists():
        return "already done"
    checkout = Checkout.objects.filter(pk=checkout_id).first()
    if checkout is None:
        raise CheckoutNotFound(f"Checkout {checkout_id} does not exist.")
    if checkout.payment_session_close_concluded_at is not None:
        return "already concluded"
    reference = checkout.provider_reference
    if checkout.status != Checkout.Status.EXPIRED or not reference:
        outcome = f"nothing to close (checkout {checkout.status}, reference {reference!r})"
    else:
        outcome = _close_at_provider(checkout=checkout, reference=reference)
    _session_close_concluded(checkout_id=checkout.pk, message_id=message_id)
    return outcome


def _close_at_provider(*, checkout: Checkout, reference: str) -> str:
    """The adapter's close, its final answer as a string; raises a retryable ProviderError."""
    log = {"checkout_id": str(checkout.pk), "provider": checkout.provider, "reference": reference}
    try:
        outcome = get_provider(checkout.provider).close_payment_session(reference=reference)
    except ProviderError as exc:
        if exc.retryable:
            raise
        logger.warning("payment session close refused", extra={**log, "error": str(exc)})
        return f"refused: {exc.detail}"[:200]
    if outcome == SessionCloseOutcome.COMPLETED:
        logger.warning("payment session completed before it could be closed", extra=log)
    else:
        logger.info("payment session close concluded", extra={**log, "outcome": str(outcome)})
    return str(outcome)


@transaction.atomic(durable=True)
def _session_close_concluded(*, checkout_id: uuid.UUID, message_id: uuid.UUID | str) -> None:
    """Record that the close concluded (outermost transaction, after the provider's answer): the
    message's inbox row, and the checkout's `payment_session_close_concluded_at` unless an earlier
    copy set it (the first answer's time is kept)."""
    with consume_once(consumer=SESSION_CLOSE_CONSUMER, message_id=message_id):
        Checkout.objects.filter(pk=checkout_id, payment_session_close_concluded_at__isnull=True).update(
            payment_session_close_concluded_at=timezone.now()
        )


@transaction.atomic(durable=True)
def payment_session_closes_requeue_stale(*, older_than_seconds: float, limit: int = 500) -> list[uuid.UUID]:
    """Queue again the close of expired checkouts' provider sessions still owed (queued, not
    concluded) more than `older_than_seconds` after their message was queued
    (`apps.outbox.requeue`: the broker lost it, or the consumer ran out of retries on a provider
    outage); returns the checkouts' ids. A checkout that expired more than SESSION_CLOSE_OWED_FOR
    ago is left alone: its session has ended at the provider by itself.

    Outermost transaction, in the system context (the beat task's): checkouts of every studio.
    Harmless when the message was only slow: the consumer calls nothing once the close concluded,
    and closing is idempotent at every provider (Stripe: the key `expire:<session id>`).
    """
    checkouts = requeue_stale(
        Checkout.objects.filter(
            status=Checkout.Status.EXPIRED,
            payment_session_close_queued_at__isnull=False,
            payment_session_close_concluded_at__isnull=True,
            expires_at__gt=timezone.now() - SESSION_CLOSE_OWED_FOR,
        ),
        queued_field="payment_session_close_queued_at",
        fallback_field="expires_at",  # never used (the queued time is set); the oldest go first
        older_than_seconds=older_than_seconds,
        limit=limit,
        requeue=_publish_session_close_requested,
        flow="payment_session_closes",
    )
    return [checkout.pk for checkout in checkouts]
