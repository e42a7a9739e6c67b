"""Outbox messages and dead letters in the Django admin (platform superusers, system context).

Messages are read-only; the only change is the audited "replay" action, which moves selected
dead letters back to pending (see `outbox_replay`), also a button on a dead letter's own page.
The list shows each message's `last_error` (cut short; all of it on its page) and its search
finds a message by its id.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.admin import RowActions, SearchById, short_text
from apps.core.admin_base import ReadOnlyAdmin
from apps.outbox.models import OutboxMessage
from apps.outbox.services import outbox_replay


class DeadLetterFilter(admin.SimpleListFilter):
    title = "dead letters"
    parameter_name = "dead"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Dead letters only")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> QuerySet[OutboxMessage]:
        if self.value() == "yes":
            return queryset.filter(status=OutboxMessage.Status.DEAD)
        return queryset


@admin.register(OutboxMessage)
class OutboxMessageAdmin(SearchById, RowActions, ReadOnlyAdmin):
    list_display = (
        "id",
        "topic",
        "tenant",
        "status",
        "attempts",
        "short_last_error",
        "created_at",
        "next_attempt_at",
        "published_at",
    )
    list_filter = (DeadLetterFilter, "status", "topic")
    search_fields = ("=aggregate_id", "topic")
    ordering = ("-created_at",)
    list_select_related = ("tenant",)
    show_full_result_count = False
    actions = ["replay_dead_letters"]
    row_actions = {"replay_dead_letters": "Replay this dead letter"}
    short_last_error = short_text("last_error", description="last error")
    readonly_fields = [
        "id",
        "tenant",
        "topic",
        "aggregate_type",
        "aggregate_id",
        "payload",
        "headers",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
        "published_at",
        "last_error",
    ]

    def row_action_offered(self, obj: OutboxMessage, action: str) -> bool:
        # What `replay_dead_letters` replays.
        return obj.status == OutboxMessage.Status.DEAD

    @admin.action(description="Replay selected dead letters (audited)", permissions=["superuser"])
    def replay_dead_letters(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        selected = list(queryset.values_list("id", flat=True))
        replayed = outbox_replay(
            message_ids=selected,
            actor=request.user if request.user.is_authenticated else None,  # type: ignore[arg-type]
        )
        skipped = len(selected) - len(replayed)
        self.message_user(request, f"Replayed {len(replayed)} dead letter(s).", messages.SUCCESS)
        if skipped > 0:
            self.message_user(request, f"{skipped} selected message(s) were not dead letters.", messages.WARNING)
