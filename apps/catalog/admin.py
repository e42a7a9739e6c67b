"""Catalog admin for platform superusers (runs in the audited system context).

Originals are shown by storage name only, never as a link: an original is served only
through an entitlement. Access codes appear only as "set"/"not set". Events are read-only
(their studios change them, audited). What decides money is read-only here: prices and price
lists (studios set them, `price_list_set`), products (the Deactivate/Reactivate actions go
through the audited `product_set_active`), a photo's photographer (checkout lines copy it, so
it decides whose wallet a sale credits) and stock.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import ngettext

from apps.catalog.models import Event, Photo, Price, PriceList, Product, Stock, StockRestock
from apps.catalog.products import Actor, product_set_active
from apps.catalog.storage import public_url
from apps.core.admin import ShownInPlace, money_display
from apps.core.admin_base import ReadOnlyAdmin


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    """Browse only: studios create and change events (`event_create`, `event_update`: the slug
    fixed and lower-case, the access code matching the visibility, every change audited). Edited
    here, a tenant or visibility change broke the database's constraints (a 500) and the rest
    went unaudited."""

    list_display = ("slug", "title", "date", "tenant", "visibility", "created_at")
    list_filter = ("visibility",)
    search_fields = ("slug", "title")
    exclude = ("access_code_hash",)
    readonly_fields = ("access_code_set", "created_at")

    @admin.display(description="access code", boolean=True)
    def access_code_set(self, event: Event) -> bool:
        return bool(event.access_code_hash)


@admin.register(Photo)
class PhotoAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "event",
        "tenant",
        "photographer",
        "width",
        "height",
        "derivatives_status",
        "withdrawn_at",
        "created_at",
    )
    list_filter = ("derivatives_status", ("withdrawn_at", admin.EmptyFieldListFilter))
    exclude = ("original", "preview", "thumbnail")
    readonly_fields = (
        "tenant",
        "event",
        "photographer",
        "public_token",
        "original_name",
        "preview_link",
        "thumbnail_link",
        "width",
        "height",
        "derivatives_status",
        "derivatives_error",
        "derivatives_requested_at",
        # Withdrawn only through `photo_withdraw` (API or the studio's event page), which also
        # queues the cleanup.
        "withdrawn_at",
        "withdrawn_reason",
        "created_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # photos arrive through the upload API (probe, private storage, derivatives)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Taken down through `photo_withdraw` (audited; previews and face index cleaned up). A
        # deleted row left its original in storage and no audit row.
        return False

    @admin.display(description="original (private)")
    def original_name(self, photo: Photo) -> str:
        return photo.original.name or ""

    @admin.display(description="preview")
    def preview_link(self, photo: Photo) -> Any:
        url = public_url(photo.preview.name)
        return format_html('<a href="{}">{}</a>', url, photo.preview.name) if url else "-"

    @admin.display(description="thumbnail")
    def thumbnail_link(self, photo: Photo) -> Any:
        url = public_url(photo.thumbnail.name)
        return format_html('<a href="{}">{}</a>', url, photo.thumbnail.name) if url else "-"


@admin.register(Product)
class ProductAdmin(ReadOnlyAdmin):
    list_display = ("sku", "kind", "event", "photo", "size", "tenant", "active")
    list_select_related = ("event", "photo", "tenant")  # `photo` may be null: not followed by default
    list_filter = ("kind", "active")
    search_fields = ("sku",)
    actions = ("deactivate", "reactivate")

    def _set_active(self, request: HttpRequest, queryset: QuerySet[Product], *, active: bool) -> None:
        """Says how many products this changed and how many already were so: each one's state is
        read under the row lock that `product_set_active` then takes again, in one transaction."""
        actor = Actor(label=f"admin:{request.user.get_username()}", user=request.user)  # type: ignore[arg-type]
        selected = list(queryset.order_by("pk"))
        changed = 0
        for product in selected:
            with transaction.atomic():
                was = Product.objects.select_for_update(no_key=True).values_list("active", flat=True).get(pk=product.pk)
                changed += was != active
                product_set_active(tenant_id=product.tenant_id, product_id=product.pk, active=active, actor=actor)
        verb, state = ("Reactivated", "active") if active else ("Deactivated", "inactive")
        already = f"; {len(selected) - changed} already {state}" if changed < len(selected) else ""
        products = ngettext("%(count)d product", "%(count)d products", changed) % {"count": changed}
        messages.success(request, f"{verb} {products}{already}. Each change is audited.")

    @admin.action(description="Stop selling the selected products (audited)", permissions=["superuser"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Product]) -> None:
        self._set_active(request, queryset, active=False)

    @admin.action(description="Resume selling the selected products (audited)", permissions=["superuser"])
    def reactivate(self, request: HttpRequest, queryset: QuerySet[Product]) -> None:
        self._set_active(request, queryset, active=True)


class PriceInline(admin.TabularInline):
    model = Price
    extra = 0
    fields = ("kind", "size", "amount_money", "updated_at")
    readonly_fields = fields
    can_delete = False

    amount_money = money_display("amount_minor", description="amount")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PriceList)
class PriceListAdmin(ReadOnlyAdmin):
    list_display = ("event", "tenant", "currency", "created_at")
    inlines = [PriceInline]


@admin.register(Price)
class PriceAdmin(ShownInPlace, ReadOnlyAdmin):
    list_display = ("event", "kind", "size", "amount_money", "tenant", "updated_at")
    list_filter = ("kind", "currency")
    shown_in_place_of = {"amount_minor": "amount_money"}

    amount_money = money_display("amount_minor", description="amount")


@admin.register(Stock)
class StockAdmin(ReadOnlyAdmin):
    """Browse only. Quantity and epoch belong to the fenced inventory writer (and restocks, through
    `stock_restock`, audited as StockRestock rows); a print's stock row is created with the
    product. Editable here, its product or studio could be changed (a print's units moved to
    another product, unaudited) and the row deleted (the print left without stock)."""

    list_display = ("product", "tenant", "quantity", "initial_quantity", "epoch", "updated_at")
    list_select_related = ("product", "tenant")
    raw_id_fields = ("product",)


@admin.register(StockRestock)
class StockRestockAdmin(ReadOnlyAdmin):
    """Who restocked which print, when, by how many units (append-only: read only here too)."""

    list_display = (
        "created_at",
        "tenant",
        "product",
        "added_quantity",
        "quantity_after",
        "initial_quantity_after",
        "actor_label",
        "request_id",
    )
    list_select_related = ("tenant", "product")
    search_fields = ("=product__sku", "actor_label", "=request_id")
    ordering = ("-created_at", "-id")
    raw_id_fields = ("product", "actor_user")
    show_full_result_count = False
