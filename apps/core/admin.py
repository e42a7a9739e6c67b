"""Read-only view of the fencing leases (platform rows; written only by `apps.core.locks`)."""

from django.contrib import admin

from apps.core.admin_base import ReadOnlyAdmin
from apps.core.models import Lease


@admin.register(Lease)
class LeaseAdmin(ReadOnlyAdmin):
    list_display = ("name", "epoch", "state", "holder", "acquired_at", "expires_at", "released_at")
    search_fields = ("name", "holder")
    ordering = ("name",)

    @admin.display(description="state")
    def state(self, obj: Lease) -> str:
        return obj.state
