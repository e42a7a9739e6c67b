"""Read-only list of stored idempotency keys (platform superusers, audited system context)."""

from django.contrib import admin

from apps.core.admin_base import ReadOnlyAdmin
from apps.idempotency.models import IdempotencyKey


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdmin):
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
