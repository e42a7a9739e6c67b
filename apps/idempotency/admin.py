"""Read-only list of stored idempotency keys (platform superusers, audited system context)."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.idempotency.models import IdempotencyKey


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin):
    """Response bodies are not shown: they may carry secrets shown once to the caller."""

    list_display = ("created_at", "tenant", "caller", "key", "method", "path", "response_status", "request_id")
    list_filter = ("method", "response_status")
    search_fields = ("key", "request_id")
    list_select_related = ("tenant",)
    ordering = ("-created_at",)
    show_full_result_count = False
    fields = (
        "created_at",
        "tenant",
        "caller",
        "key",
        "fingerprint",
        "method",
        "path",
        "response_status",
        "response_content_type",
        "request_id",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
