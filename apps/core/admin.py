"""Read-only view of the fencing leases (platform rows; written only by `apps.core.locks`)."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.core.models import Lease


@admin.register(Lease)
class LeaseAdmin(admin.ModelAdmin):
    list_display = ("name", "epoch", "state", "holder", "acquired_at", "expires_at", "released_at")
    search_fields = ("name", "holder")
    ordering = ("name",)

    @admin.display(description="state")
    def state(self, obj: Lease) -> str:
        return obj.state

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
