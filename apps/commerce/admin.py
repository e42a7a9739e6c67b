"""Commerce in the Django admin: read-only views of checkouts, payments and what they granted
(platform superusers act in the system context; changes go through services, not the admin)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from apps.commerce.errors import RefundNotSettleable
from apps.commerce.models import Checkout, CheckoutLine, CheckoutShipping, Entitlement, Receipt, Refund, Transaction
from apps.commerce.services.payment import SETTLE_NOTE_MAX_CHARS, refund_retry, refund_settle_outside
from apps.core.admin_base import ReadOnlyAdmin
from apps.payments.providers.base import money_text


class CheckoutLineInline(admin.TabularInline):
    model = CheckoutLine
    extra = 0
    fields = ("position", "kind", "size", "product", "photo", "quantity", "amount_minor", "currency", "state")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CheckoutShippingInline(admin.StackedInline):
    model = CheckoutShipping
    extra = 0
    fields = (
        "name",
        "line1",
        "line2",
        "city",
        "postal_code",
        "region",
        "country",
        "phone",
        "fulfilment_status",
        "shipped_at",
        "carrier",
        "tracking_reference",
    )
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Checkout)
class CheckoutAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "email", "provider", "status", "amount_minor", "currency", "created_at")
    list_filter = ("status", "provider")
    search_fields = ("=id", "email", "=stripe_checkout_session_id", "=flutterwave_tx_ref", "=paypal_order_id")
    ordering = ("-created_at",)
    list_select_related = ("tenant",)
    show_full_result_count = False
    inlines = [CheckoutLineInline, CheckoutShippingInline]


@admin.register(Transaction)
class TransactionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "tenant",
        "checkout",
        "provider",
        "status",
        "amount_minor",
        "currency",
        "paid_at",
        "refunded_at",
    )
    list_filter = ("status", "provider")
    search_fields = ("=id", "=checkout__id", "=payment_id")
    ordering = ("-created_at",)
    show_full_result_count = False


@admin.register(Entitlement)
class EntitlementAdmin(ReadOnlyAdmin):
    list_display = ("id", "tenant", "email", "scope", "event", "photo", "granted_at", "revoked_at")
    list_select_related = ("tenant", "event", "photo")  # `photo` may be null: not followed by default
    list_filter = ("scope",)
    search_fields = ("email",)
    ordering = ("-granted_at",)
    show_full_result_count = False


class FailedAtProviderFilter(admin.SimpleListFilter):
    """Refunds the provider reported failed after accepting them (`provider_failed_at`): before
    they landed (they are `failed`, retried like a refusal) or after (the shopper has neither the
    money nor the items: `darkroom_refunds_failed_after_landing_total`, runbook "Refund failed")."""

    title = "failed at the provider"
    parameter_name = "failed_at_provider"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("before_landing", "before it landed"), ("after_landing", "after it landed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Refund]) -> QuerySet[Refund]:
        failed = queryset.filter(provider_failed_at__isnull=False)
        # (a refund that failed before it landed lands once an operator settles it outside the
        # provider: after that, not before, is what `Refund.FAILED_AFTER_LANDING` says)
        if self.value() == "before_landing":
            return failed.exclude(Refund.FAILED_AFTER_LANDING)
        if self.value() == "after_landing":
            return failed.filter(Refund.FAILED_AFTER_LANDING)
        return queryset


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "tenant",
        "transaction",
        "reason",
        "payment_id",
        "status",
        "amount_minor",
        "currency",
        "attempts",
        "created_at",
        "landed_at",
        "provider_failed_at",
        "settled_outside_at",
    )
    list_filter = ("status", "reason", FailedAtProviderFilter)
    ordering = ("-created_at",)
    actions = ("retry", "settle_outside")

    @admin.action(
        description="Retry the selected failed refunds (after fixing the cause; audited)", permissions=["superuser"]
    )
    def retry(self, request: HttpRequest, queryset: QuerySet[Refund]) -> None:
        label = f"admin:{request.user.get_username()}"
        user = request.user if request.user.is_authenticated else None
        retried = [r.pk for r in queryset if refund_retry(refund_id=r.pk, actor_label=label, actor_user=user)]  # type: ignore[arg-type]
        skipped = queryset.count() - len(retried)
        messages.success(
            request,
            f"Queued {len(retried)} refund(s) again; {skipped} skipped (not failed, a payment already refunded"
            " whole, or more than is left of the payment after the order's other refunds).",
        )

    @admin.action(
        description="Record the selected refunds as paid back outside the provider (audited)",
        permissions=["superuser"],
    )
    def settle_outside(self, request: HttpRequest, queryset: QuerySet[Refund]) -> TemplateResponse | None:
        """First a page naming the refunds and asking how the shopper was paid back; its answer
        settles each (`refund_settle_outside`), each in its own transaction: one that cannot be
        settled is reported and leaves the others settled."""
        form = SettleOutsideForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return TemplateResponse(
                request,
                "admin/commerce/refund/settle_outside.html",
                {
                    **self.admin_site.each_context(request),
                    "title": "Record refunds as paid back outside the provider",
                    "refunds": [
                        {"refund": refund, "amount": money_text(refund.amount_minor, refund.currency)}
                        for refund in queryset.order_by("pk")
                    ],
                    "form": form,
                    "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                    "opts": self.model._meta,
                },
            )
        label = f"admin:{request.user.get_username()}"
        user = request.user if request.user.is_authenticated else None
        for refund in queryset.order_by("pk"):
            try:
                refund_settle_outside(
                    refund_id=refund.pk,
                    note=form.cleaned_data["note"],
                    actor_label=label,
                    actor_user=user,  # type: ignore[arg-type]
                )
            except RefundNotSettleable as refusal:
                messages.error(request, refusal.detail)
            else:
                messages.success(request, f"Refund {refund.pk} recorded as paid back outside the provider.")
        return None


class SettleOutsideForm(forms.Form):
    note = forms.CharField(
        label="How was the shopper paid back?",
        help_text="A bank transfer's reference, say. Kept with each refund and in the audit log.",
        max_length=SETTLE_NOTE_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
    )


@admin.register(Receipt)
class ReceiptAdmin(ReadOnlyAdmin):
    list_display = ("checkout", "tenant", "email", "status", "attempts", "sent_at")
    list_filter = ("status",)
    ordering = ("-created_at",)
