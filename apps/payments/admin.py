"""The webhook event ledger in the Django admin (platform superusers, system context).

Events are read-only; two audited actions: a replay that re-runs processing through the outbox
(see `webhook_events_replay`), safe for processed events too, never for resolved ones, also a
button on an event's own page; and the resolution of failed events an operator dealt with
outside Darkroom (`webhook_events_resolve`), which asks what was done first. The list shows each
event's own id (what `webhooks_resolve` and `webhooks_replay` take), which its search finds too,
as it finds an order's events by the order's id, whole or short ("order 09e10db3").
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.text import Truncator

from apps.core.admin import RowActions, SearchById, ask_for_note, note_field, short_text
from apps.core.admin_base import ReadOnlyAdmin
from apps.payments.models import WebhookEvent
from apps.payments.resolution import RESOLUTION_NOTE_MAX_CHARS, WebhookResolutionRefused, webhook_events_resolve
from apps.payments.services import webhook_events_replay


@admin.register(WebhookEvent)
class WebhookEventAdmin(SearchById, RowActions, ReadOnlyAdmin):
    list_display = (
        "received_at",
        "id",
        "provider",
        "event_type",
        "event_id",
        "status",
        "attempts",
        "outcome",
        "short_error",
        "tenant",
        "checkout_id",
        "payout_id",
    )
    list_filter = ("status", "provider", "event_type", "payout_outcome")
    search_fields = ("=event_id", "=reference", "event_type")
    # its own id, and its order's (checkout's) id, whole or short as the shop shows it: `SearchById`
    searched_ids = ("pk", "checkout_id")
    searched_by_start = ("checkout_id",)
    ordering = ("-received_at",)
    list_select_related = ("tenant",)
    show_full_result_count = False
    actions = ["replay", "resolve"]
    row_actions = {"replay": "Replay this event"}
    short_error = short_text("error", description="error")
    exclude = ("raw_body",)
    readonly_fields = [
        "id",
        "tenant",
        "provider",
        "event_id",
        "event_type",
        "payment_status",
        "reference",
        "checkout_id",
        "payout_id",
        "payout_outcome",
        "body",
        "headers",
        "received_at",
        "status",
        "attempts",
        "outcome",
        "processed_at",
        "error",
        "traceback",
        "resolved_at",
        "resolved_by",
        "resolution_note",
    ]

    def row_action_offered(self, obj: WebhookEvent, action: str) -> bool:
        # What `webhook_events_replay` replays: anything but an event an operator resolved.
        return obj.status != WebhookEvent.Status.RESOLVED

    @admin.display(description="raw body")
    def body(self, obj: WebhookEvent) -> str:
        return bytes(obj.raw_body).decode("utf-8", errors="replace")

    @admin.action(description="Replay selected events (re-run processing; audited)", permissions=["superuser"])
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        selected = list(queryset.values_list("pk", flat=True))
        user = request.user if request.user.is_authenticated else None
        replayed = webhook_events_replay(
            ids=selected,
            actor=user,  # type: ignore[arg-type]
            actor_label=f"admin:{request.user.get_username()}" if user else "admin",
        )
        text = f"Queued {len(replayed)} event(s) for processing."
        if len(replayed) < len(selected):
            text = f"{text[:-1]}; {len(selected) - len(replayed)} skipped (resolved by an operator)."
        self.message_user(request, text, messages.SUCCESS)

    @admin.action(description="Mark the selected failed events resolved (audited)", permissions=["superuser"])
    def resolve(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> TemplateResponse | None:
        """First a page naming the events and asking what was done about them; its answer
        resolves the failed ones among them (`webhook_events_resolve`, one transaction, the
        events locked); the others are skipped and counted."""
        answer = ask_for_note(
            self,
            request,
            queryset,
            action="resolve",
            form_class=ResolveForm,
            template="admin/payments/webhookevent/resolve.html",
            title="Mark failed webhook events resolved",
            columns=("Id", "Event", "Provider", "Type", "Status", "Error"),
            cells=lambda event: (
                str(event.pk),
                event.event_id,
                event.provider,
                event.event_type,
                event.get_status_display(),
                Truncator(event.error).chars(300),
            ),
            submit="Mark resolved",
        )
        if isinstance(answer, TemplateResponse):
            return answer
        user = request.user if request.user.is_authenticated else None
        try:
            result = webhook_events_resolve(
                ids=queryset.values_list("pk", flat=True),
                note=answer,
                actor=user,  # type: ignore[arg-type]
                actor_label=f"admin:{request.user.get_username()}" if user else "admin",
            )
        except WebhookResolutionRefused as refusal:
            messages.error(request, refusal.detail)
            return None
        self.message_user(
            request,
            f"Resolved {len(result.resolved)} failed event(s); {len(result.skipped)} skipped (not failed).",
            messages.SUCCESS,
        )
        return None


class ResolveForm(forms.Form):
    note = note_field(
        label="What was done about them?",
        help_text='E.g. "refunded ch_123 in Stripe\'s dashboard". Kept with each event and in the audit log.',
        max_length=RESOLUTION_NOTE_MAX_CHARS,
    )
