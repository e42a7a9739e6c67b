"""Commerce: checkouts and their lines, stock reservations, payment transactions, entitlements,
receipts and refunds.

A checkout is what a shopper asked to buy; its `Transaction` is the money side, driven by
provider webhooks through an explicit state machine; `Entitlement`s are what the shopper got.

Invariants held by Postgres (tests in tests/commerce/test_constraints.py):
* every row references rows of its own tenant only: composite foreign keys on
  (tenant_id, <ref>_id) added in the migration, like the catalog's;
* a checkout's shipping address (`CheckoutShipping`) is complete, its country an ISO 3166-1
  alpha-2 code, and it is `shipped` exactly when `shipped_at` (and a carrier) is set;
* provider references (`stripe_checkout_session_id`, `flutterwave_tx_ref`, `paypal_order_id`,
  `sandbox_reference`) are globally unique when set (a webhook names only the reference, before
  anyone knows the tenant);
* money is integers in minor units with an ISO 4217 code; a line's amount is unit x quantity;
* one transaction per checkout; one entitlement per (transaction, photo) and one per
  (transaction, event) for bulk; one reservation per line; one receipt per checkout; one
  refund per (transaction, reason), but for item refunds, parts refunded at the provider and
  second charges (one refund per charge);
* statuses are from their closed sets (check constraints); a checkout's `closed_reason` is set
  only on an `expired` checkout.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone
from django.utils.formats import date_format

from apps.payments.providers.base import money_text
from apps.tenancy.models import Organization, TenantModel

CURRENCY_PATTERN = r"^[A-Z]{3}$"
RETURN_URL_MAX_LENGTH = 2000


class Provider(models.TextChoices):
    STRIPE = "stripe", "Stripe"
    FLUTTERWAVE = "flutterwave", "Flutterwave"
    PAYPAL = "paypal", "PayPal"
    SANDBOX = "sandbox", "Sandbox (local)"


# Where each provider's session reference is stored on the checkout.
PROVIDERS = [p.value for p in Provider]
CHECKOUT_STATUSES = [
    "reserving",
    "awaiting_payment_session",
    "awaiting_payment",
    "paid",
    "failed",
    "expired",
    "sold_out",
    "refunded",
]

PROVIDER_REFERENCE_FIELD: dict[str, str] = {
    Provider.STRIPE: "stripe_checkout_session_id",
    Provider.FLUTTERWAVE: "flutterwave_tx_ref",
    Provider.PAYPAL: "paypal_order_id",
    Provider.SANDBOX: "sandbox_reference",
}


class Checkout(TenantModel):
    """A shopper's order, from creation to a final state.

    Life cycle (`status`):
    * `reserving`: some print lines wait for the inventory writer (batched strategy);
    * `awaiting_payment_session`: payable; the provider session is being created after commit
      (or creating it failed and will be retried: `payment_session_error`);
    * `awaiting_payment`: `payment_url` is ready; the shopper pays at the provider;
    * final: `paid`, `failed` (the provider declined), `expired` (the reservation ran out
      unpaid, or the checkout was closed early: `closed_reason`), `sold_out` (no line could be
      reserved: nothing to charge), `refunded`.
    The amount covers confirmed lines only: a sold-out line is never charged.
    """

    class ClosedReason(models.TextChoices):
        """Why an `expired` checkout was closed before its expiry ("": it ran out, or never was)."""

        NONE = "", "Not closed early"
        PHOTO_WITHDRAWN = "photo_withdrawn", "A photo in the order was withdrawn"

    class Status(models.TextChoices):
        RESERVING = "reserving", "Reserving stock"
        AWAITING_PAYMENT_SESSION = "awaiting_payment_session", "Creating the payment session"
        AWAITING_PAYMENT = "awaiting_payment", "Awaiting payment"
        PAID = "paid", "Paid"
        FAILED = "failed", "Payment failed"
        EXPIRED = "expired", "Expired unpaid"
        SOLD_OUT = "sold_out", "Sold out"
        REFUNDED = "refunded", "Refunded"

    OPEN_STATUSES = ("reserving", "awaiting_payment_session", "awaiting_payment")
    # Before it is payable a checkout has no `Transaction` (`_settle` creates it on leaving these).
    NO_TRANSACTION_STATUSES = ("reserving", "sold_out")

    # Not a column: the lines ordered by position, set by `checkout_get` and `checkout_create`.
    lines_by_position: list[CheckoutLine]

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField()
    provider = models.CharField(max_length=20, choices=Provider.choices)
    status = models.CharField(max_length=30, choices=Status.choices)
    currency = models.CharField(max_length=3)
    amount_minor = models.BigIntegerField()
    payment_url = models.URLField(max_length=2000, blank=True, default="")
    # Where the provider sends the shopper back after paying or giving up, as the caller chose it
    # at creation (the web shop: its own checkout page; an API client: its storefront). Blank:
    # the deployment's CHECKOUT_RETURN_URL.
    return_url = models.URLField(max_length=RETURN_URL_MAX_LENGTH, blank=True, default="")
    # NULL until a session exists: unique constraints ignore NULLs, not empty strings.
    stripe_checkout_session_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    flutterwave_tx_ref = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    paypal_order_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    sandbox_reference = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    payment_session_attempts = models.PositiveIntegerField(default=0)
    payment_session_error = models.TextField(blank=True, default="")
    # Why the provider refused to take a payment the buyer approved (e.g. PayPal declined the
    # capture), while the checkout stays open for another approval; shown while awaiting payment.
    payment_error = models.TextField(blank=True, default="")
    # Set when the provider's approval asks for a capture (PayPal), cleared when a capture attempt
    # concludes; a checkout still awaiting payment long after it lost its capture message (the
    # broker forgot it): `captures_requeue_stale` asks again.
    capture_requested_at = models.DateTimeField(null=True, blank=True)
    # The provider session's close (an expired checkout's `checkout.payment_session_close_requested`
    # message): `..._queued_at` is when its message was last queued (by the expiry, by the session
    # stored after it, or by `payment_session_closes_requeue_stale`), `..._concluded_at` when the
    # consumer had the provider's final answer (closed, already closed, paid first, no close
    # call, or refused for good). Queued and not concluded: the close is still owed.
    payment_session_close_queued_at = models.DateTimeField(null=True, blank=True)
    payment_session_close_concluded_at = models.DateTimeField(null=True, blank=True)
    # Set with `expired` when the checkout was closed unpaid before its expiry: the studio withdrew
    # a photo in it (`checkout_close_for_withdrawn_photo`, or a payment refused for it in
    # `payment.py`). The shop's order page and the API say so instead of a bare "expired".
    closed_reason = models.CharField(max_length=20, choices=ClosedReason.choices, blank=True, default="")
    # Who the checkout holds stock for, as its creator knew them (`checkout_create`'s `holder`):
    # the client's network (an IPv4 address, or an IPv6 /64) and a digest of the shop session's
    # key; blank when unknown (an API checkout without `shopper_ip`). Unpaid checkouts of one
    # network hold only a share of a print, and one session only so many open checkouts
    # (SHOP_NETWORK_PRINT_HOLD_PERCENT, SHOP_OPEN_CHECKOUTS_PER_SESSION). Database defaults, so a
    # process still running the previous code can insert checkouts during a deploy.
    client_network = models.CharField(max_length=64, blank=True, default="", db_default="")
    client_session = models.CharField(max_length=64, blank=True, default="", db_default="")
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "id"], name="commerce_checkout_unique_tenant_id"),
            models.UniqueConstraint(fields=["stripe_checkout_session_id"], name="commerce_checkout_unique_stripe"),
            models.UniqueConstraint(fields=["flutterwave_tx_ref"], name="commerce_checkout_unique_flutterwave"),
            models.UniqueConstraint(fields=["paypal_order_id"], name="commerce_checkout_unique_paypal"),
            models.UniqueConstraint(fields=["sandbox_reference"], name="commerce_checkout_unique_sandbox"),
            models.CheckConstraint(
                condition=models.Q(status__in=CHECKOUT_STATUSES), name="commerce_checkout_status_valid"
            ),
            models.CheckConstraint(condition=models.Q(provider__in=PROVIDERS), name="commerce_checkout_provider_valid"),
            models.CheckConstraint(condition=models.Q(amount_minor__gte=0), name="commerce_checkout_amount_non_neg"),
            models.CheckConstraint(
                condition=models.Q(currency__regex=CURRENCY_PATTERN), name="commerce_checkout_currency_iso4217"
            ),
            # A checkout that is (or was) payable charges something; one that never became
            # payable (sold out, or closed while still reserving) may have nothing to charge.
            models.CheckConstraint(
                condition=models.Q(amount_minor__gt=0)
                | ~models.Q(status__in=["awaiting_payment_session", "awaiting_payment", "paid"]),
                name="commerce_checkout_amount_positive_if_payable",
            ),
            # A reason to close early goes only with `expired` (closed unpaid).
            models.CheckConstraint(
                condition=models.Q(closed_reason="") | models.Q(closed_reason="photo_withdrawn", status="expired"),
                name="commerce_checkout_closed_reason_valid",
            ),
        ]
        indexes = [
            # The expiry sweep: open checkouts by deadline.
            models.Index(
                fields=["expires_at"],
                name="commerce_checkout_open_expiry",
                condition=models.Q(status__in=["reserving", "awaiting_payment_session", "awaiting_payment"]),
            ),
            models.Index(fields=["tenant", "email", "created_at"], name="commerce_checkout_tenant_email"),
            # The lost-message sweep of session closes: the few closes still owed, by expiry.
            models.Index(
                fields=["expires_at"],
                name="commerce_checkout_close_owed",
                condition=models.Q(
                    payment_session_close_queued_at__isnull=False, payment_session_close_concluded_at__isnull=True
                ),
            ),
            # A network's holds (open, or lapsed in the last SHOP_NETWORK_LAPSED_HOLD_SECONDS),
            # counted by `checkout_create` under the network's lock. Checkouts without a network
            # (most API ones) are not in it and cost it nothing.
            models.Index(
                fields=["tenant", "client_network", "expires_at"],
                name="commerce_checkout_net_holds",
                condition=~models.Q(client_network=""),
            ),
            # A shop session's open checkouts, counted likewise under the session's lock.
            models.Index(
                fields=["tenant", "client_session"],
                name="commerce_checkout_session_open",
                condition=models.Q(status__in=["reserving", "awaiting_payment_session", "awaiting_payment"])
                & ~models.Q(client_session=""),
            ),
        ]

    def __str__(self) -> str:
        return f"checkout {self.pk} ({self.status})"

    @property
    def provider_reference(self) -> str | None:
        value: str | None = getattr(self, PROVIDER_REFERENCE_FIELD[self.provider])
        return value


class CheckoutLine(TenantModel):
    """One product in a checkout, priced when the checkout was created.

    `state`: `confirmed` (deliverable: stock taken, or no stock needed), `reserved` (a print
    waiting for the inventory writer), `sold_out` (never charged), `released` (its stock went
    back when the checkout expired unpaid).
    """

    class State(models.TextChoices):
        RESERVED = "reserved", "Reserved (waiting for stock)"
        CONFIRMED = "confirmed", "Confirmed"
        SOLD_OUT = "sold_out", "Sold out"
        RELEASED = "released", "Released"

    # The composite same-tenant foreign keys (tenant_id, <ref>_id) of migration 0001 enforce these
    # references (and, through the checkout, the tenant), so the single-column constraints would
    # be checked twice: every check locks the hot parent row (the product everyone is buying)
    # FOR KEY SHARE. Lines and reservations are written by every checkout.
    tenant = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="+", db_constraint=False)
    checkout = models.ForeignKey(Checkout, on_delete=models.CASCADE, related_name="lines", db_constraint=False)
    position = models.PositiveSmallIntegerField()
    product = models.ForeignKey("catalog.Product", on_delete=models.PROTECT, related_name="+", db_constraint=False)
    event = models.ForeignKey("catalog.Event", on_delete=models.PROTECT, related_name="+", db_constraint=False)
    photo = models.ForeignKey(
        "catalog.Photo", on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_constraint=False
    )
    # Who is credited for the sale (the photo's photographer); null for a bulk line.
    photographer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=10)
    size = models.CharField(max_length=32, blank=True, default="")
    quantity = models.PositiveIntegerField()
    unit_amount_minor = models.BigIntegerField()
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    state = models.CharField(max_length=10, choices=State.choices)
    # The studio's refund of this line alone (with others of the order, never the whole order):
    # set when the studio asks, in the same transaction as the refund row. Its money side (the
    # download revoked, the credit reversed, the print back in stock) runs when the refund lands.
    # Partial index only (Meta): every checkout writes lines, and almost none is ever refunded.
    refund = models.ForeignKey(
        "commerce.Refund", on_delete=models.PROTECT, null=True, blank=True, related_name="lines", db_index=False
    )

    def ships(self) -> bool:
        """Whether this line is a print still to be sent: charged (confirmed) and in no refund
        under way or landed (a refused or not-needed refund leaves it to ship). Reads `refund`:
        select it with the line. `TO_SHIP` is the same rule as a query."""
        return (
            self.kind == "print"
            and self.state == self.State.CONFIRMED
            and (self.refund_id is None or self.refund.status not in Refund.LIVE_STATUSES)  # type: ignore[union-attr]
        )

    # `ships` as a filter on lines.
    TO_SHIP = models.Q(kind="print", state="confirmed") & (
        models.Q(refund__isnull=True) | ~models.Q(refund__status__in=["requested", "submitted"])
    )

    class Meta:
        indexes = [
            models.Index(fields=["refund"], condition=models.Q(refund__isnull=False), name="commerce_line_refund_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "id"], name="commerce_line_unique_tenant_id"),
            models.UniqueConstraint(fields=["checkout", "position"], name="commerce_line_unique_position"),
            models.CheckConstraint(
                condition=models.Q(state__in=["reserved", "confirmed", "sold_out", "released"]),
                name="commerce_line_state_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=["download", "print", "bulk"]), name="commerce_line_kind_valid"
            ),
            models.CheckConstraint(condition=models.Q(quantity__gte=1), name="commerce_line_quantity_positive"),
            models.CheckConstraint(
                condition=models.Q(quantity=1) | models.Q(kind="print"), name="commerce_line_quantity_one_unless_print"
            ),
            models.CheckConstraint(condition=models.Q(unit_amount_minor__gt=0), name="commerce_line_unit_positive"),
            models.CheckConstraint(
                condition=models.Q(amount_minor=models.F("unit_amount_minor") * models.F("quantity")),
                name="commerce_line_amount_is_unit_times_quantity",
            ),
            models.CheckConstraint(
                condition=models.Q(kind="bulk") | models.Q(photo__isnull=False), name="commerce_line_photo_unless_bulk"
            ),
            models.CheckConstraint(
                condition=models.Q(currency__regex=CURRENCY_PATTERN), name="commerce_line_currency_iso4217"
            ),
        ]

    def __str__(self) -> str:
        return f"line {self.position} of {self.checkout_id}: {self.kind} x {self.quantity} ({self.state})"


SHIPPING_NAME_MAX_LENGTH = 200
SHIPPING_LINE_MAX_LENGTH = 200
SHIPPING_CITY_MAX_LENGTH = 100
SHIPPING_POSTAL_CODE_MAX_LENGTH = 20
SHIPPING_REGION_MAX_LENGTH = 100
SHIPPING_PHONE_MAX_LENGTH = 32
CARRIER_MAX_LENGTH = 100
TRACKING_REFERENCE_MAX_LENGTH = 200


class CheckoutShipping(TenantModel):
    """Where the prints of a checkout go, and whether the studio has sent them.

    One row per checkout that has print lines, written with the checkout (in the same
    statement), never for a download-only checkout. The address is what the shopper typed,
    trimmed; `country` is an ISO 3166-1 alpha-2 code from `apps.commerce.countries` (the service
    checks the list; the database checks the shape). Fulfilment: `unfulfilled` → `shipped`
    (`checkout_mark_shipped`, once, for a paid checkout), with `shipped_at` and `carrier` set
    exactly when shipped; `tracking_reference` is optional.
    """

    class FulfilmentStatus(models.TextChoices):
        UNFULFILLED = "unfulfilled", "Not shipped yet"
        SHIPPED = "shipped", "Shipped"

    # Referential integrity: the composite same-tenant foreign key (tenant_id, checkout_id) of the
    # migration, as for lines (written in the checkout's own statement, on the hot path).
    tenant = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    checkout = models.OneToOneField(
        Checkout, on_delete=models.CASCADE, primary_key=True, related_name="shipping", db_constraint=False
    )
    name = models.CharField(max_length=SHIPPING_NAME_MAX_LENGTH)
    line1 = models.CharField(max_length=SHIPPING_LINE_MAX_LENGTH)
    line2 = models.CharField(max_length=SHIPPING_LINE_MAX_LENGTH, blank=True, default="")
    city = models.CharField(max_length=SHIPPING_CITY_MAX_LENGTH)
    postal_code = models.CharField(max_length=SHIPPING_POSTAL_CODE_MAX_LENGTH)
    region = models.CharField(max_length=SHIPPING_REGION_MAX_LENGTH, blank=True, default="")
    country = models.CharField(max_length=2)
    phone = models.CharField(max_length=SHIPPING_PHONE_MAX_LENGTH, blank=True, default="")
    fulfilment_status = models.CharField(
        max_length=12, choices=FulfilmentStatus.choices, default=FulfilmentStatus.UNFULFILLED
    )
    shipped_at = models.DateTimeField(null=True, blank=True)
    carrier = models.CharField(max_length=CARRIER_MAX_LENGTH, blank=True, default="")
    tracking_reference = models.CharField(max_length=TRACKING_REFERENCE_MAX_LENGTH, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "checkout"], name="commerce_shipping_unique_tenant_checkout"),
            models.CheckConstraint(
                condition=models.Q(fulfilment_status__in=["unfulfilled", "shipped"]),
                name="commerce_shipping_fulfilment_status_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(fulfilment_status="shipped", shipped_at__isnull=False) & ~models.Q(carrier="")
                | models.Q(fulfilment_status="unfulfilled", shipped_at__isnull=True),
                name="commerce_shipping_shipped_iff_shipped_at",
            ),
            models.CheckConstraint(
                condition=models.Q(country__regex=r"^[A-Z]{2}$"), name="commerce_shipping_country_iso"
            ),
            models.CheckConstraint(
                # No postal code: a country that has none (`apps.commerce.countries.NO_POSTAL_CODE`).
                condition=~models.Q(name="") & ~models.Q(line1="") & ~models.Q(city=""),
                name="commerce_shipping_address_complete",
            ),
        ]
        indexes = [
            # The studio's "prints to ship" list: the few unfulfilled rows of a tenant.
            models.Index(
                fields=["tenant"],
                name="commerce_shipping_unfulfilled",
                condition=models.Q(fulfilment_status="unfulfilled"),
            ),
        ]

    def __str__(self) -> str:
        return f"shipping of {self.checkout_id} ({self.fulfilment_status})"


class InventoryReservation(TenantModel):
    """Units of a print held for a checkout line.

    `pending` (batched strategy: waiting for the SKU's writer) → `confirmed` (stock taken) or
    `rejected` (sold out, stock untouched); `confirmed` → `released` (the checkout expired
    unpaid; stock given back exactly once). A paid checkout keeps its reservations confirmed.
    `writer_epoch` is the fencing epoch of the writer that decided it (null for row_lock).
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        CONFIRMED = "confirmed", "Confirmed"
        REJECTED = "rejected", "Rejected (sold out)"
        RELEASED = "released", "Released"

    # No single-column tenant or product index: (tenant, product) below serves the studio and SKU
    # reads, and a bare tenant index misled the planner on the hot pending queries (a new
    # studio's first sale, before ANALYZE, looked like "few rows for this tenant": every batch
    # then scanned and sorted all of the studio's reservations). Fewer indexes, cheaper writes;
    # deleting a product (PROTECT: refused while reserved) scans instead.
    # Referential integrity: the composite same-tenant foreign keys (see CheckoutLine).
    tenant = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    checkout = models.ForeignKey(Checkout, on_delete=models.CASCADE, related_name="reservations", db_constraint=False)
    line = models.OneToOneField(CheckoutLine, on_delete=models.CASCADE, related_name="reservation", db_constraint=False)
    product = models.ForeignKey(
        "catalog.Product", on_delete=models.PROTECT, related_name="+", db_index=False, db_constraint=False
    )
    quantity = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices)
    expires_at = models.DateTimeField()
    writer_epoch = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "confirmed", "rejected", "released"]),
                name="commerce_reservation_status_valid",
            ),
            models.CheckConstraint(condition=models.Q(quantity__gte=1), name="commerce_reservation_quantity_pos"),
            models.CheckConstraint(
                condition=models.Q(status="pending", decided_at__isnull=True)
                | (~models.Q(status="pending") & models.Q(decided_at__isnull=False)),
                name="commerce_reservation_decided_iff_not_pending",
            ),
            models.CheckConstraint(
                condition=models.Q(status="released", released_at__isnull=False)
                | (~models.Q(status="released") & models.Q(released_at__isnull=True)),
                name="commerce_reservation_released_at_iff_released",
            ),
        ]
        indexes = [
            # The batched writer's drain: pending reservations of one SKU, first come first served.
            models.Index(
                fields=["tenant", "product", "id"],
                name="commerce_reservation_pending",
                condition=models.Q(status="pending"),
            ),
            # Balances and reconciliation per studio and SKU; a studio's reservations.
            models.Index(fields=["tenant", "product"], name="commerce_reservation_sku"),
        ]

    def __str__(self) -> str:
        return f"reservation {self.pk}: {self.quantity} of product {self.product_id} ({self.status})"


class Transaction(TenantModel):
    """The payment of one checkout: an explicit state machine fed by provider facts.

    Facts are timestamps recorded the first time a provider reports them (`paid_at`,
    `failed_at`, `expired_at`, `refunded_at`); `status` is derived from them with a fixed
    precedence, refunded > paid > failed > expired > pending, so duplicates are no-ops and the
    order of arrival does not matter (a refund seen before the payment ends `refunded`).
    Allowed paths: pending → paid → refunded; pending → failed | expired; a late payment of an
    expired checkout is `paid` with `refund_requested_at` set until its refund lands.
    `fulfilled_at` is set once, when entitlements and wallet credits were granted.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PAID = "paid", "Paid"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"
        REFUNDED = "refunded", "Refunded"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    checkout = models.OneToOneField(Checkout, on_delete=models.PROTECT, related_name="transaction")
    provider = models.CharField(max_length=20, choices=Provider.choices)
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    payment_id = models.CharField(max_length=255, blank=True, default="")
    paid_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    refunded_at = models.DateTimeField(null=True, blank=True)
    refund_requested_at = models.DateTimeField(null=True, blank=True)
    fulfilled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "id"], name="commerce_transaction_unique_tenant_id"),
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "paid", "failed", "expired", "refunded"]),
                name="commerce_transaction_status_valid",
            ),
            models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="commerce_transaction_amount_pos"),
            models.CheckConstraint(
                condition=models.Q(currency__regex=CURRENCY_PATTERN), name="commerce_transaction_currency_iso4217"
            ),
            # The derived status agrees with the facts (precedence refunded > paid > failed > expired).
            models.CheckConstraint(
                condition=(
                    models.Q(status="refunded", refunded_at__isnull=False)
                    | models.Q(status="paid", refunded_at__isnull=True, paid_at__isnull=False)
                    | models.Q(status="failed", refunded_at__isnull=True, paid_at__isnull=True, failed_at__isnull=False)
                    | models.Q(
                        status="expired",
                        refunded_at__isnull=True,
                        paid_at__isnull=True,
                        failed_at__isnull=True,
                        expired_at__isnull=False,
                    )
                    | models.Q(
                        status="pending",
                        refunded_at__isnull=True,
                        paid_at__isnull=True,
                        failed_at__isnull=True,
                        expired_at__isnull=True,
                    )
                ),
                name="commerce_transaction_status_matches_facts",
            ),
            models.CheckConstraint(
                condition=models.Q(fulfilled_at__isnull=True) | models.Q(paid_at__isnull=False),
                name="commerce_transaction_fulfilled_only_if_paid",
            ),
        ]
        # A provider event that names only the payment (a PayPal refund names its capture) is
        # matched to its transaction by this.
        indexes = [
            models.Index(
                fields=["provider", "payment_id"],
                name="commerce_txn_provider_payment",
                condition=~models.Q(payment_id=""),
            )
        ]

    def __str__(self) -> str:
        return f"transaction {self.pk} ({self.status})"


class Entitlement(TenantModel):
    """The shopper's right to originals: one photo, or (bulk) the photos of one event.

    Unique per (transaction, photo) and per (transaction, event) for bulk, so granting twice is
    impossible. `revoked_at` is set when the payment is refunded; a revoked entitlement serves
    nothing.
    """

    class Scope(models.TextChoices):
        PHOTO = "photo", "One photo"
        EVENT = "event", "All photos of an event"

    transaction = models.ForeignKey(Transaction, on_delete=models.PROTECT, related_name="entitlements")
    checkout = models.ForeignKey(Checkout, on_delete=models.PROTECT, related_name="entitlements")
    scope = models.CharField(max_length=10, choices=Scope.choices)
    event = models.ForeignKey("catalog.Event", on_delete=models.PROTECT, related_name="+")
    photo = models.ForeignKey("catalog.Photo", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    email = models.EmailField()
    granted_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "id"], name="commerce_entitlement_unique_tenant_id"),
            models.UniqueConstraint(
                fields=["tenant", "transaction", "photo"],
                condition=models.Q(scope="photo"),
                name="commerce_entitlement_unique_transaction_photo",
            ),
            models.UniqueConstraint(
                fields=["tenant", "transaction", "event"],
                condition=models.Q(scope="event"),
                name="commerce_entitlement_unique_transaction_event",
            ),
            models.CheckConstraint(
                condition=models.Q(scope="photo", photo__isnull=False) | models.Q(scope="event", photo__isnull=True),
                name="commerce_entitlement_photo_matches_scope",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "email", "granted_at"], name="commerce_entitlement_email")]

    def __str__(self) -> str:
        target = f"photo {self.photo_id}" if self.photo_id else f"event {self.event_id}"
        return f"entitlement {self.pk}: {target} for {self.email}"


class Receipt(TenantModel):
    """The receipt email of a paid checkout: one per checkout, sent outside any transaction.

    `pending` → `sending` (claimed until `claimed_until`, so a crashed sender's claim lapses and
    another retries) → `sent`. A crash between the SMTP hand-off and recording `sent` can send a
    second copy with the same Message-ID (`message_id`), which mail clients collapse.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"

    checkout = models.OneToOneField(Checkout, on_delete=models.PROTECT, related_name="receipt")
    email = models.EmailField()
    message_id = models.CharField(max_length=255)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # When its `checkout.paid` message was last queued (NULL: written before this column; then
    # `created_at` counts). A receipt still unsent long after lost its message (the broker forgot
    # it) or ran out of retries: `receipts_requeue_stale` queues it again.
    queued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The stale-receipt sweep: the few receipts not sent yet, oldest first.
            models.Index(fields=["created_at"], name="commerce_receipt_unsent", condition=~models.Q(status="sent"))
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "sending", "sent"]), name="commerce_receipt_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(status="sent", sent_at__isnull=False)
                | (~models.Q(status="sent") & models.Q(sent_at__isnull=True)),
                name="commerce_receipt_sent_at_iff_sent",
            ),
        ]

    def __str__(self) -> str:
        return f"receipt of {self.checkout_id} ({self.status})"


class Refund(TenantModel):
    """A refund Darkroom asked the provider for: a payment it must not keep (e.g. one that arrived
    after expiry, or for an order with a photo withdrawn before it was paid), a paid order the
    studio refunds (`studio`, the whole amount), or some items of it (`studio_partial`: the
    lines that name it, their amounts; the last items' refund also gives back what is left of
    the payment), or part of a payment refunded in the provider's own
    dashboard (`provider_partial`: recorded from the provider's refund event, already
    `submitted` and landed; no lines name it, so nothing of the order is revoked and no wallet
    credit reversed, but the order's later refunds fit in what is left of the payment), or a
    second charge of a payment already paid (`duplicate_charge`: all of that charge, named by
    `payment_id`; no part of the order's payment, so none of the order's sums counts it and its
    landing changes nothing of the order).

    `requested` (written with the decision, in the processing transaction) → `submitted` (the
    provider accepted it; `provider_refund_id`) or `failed` (retried by the consumer, then left
    for an operator); `not_needed` once the whole payment came back otherwise before it was sent
    or after it was refused, or, refused, once a later refund of its items superseded it
    (`superseded_by`). `idempotency_key` goes to the provider, so retries never refund
    twice. The money side lands when the provider's refund webhook arrives (`landed_at`; the whole
    payment back: transaction `refunded`). `settled` once an operator paid the shopper outside the
    provider (`refund_settle_outside`): a `failed` refund, whose effects then land as if the provider
    had confirmed it, or a landed one the provider reported failed afterwards.
    """

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested"
        SUBMITTED = "submitted", "Submitted to the provider"
        FAILED = "failed", "Failed"
        # Nothing is owed by it: the whole payment came back otherwise (refunded in the
        # provider's dashboard, or by another refund) before it was sent or after it was refused,
        # or, refused, it was superseded by a refund that asks for its items again.
        NOT_NEEDED = "not_needed", "Not needed"
        # Paid back outside the provider (a bank transfer, say), recorded by an operator with a
        # note (`settled_outside_at`, `settled_outside_note`): it gave the money back.
        SETTLED = "settled", "Settled outside the provider"

    class Reason(models.TextChoices):
        LATE_PAYMENT = "late_payment", "Paid after the reservation expired"
        NOT_FULFILLABLE = "not_fulfillable", "Nothing left to deliver"
        AMOUNT_MISMATCH = "amount_mismatch", "Charged amount differs from the checkout"
        STUDIO = "studio", "Refunded by the studio"
        PHOTO_WITHDRAWN = "photo_withdrawn", "A photo in the order was withdrawn"
        STUDIO_PARTIAL = "studio_partial", "Items refunded by the studio"
        PROVIDER_PARTIAL = "provider_partial", "Part refunded at the payment provider"
        DUPLICATE_CHARGE = "duplicate_charge", "Charged twice: the second charge given back"

    # A refund that gives (or gave) money back: asked for, accepted by the provider, or paid back
    # outside it. A refused one gave nothing; a `not_needed` one was never sent or was superseded.
    LIVE_STATUSES: tuple[str, ...] = (Status.REQUESTED, Status.SUBMITTED, Status.SETTLED)

    # A refund that landed and then failed at the provider is owed to the shopper in one of these;
    # `settled` (paid back outside the provider) or `not_needed` (the whole payment came back
    # since) it is not.
    OWED_STATUSES: tuple[str, ...] = (Status.REQUESTED, Status.SUBMITTED)

    # `failed_after_landing` and `still_owed` below, as query filters.
    FAILED_AFTER_LANDING = models.Q(landed_at__isnull=False, provider_failed_at__gt=models.F("landed_at"))
    STILL_OWED = FAILED_AFTER_LANDING & models.Q(status__in=OWED_STATUSES)

    # The refunds that give back part of a payment: the studio's item refunds and the parts
    # refunded in the provider's dashboard. Together they may add up to the whole payment.
    PARTIAL_REASONS = (Reason.STUDIO_PARTIAL, Reason.PROVIDER_PARTIAL)

    # The refunds of a second charge (`payment_id`): not of the order's payment. `~SECOND_CHARGE`
    # filters a payment's refunds down to the order's own.
    SECOND_CHARGE = models.Q(reason="duplicate_charge")

    transaction = models.ForeignKey(Transaction, on_delete=models.PROTECT, related_name="refunds")
    reason = models.CharField(max_length=20, choices=Reason.choices)
    # The provider's id of the charge a `duplicate_charge` refund gives back (a Flutterwave
    # transaction id: one tx_ref charged twice); blank for every other refund, which gives back
    # (part of) the transaction's own payment. Database default: the release before this column
    # inserts refunds without naming it while both run during a deploy.
    payment_id = models.CharField(max_length=255, blank=True, default="", db_default="")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    idempotency_key = models.CharField(max_length=200, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.REQUESTED)
    provider_refund_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    # When a `payment.refund_requested` message was last written for it. A refund still
    # `requested` long after that lost its message (the broker forgot it):
    # `refunds_requeue_stale` queues it again.
    queued_at = models.DateTimeField(null=True, blank=True)
    # A studio refund of prints not shipped yet: put them back in stock once the refund lands.
    restock_prints = models.BooleanField(default=False)
    # When the provider confirmed it and its effects ran (downloads revoked, credits reversed).
    landed_at = models.DateTimeField(null=True, blank=True)
    # When the provider reported that this refund, once accepted, did not complete (Stripe
    # `refund.failed`: the money went back to the merchant, not to the shopper). Not landed yet,
    # the refund is `failed` then; landed already, it is left for an operator
    # (`darkroom_refunds_failed_after_landing_total`).
    provider_failed_at = models.DateTimeField(null=True, blank=True)
    # The provider's ids of earlier attempts of this refund that failed there before landing (a
    # second charge's, also after landing; or Darkroom's attempt set aside when that charge was
    # refunded in the provider's dashboard meanwhile): a failed attempt's id moves here
    # (`provider_refund_id` is then free for the next attempt), so that attempt's older
    # "succeeded" event, delivered late, is known for what it is.
    failed_provider_refund_ids = ArrayField(models.CharField(max_length=255), default=list, db_default=[], blank=True)
    # When an operator recorded that the shopper was paid back outside the provider, and how
    # (`settled`; audited as `refund.settled_outside`).
    settled_outside_at = models.DateTimeField(null=True, blank=True)
    settled_outside_note = models.TextField(blank=True, default="", db_default="")
    # A refused refund whose items a later refund asked for again (it is `not_needed`).
    superseded_by = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )

    class Meta:
        constraints = [
            # One refund per reason, except a studio's refunds of some items (each names its lines)
            # and the parts refunded at the provider (each its own provider refund or total).
            models.UniqueConstraint(
                fields=["tenant", "transaction", "reason"],
                condition=~models.Q(reason__in=["studio_partial", "provider_partial", "duplicate_charge"]),
                name="commerce_refund_unique_reason",
            ),
            # A second charge is given back once, whoever tells it again. Led by the charge's id:
            # a refund event naming only that charge finds its payment through it.
            models.UniqueConstraint(
                fields=["payment_id", "tenant", "transaction"],
                condition=models.Q(reason="duplicate_charge"),
                name="commerce_refund_unique_second_charge",
            ),
            # A second charge's refund names the charge; no other refund does.
            models.CheckConstraint(
                condition=(models.Q(reason="duplicate_charge") & ~models.Q(payment_id=""))
                | (~models.Q(reason="duplicate_charge") & models.Q(payment_id="")),
                name="commerce_refund_second_charge_named",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["requested", "submitted", "failed", "not_needed", "settled"]),
                name="commerce_refund_status_valid",
            ),
            models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="commerce_refund_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(status="settled", settled_outside_at__isnull=False)
                | (~models.Q(status="settled") & models.Q(settled_outside_at__isnull=True)),
                name="commerce_refund_settled_when",
            ),
        ]
        indexes = [
            # The refunds under way, a handful among every refund ever made: each payout reads its
            # wallet's share of them (`wallet_refund_holds`), and so do the stale-refund sweep and
            # the metrics of refunds not landing.
            models.Index(
                fields=["tenant", "created_at"],
                condition=models.Q(status__in=["requested", "submitted"], landed_at__isnull=True),
                name="commerce_refund_under_way",
            ),
        ]

    @property
    def failed_after_landing(self) -> bool:
        """The provider reported it failed after it had landed (not a failure before landing,
        whose refund an operator may have settled, landing it, since)."""
        return (
            self.landed_at is not None
            and self.provider_failed_at is not None
            and self.provider_failed_at > self.landed_at
        )

    @property
    def still_owed(self) -> bool:
        """It landed, then failed at the provider, and neither an operator paid it back outside
        the provider since nor the whole payment came back: the shopper has neither the money
        nor (a studio's refund) the items."""
        return self.failed_after_landing and self.status in self.OWED_STATUSES

    def __str__(self) -> str:
        """Names the order as the shop and its e-mails do (the first 8 characters of the
        checkout's id; reads the payment for it) and what became of the refund."""
        order = str(self.transaction.checkout_id)[:8]
        amount = money_text(self.amount_minor, self.currency)
        return f"refund {self.pk} of order {order} ({amount}): {refund_status_text(self)}"


def _when(moment: datetime) -> str:
    """A time as the admin writes its dates ("March 4, 2026, 10:05 a.m.", in TIME_ZONE)."""
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def refund_status_text(refund: Refund) -> str:
    """What became of a refund, in words. Its stored `status` alone does not say: a refund the
    provider confirmed stays `submitted` (landing sets `landed_at`), and one that failed at the
    provider after it landed too (`provider_failed_at`). The admin shows it (each text is one
    choice of its `RefundStatusFilter`), and so does a refund's `__str__`."""
    if refund.status == Refund.Status.SETTLED:
        settled = refund.settled_outside_at
        return f"Paid back outside the provider ({_when(settled)})" if settled else "Paid back outside the provider"
    if refund.status == Refund.Status.NOT_NEEDED:
        return "Not needed: nothing is owed"
    if refund.status == Refund.Status.FAILED:
        failed = refund.provider_failed_at
        return (
            f"Failed at the provider ({_when(failed)}), before it landed"
            if failed
            else "Failed: refused by the provider"
        )
    # requested or submitted
    if refund.still_owed and refund.provider_failed_at is not None:
        return f"Failed at the provider after it landed ({_when(refund.provider_failed_at)}): still owed to the shopper"
    if refund.landed_at is not None:
        return f"Refunded (landed {_when(refund.landed_at)})"
    if refund.status == Refund.Status.SUBMITTED:
        return "Submitted to the provider: waiting for it to confirm"
    return "Requested: being sent to the provider"
