"""Payouts in the Django admin (platform superusers, system context).

Batches and payouts are written by the services only (read-only here); the two payout actions
settle, audited, a payout the platform could not settle itself (`needs_review`, or `submitted`
and not yet confirmed) after the operator checked it with the provider: each first shows the
payouts and asks what the provider showed, a note kept in the audit log (also buttons on a
payout's own page). The list shows each payout's `last_error`, cut short. Destinations are set
through `payout_destination_set` (validated by the provider's adapter, audited). The batch list
has a "Pay out now" button: an audited request that the batch task picks up through the outbox.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.text import Truncator
from django.utils.translation import ngettext

from apps.core.admin import RowActions, SearchById, ShownInPlace, ask_for_note, money_display, note_field, short_text
from apps.core.admin_base import ReadOnlyAdmin, is_platform_superuser
from apps.core.problems import DomainError
from apps.payments.providers.base import PayoutDestinationError, money_text
from apps.payouts.models import Payout, PayoutBatch, PayoutDestination
from apps.payouts.services import (
    payout_batch_request,
    payout_destination_normalize,
    payout_destination_set,
    payout_resolve,
)
from apps.tenancy.models import Membership

# The longest note an operator gives when settling payouts (as for webhook events).
PAYOUT_CHECK_NOTE_MAX_CHARS = 1000


@admin.register(PayoutBatch)
class PayoutBatchAdmin(ReadOnlyAdmin):
    list_display = ("id", "status", "trigger", "epoch", "runs", "payouts_created", "started_at", "completed_at")
    list_filter = ("status",)
    ordering = ("-id",)

    def get_urls(self) -> list[Any]:
        run = self.admin_site.admin_view(self.pay_out_now)
        return [path("pay-out-now/", run, name="payouts_payoutbatch_pay_out_now"), *super().get_urls()]

    def pay_out_now(self, request: HttpRequest) -> HttpResponse:
        """POST only (CSRF-checked by the admin): ask for a batch now; superusers only."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.is_superuser:
            messages.error(request, "Only a platform superuser may start a payout batch.")
        else:
            try:
                payout_batch_request(actor=request.user, actor_label=f"admin:{request.user.get_username()}")
            except DomainError as exc:  # the payouts kill switch: nothing requested, say why
                messages.error(request, f"No payout batch requested: {exc.detail}")
            else:
                messages.success(request, "Payout batch requested; it runs as soon as a worker takes it.")
        return HttpResponseRedirect(reverse("admin:payouts_payoutbatch_changelist"))


@admin.register(Payout)
class PayoutAdmin(SearchById, RowActions, ShownInPlace, ReadOnlyAdmin):
    list_display = (
        "created_at",
        "id",
        "tenant",
        "owner",
        "amount_money",
        "provider",
        "status",
        "short_last_error",
        "provider_payout_id",
        "attempts",
        "batch",
    )
    list_filter = ("status", "provider", "currency")
    search_fields = ("=provider_payout_id", "destination")
    ordering = ("-created_at",)
    list_select_related = ("tenant", "owner", "batch")
    show_full_result_count = False
    actions = ["mark_paid", "mark_failed"]
    row_actions = {
        "mark_paid": "Checked with the provider: paid",
        "mark_failed": "Checked with the provider: not paid (credit the wallet back)",
    }
    shown_in_place_of = {"amount_minor": "amount_money"}

    amount_money = money_display("amount_minor", description="amount")
    short_last_error = short_text("last_error", description="last error")

    def row_action_offered(self, obj: Payout, action: str) -> bool:
        # What `payout_resolve` settles: paid from review or submitted; not paid from review only
        # (a submitted payout is still with the provider, and settles when it reports failure).
        if action == "mark_paid":
            return obj.status in (Payout.Status.NEEDS_REVIEW, Payout.Status.SUBMITTED)
        return obj.status == Payout.Status.NEEDS_REVIEW

    @admin.action(description="Checked with the provider: paid", permissions=["superuser"])
    def mark_paid(self, request: HttpRequest, queryset: QuerySet[Payout]) -> TemplateResponse | None:
        return self._resolve(request, queryset, paid=True)

    @admin.action(description="Checked with the provider: not paid (credit the wallet back)", permissions=["superuser"])
    def mark_failed(self, request: HttpRequest, queryset: QuerySet[Payout]) -> TemplateResponse | None:
        return self._resolve(request, queryset, paid=False)

    def _resolve(self, request: HttpRequest, queryset: QuerySet[Payout], *, paid: bool) -> TemplateResponse | None:
        """First a page listing the payouts (amount, studio, photographer) and asking what the
        provider showed; its answer settles each (`payout_resolve`, whose `payout.resolve` audit
        row keeps the note and the operator), each in its own transaction, so one that cannot be
        settled is reported and leaves the others settled."""
        answer = ask_for_note(
            self,
            request,
            queryset.select_related("tenant", "owner"),
            action="mark_paid" if paid else "mark_failed",
            form_class=PayoutCheckedForm,
            template=f"admin/payouts/payout/checked_{'paid' if paid else 'not_paid'}.html",
            title=f"Payouts checked with the provider: {'paid' if paid else 'not paid (credit the wallet back)'}",
            columns=("Payout", "Studio", "Photographer", "Amount", "Provider", "Status", "Last error"),
            cells=lambda payout: (
                str(payout.pk),
                str(payout.tenant),
                f"{payout.owner.get_username()} ({payout.owner.email})" if payout.owner.email else str(payout.owner),
                money_text(payout.amount_minor, payout.currency),
                payout.get_provider_display(),
                payout.get_status_display(),
                Truncator(payout.last_error).chars(300),
            ),
            submit="Mark paid" if paid else "Mark not paid and credit the wallet back",
        )
        if isinstance(answer, TemplateResponse):
            return answer
        user = request.user if request.user.is_authenticated else None
        label = f"admin:{request.user.get_username()}"
        settled, skipped = 0, []
        for payout_id in queryset.order_by("pk").values_list("pk", flat=True):
            try:
                with transaction.atomic():
                    payout_resolve(
                        payout_id=payout_id,
                        paid=paid,
                        actor=user,  # type: ignore[arg-type]
                        actor_label=label,
                        note=answer,
                    )
            except ValueError:
                skipped.append(str(payout_id))
            else:
                settled += 1
        payouts = ngettext("%(count)d payout", "%(count)d payouts", settled) % {"count": settled}
        messages.success(request, f"{payouts} marked {'paid' if paid else 'failed and credited back'}.")
        if skipped:
            why = (
                "not needing review or submitted"
                if paid
                else "not needing review; a submitted one settles when the provider reports it"
            )
            messages.warning(request, f"Left alone ({why}): {', '.join(skipped)}")
        return None


class PayoutCheckedForm(forms.Form):
    note = note_field(
        label="What did the provider show?",
        help_text='E.g. "PayPal shows item 5TY2 returned on 3 May". Kept in the audit log with your name.',
        max_length=PAYOUT_CHECK_NOTE_MAX_CHARS,
    )


class PayoutDestinationForm(forms.ModelForm):
    class Meta:
        model = PayoutDestination
        fields = ("tenant", "owner", "provider", "destination")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        tenant, owner = data.get("tenant"), data.get("owner")
        if tenant and owner and not Membership.objects.filter(tenant=tenant, user=owner).exists():
            raise ValidationError({"owner": "This user is not a member of the studio."})
        provider, destination = data.get("provider"), data.get("destination")
        if provider and destination:
            try:
                data["destination"] = payout_destination_normalize(provider=provider, destination=destination)
            except PayoutDestinationError as exc:
                raise ValidationError({"destination": str(exc)}) from exc
        return data

    def validate_unique(self) -> None:
        """The service updates an existing destination instead of refusing a second one."""


@admin.register(PayoutDestination)
class PayoutDestinationAdmin(admin.ModelAdmin):
    form = PayoutDestinationForm
    list_display = ("tenant", "owner", "provider", "destination", "updated_at")
    list_filter = ("provider",)
    search_fields = ("destination", "owner__username", "owner__email")
    list_select_related = ("tenant", "owner")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Platform superusers only: staff who are also a studio's members act for that studio here,
        # and a destination decides who is paid.
        return is_platform_superuser(request) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_platform_superuser(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # payouts name their destination; change it instead

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("tenant", "owner") if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: PayoutDestination, form: Any, change: bool) -> None:
        saved = payout_destination_set(
            tenant=obj.tenant,
            owner=obj.owner,
            provider=obj.provider,
            destination=obj.destination,
            actor=request.user if request.user.is_authenticated else None,  # type: ignore[arg-type]
            actor_label=f"admin:{request.user.get_username()}",
        )
        obj.pk = saved.pk
