"""Commerce in the Django admin: read-only views of checkouts, payments and what they granted
(platform superusers act in the system context; changes go through services, not the admin)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from apps.commerce.errors import RefundNotSettleable
from apps.commerce.models import (
    Checkout,
    CheckoutLine,
    CheckoutShipping,
    Entitlement,
    Receipt,
    Refund,
    Transaction,
    refund_status_text,
)
from apps.commerce.services.payment import SETTLE_NOTE_MAX_CHARS, refund_retry, refund_settle_outside
from apps.core.admin import SearchById, ShownInPlace, ask_for_note, money_display, note_field
from apps.core.admin_base import ReadOnlyAdmin
from apps.payments.providers.base import money_text


class CheckoutLineInline(admin.TabularInline):
    model = CheckoutLine
    extra = 0
    fields = ("position", "kind", "size", "product", "photo", "quantity", "unit_amount_money", "amount_money", "state")
    readonly_fields = fields
    can_delete = False

    unit_amount_money = money_display("unit_amount_minor", description="unit price")
    amount_money = money_display("amount_minor", description="amount")

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
class CheckoutAdmin(SearchById, ShownInPlace, ReadOnlyAdmin):
    list_display = ("id", "tenant", "email", "provider", "status", "amount_money", "created_at")
    list_filter = ("status", "provider")
    # the checkout's id, whole or short as the shop shows it ("order 09e10db3"): `SearchById`
    search_fields = ("email", "=stripe_checkout_session_id", "=flutterwave_tx_ref", "=paypal_order_id")
    searched_by_start = ("pk",)
    ordering = ("-created_at",)
    list_select_related = ("tenant",)
    show_full_result_count = False
    inlines = [CheckoutLineInline, CheckoutShippingInline]
    shown_in_place_of = {"amount_minor": "amount_money"}

    amount_money = money_display("amount_minor", description="amount")


@admin.register(Transaction)
class TransactionAdmin(ShownInPlace, ReadOnlyAdmin):
    list_display = ("id", "tenant", "checkout", "provider", "status", "amount_money", "paid_at", "refunded_at")
    list_filter = ("status", "provider")
    search_fields = ("=id", "=checkout__id", "=payment_id")
    ordering = ("-created_at",)
    show_full_result_count = False
    shown_in_place_of = {"amount_minor": "amount_money"}

    amount_money = money_display("amount_minor", description="amount")


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


class RefundStatusFilter(admin.SimpleListFilter):
    """The refunds by what became of them (`refund_status_text`): waiting to be sent, waiting on
    the provider, landed, owed again after it landed, failed, paid back outside the provider, not
    needed. Each refund is under exactly one choice."""

    title = "status"
    parameter_name = "progress"
    CHOICES: dict[str, tuple[str, Q]] = {
        "to_send": ("Requested: being sent", Q(status=Refund.Status.REQUESTED, landed_at__isnull=True)),
        "at_provider": ("Waiting on the provider", Q(status=Refund.Status.SUBMITTED, landed_at__isnull=True)),
        "landed": (
            "Refunded (landed)",
            Q(status__in=Refund.OWED_STATUSES, landed_at__isnull=False) & ~Refund.FAILED_AFTER_LANDING,
        ),
        "still_owed": ("Failed after it landed: still owed", Refund.STILL_OWED),
        "failed": ("Failed", Q(status=Refund.Status.FAILED)),
        "settled": ("Paid back outside the provider", Q(status=Refund.Status.SETTLED)),
        "not_needed": ("Not needed", Q(status=Refund.Status.NOT_NEEDED)),
    }

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(value, label) for value, (label, _) in self.CHOICES.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Refund]) -> QuerySet[Refund]:
        chosen = self.CHOICES.get(self.value() or "")
        return queryset.filter(chosen[1]) if chosen else queryset


@admin.register(Refund)
class RefundAdmin(ShownInPlace, ReadOnlyAdmin):
    list_display = (
        "id",
        "tenant",
        "transaction",
        "reason",
        "payment_id",
        "status_shown",
        "amount_money",
        "attempts",
        "created_at",
        "landed_at",
        "provider_failed_at",
        "settled_outside_at",
    )
    list_filter = (RefundStatusFilter, "reason", FailedAtProviderFilter)
    ordering = ("-created_at",)
    shown_in_place_of = {"status": "status_shown", "amount_minor": "amount_money"}
    actions = ("retry", "settle_outside")

    amount_money = money_display("amount_minor", description="amount")

    @admin.display(description="status", ordering="status")
    def status_shown(self, refund: Refund) -> str:
        return refund_status_text(refund)

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
        """First a page naming the refunds (studio, order, shopper's e-mail, what became of them)
        and asking how the shopper was paid back; its answer
        settles each (`refund_settle_outside`), each in its own transaction: one that cannot be
        settled is reported and leaves the others settled."""
        answer = ask_for_note(
            self,
            request,
            queryset.select_related("tenant", "transaction__checkout"),
            action="settle_outside",
            form_class=SettleOutsideForm,
            template="admin/commerce/refund/settle_outside.html",
            title="Record refunds as paid back outside the provider",
            columns=("Refund", "Studio", "Order", "Shopper", "Status", "Amount", "Last error"),
            cells=lambda refund: (
                str(refund.pk),
                str(refund.tenant),
                str(refund.transaction.checkout_id)[:8],  # as the shop and its e-mails name it
                refund.transaction.checkout.email,
                refund_status_text(refund),
                money_text(refund.amount_minor, refund.currency),
                refund.last_error,
            ),
            submit="Record as paid back",
        )
        if isinstance(answer, TemplateResponse):
            return answer
        label = f"admin:{request.user.get_username()}"
        user = request.user if request.user.is_authenticated else None
        for refund in queryset.order_by("pk"):
            try:
                refund_settle_outside(
                    refund_id=refund.pk,
                    note=answer,
                    actor_label=label,
                    actor_user=user,  # type: ignore[arg-type]
                )
            except RefundNotSettleable as refusal:
                messages.error(request, refusal.detail)
            else:
                messages.success(request, f"Refund {refund.pk} recorded as paid back outside the provider.")
        return None


class SettleOutsideForm(forms.Form):
    note = note_field(
        label="How was the shopper paid back?",
        help_text="A bank transfer's reference, say. Kept with each refund and in the audit log.",
        max_length=SETTLE_NOTE_MAX_CHARS,
    )


@admin.register(Receipt)
class ReceiptAdmin(ReadOnlyAdmin):
    list_display = ("checkout", "tenant", "email", "status", "attempts", "sent_at")
    list_filter = ("status",)
    ordering = ("-created_at",)
