"""The webhook event ledger in the Django admin (platform superusers, system context).

Events are read-only; the one action is an audited replay that re-runs processing through the
outbox (see `webhook_events_replay`), safe for processed events too.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.admin_base import ReadOnlyAdmin
from apps.payments.models import WebhookEvent
from apps.payments.services import webhook_events_replay


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = (
        "received_at",
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
    ordering = ("-received_at",)
    list_select_related = ("tenant",)
    show_full_result_count = False
    actions = ["replay"]
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
    ]

    @admin.display(description="error")
    def short_error(self, obj: WebhookEvent) -> str:
        return obj.error[:120]

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
        self.message_user(request, f"Queued {len(replayed)} event(s) for processing.", messages.SUCCESS)
