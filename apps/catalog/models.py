"""Catalog: events, photos, products, price lists and print stock.

Invariants held by Postgres (each has a test in tests/catalog/test_constraints.py):
* every unique key starts with `tenant_id` (see DESIGN "Beyond one machine"), and every
  reference between catalog rows is also a composite foreign key on (tenant_id, <id>), added in
  the migration, so a row can never point at another tenant's event, photo, product or price list;
* an event's slug is not one of the shop's own page names (RESERVED_EVENT_SLUGS);
* a product's SKU is unique in its studio whatever its case (on `lower(sku)`; its test is in
  tests/catalog/test_sku_case.py);
* an access-code event stores a password hash of its code, a public one stores none;
* product kinds are well formed: a download names a photo and no size, a print a photo and a
  size, a bulk product neither;
* money is a positive integer amount in minor units with a 3-letter uppercase ISO 4217 currency,
  one currency per event price list, one price per (event, kind, size);
* print stock never goes negative nor above its initial quantity; `epoch` fences the single
  writer per SKU (apps/commerce/batched);
* a restock (`StockRestock`) adds a positive number of units and is append-only (trigger plus
  revoked UPDATE/DELETE for the runtime role), like the audit log.

Originals live under the private storage prefix and are never exposed by URL; previews and
thumbnails (watermarked, generated) live under the public prefix.
"""

from __future__ import annotations

import uuid

import pgtrigger
from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from apps.payments.providers.base import money_text
from apps.tenancy.models import TenantModel

CURRENCY_PATTERN = r"^[A-Z]{3}$"
# The shop's own pages under /s/<studio>/ (apps/web/shop/urls.py): an event with one of these
# slugs would be hidden behind them.
RESERVED_EVENT_SLUGS = ("cart", "checkouts", "orders")


class ProductKind(models.TextChoices):
    DOWNLOAD = "download", "Digital download (one photo)"
    PRINT = "print", "Print (one photo in a size, limited stock)"
    BULK = "bulk", "All my photos of this event"


# A size is required for prints and forbidden for the other kinds (products and prices alike).
SIZE_MATCHES_KIND = models.Q(kind=ProductKind.PRINT, size__gt="") | (
    models.Q(kind__in=[ProductKind.DOWNLOAD, ProductKind.BULK]) & models.Q(size="")
)


class Event(TenantModel):
    class Visibility(models.TextChoices):
        PUBLIC = "public", "Public"
        ACCESS_CODE = "access_code", "Protected by an access code"

    title = models.CharField(max_length=200)
    date = models.DateField()
    slug = models.SlugField(max_length=80)
    visibility = models.CharField(max_length=20, choices=Visibility.choices, default=Visibility.PUBLIC)
    # make_password() of the access code; empty for public events. Never the code itself.
    access_code_hash = models.CharField(max_length=256, blank=True, default="")
    # The studio chose to sell every photo as a download ("Sell every photo as a download"): each
    # photo uploaded later gets its download product in its upload's transaction, until the studio
    # stops it (apps/catalog/downloads.py).
    downloads_for_new_photos = models.BooleanField(default=False, db_default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "slug"], name="catalog_event_unique_tenant_slug"),
            models.UniqueConstraint(fields=["tenant", "id"], name="catalog_event_unique_tenant_id"),
            models.CheckConstraint(condition=models.Q(slug__gt=""), name="catalog_event_slug_not_empty"),
            models.CheckConstraint(
                condition=~models.Q(slug__in=RESERVED_EVENT_SLUGS), name="catalog_event_slug_not_reserved"
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(visibility="public", access_code_hash="")
                    | models.Q(visibility="access_code", access_code_hash__gt="")
                ),
                name="catalog_event_access_code_matches_visibility",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "-date"], name="catalog_event_tenant_date")]

    def __str__(self) -> str:
        return f"{self.slug} ({self.date})"


class PhotoQuerySet(models.QuerySet["Photo"]):
    def published(self) -> PhotoQuerySet:
        """What shoppers and find me see: derivatives ready, not withdrawn (bulk downloads need no
        previews: they cover every photo of the event not withdrawn)."""
        return self.filter(derivatives_status="ready", withdrawn_at__isnull=True)


class Photo(TenantModel):
    objects = PhotoQuerySet.as_manager()

    class DerivativesStatus(models.TextChoices):
        PENDING = "pending", "Pending"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    event = models.ForeignKey(Event, on_delete=models.PROTECT, related_name="photos")
    photographer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    # Unguessable name part of the public derivatives, so previews of a protected event cannot
    # be enumerated by photo id.
    public_token = models.UUIDField(default=uuid.uuid4, editable=False)
    # Storage names only; `original` is under the private prefix and never turned into a URL.
    original = models.FileField(max_length=300)
    preview = models.FileField(max_length=300, blank=True, default="")
    thumbnail = models.FileField(max_length=300, blank=True, default="")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    derivatives_status = models.CharField(
        max_length=10, choices=DerivativesStatus.choices, default=DerivativesStatus.PENDING
    )
    derivatives_error = models.TextField(blank=True, default="")
    # When the render was last asked for (an outbox message written). A photo still `pending` long
    # after that lost its message (the broker forgot it): `photo_derivatives_requeue_stale` asks
    # again.
    derivatives_requested_at = models.DateTimeField(null=True, blank=True)
    # Withdrawn by the studio (a wrong upload, someone asked to be taken down): no longer shown,
    # sold, searched or matched, its previews and face index deleted (apps/catalog/withdrawal.py).
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_reason = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "id"], name="catalog_photo_unique_tenant_id"),
            models.UniqueConstraint(fields=["tenant", "public_token"], name="catalog_photo_unique_tenant_token"),
            models.CheckConstraint(
                condition=models.Q(derivatives_status__in=["pending", "ready", "failed"]),
                name="catalog_photo_status_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(width__gt=0, height__gt=0), name="catalog_photo_dimensions_positive"
            ),
            models.CheckConstraint(
                condition=~models.Q(derivatives_status="ready") | models.Q(preview__gt="", thumbnail__gt=""),
                name="catalog_photo_ready_has_derivatives",
            ),
            models.CheckConstraint(
                condition=models.Q(withdrawn_at__isnull=True, withdrawn_reason="")
                | models.Q(withdrawn_at__isnull=False) & ~models.Q(withdrawn_reason=""),
                name="catalog_photo_withdrawn_with_reason",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "event", "id"], name="catalog_photo_tenant_event"),
            # The requeue sweep's scan: only photos still waiting for their derivatives.
            models.Index(
                fields=["derivatives_requested_at"],
                name="catalog_photo_pending_render",
                condition=models.Q(derivatives_status="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"photo {self.pk} of event {self.event_id}"


class Product(TenantModel):
    event = models.ForeignKey(Event, on_delete=models.PROTECT, related_name="products")
    kind = models.CharField(max_length=10, choices=ProductKind.choices)
    photo = models.ForeignKey(Photo, on_delete=models.PROTECT, null=True, blank=True, related_name="products")
    size = models.CharField(max_length=32, blank=True, default="")
    sku = models.CharField(max_length=64)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # A studio's SKUs are unique whatever their case: a print lab or a bookkeeper reads
            # "PRINT-A4" and "print-a4" as one SKU. A unique expression index (migration 0008).
            models.UniqueConstraint("tenant", Lower("sku"), name="catalog_product_unique_tenant_sku"),
            models.UniqueConstraint(fields=["tenant", "id"], name="catalog_product_unique_tenant_id"),
            models.UniqueConstraint(
                fields=["tenant", "photo", "kind", "size"],
                condition=models.Q(photo__isnull=False),
                name="catalog_product_unique_photo_kind_size",
            ),
            models.UniqueConstraint(
                fields=["tenant", "event"],
                condition=models.Q(kind="bulk"),
                name="catalog_product_unique_bulk_per_event",
            ),
            models.CheckConstraint(condition=models.Q(sku__gt=""), name="catalog_product_sku_not_empty"),
            models.CheckConstraint(condition=SIZE_MATCHES_KIND, name="catalog_product_size_matches_kind"),
            models.CheckConstraint(
                condition=(
                    models.Q(kind__in=["download", "print"], photo__isnull=False)
                    | models.Q(kind="bulk", photo__isnull=True)
                ),
                name="catalog_product_photo_matches_kind",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "event", "id"], name="catalog_product_tenant_event")]

    def __str__(self) -> str:
        return self.sku


class PriceList(TenantModel):
    """The prices of one event, all in one currency (fixed once the first price exists)."""

    event = models.ForeignKey(Event, on_delete=models.PROTECT, related_name="+")
    currency = models.CharField(max_length=3)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "event"], name="catalog_pricelist_unique_tenant_event"),
            # Target of the prices' composite foreign key (keeps event and currency consistent).
            models.UniqueConstraint(
                fields=["tenant", "id", "event", "currency"], name="catalog_pricelist_unique_tenant_id_event_cur"
            ),
            models.CheckConstraint(
                condition=models.Q(currency__regex=CURRENCY_PATTERN), name="catalog_pricelist_currency_iso4217"
            ),
        ]

    def __str__(self) -> str:
        return f"prices of event {self.event_id} in {self.currency}"


class Price(TenantModel):
    price_list = models.ForeignKey(PriceList, on_delete=models.CASCADE, related_name="prices")
    event = models.ForeignKey(Event, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=10, choices=ProductKind.choices)
    size = models.CharField(max_length=32, blank=True, default="")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "event", "kind", "size"], name="catalog_price_unique_tenant_event_kind_size"
            ),
            models.CheckConstraint(condition=models.Q(amount_minor__gt=0), name="catalog_price_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(currency__regex=CURRENCY_PATTERN), name="catalog_price_currency_iso4217"
            ),
            models.CheckConstraint(condition=SIZE_MATCHES_KIND, name="catalog_price_size_matches_kind"),
        ]

    def __str__(self) -> str:
        size = f" {self.size}" if self.size else ""
        return f"{self.kind}{size}: {money_text(self.amount_minor, self.currency)}"


class Stock(TenantModel):
    """Units of a print product left to sell.

    `quantity` is decremented only by the inventory strategy deciding reservations (the batched
    writer's `UPDATE ... WHERE epoch <= :mine`, fenced by `epoch`, or `row_lock` under its row
    lock); releases and restocks (`apps.catalog.products.stock_restock`) only ever add units, as
    relative updates under the row lock, and leave `epoch` alone. The check constraints make an
    oversell impossible whatever any writer does.
    """

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="stock_rows")
    quantity = models.BigIntegerField()
    initial_quantity = models.BigIntegerField()
    epoch = models.BigIntegerField(default=0, db_default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "product"], name="catalog_stock_unique_tenant_product"),
            models.CheckConstraint(condition=models.Q(quantity__gte=0), name="catalog_stock_quantity_non_negative"),
            models.CheckConstraint(
                condition=models.Q(initial_quantity__gte=0), name="catalog_stock_initial_non_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(quantity__lte=models.F("initial_quantity")),
                name="catalog_stock_quantity_within_initial",
            ),
            models.CheckConstraint(condition=models.Q(epoch__gte=0), name="catalog_stock_epoch_non_negative"),
        ]

    def __str__(self) -> str:
        return f"stock of product {self.product_id}: {self.quantity}/{self.initial_quantity}"


class StockRestock(TenantModel):
    """One restock of a print: who added how many units, when, and the stock it left. Append-only.

    Written in the same transaction as the stock UPDATE it records (`stock_restock`), so the sum
    of `added_quantity` over a product's restocks is exactly what restocks added to its
    `initial_quantity`. UPDATE and DELETE are refused by a trigger and by revoked privileges of
    the runtime role (`APPEND_ONLY`).
    """

    APPEND_ONLY = True

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="restocks")
    added_quantity = models.BigIntegerField()
    quantity_after = models.BigIntegerField()
    initial_quantity_after = models.BigIntegerField()
    # The signed-in member who asked (None for an API key); `actor_label` names either.
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_label = models.CharField(max_length=200)
    request_id = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(added_quantity__gt=0), name="catalog_stockrestock_added_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(quantity_after__gte=0, quantity_after__lte=models.F("initial_quantity_after")),
                name="catalog_stockrestock_after_within_initial",
            ),
            models.CheckConstraint(condition=models.Q(actor_label__gt=""), name="catalog_stockrestock_actor_not_empty"),
        ]
        indexes = [models.Index(fields=["tenant", "product", "-created_at"], name="catalog_restock_tenant_product")]
        triggers = [
            pgtrigger.Protect(name="catalog_stockrestock_append_only", operation=pgtrigger.Update | pgtrigger.Delete),
        ]

    def __str__(self) -> str:
        return f"+{self.added_quantity} to product {self.product_id} by {self.actor_label}"
