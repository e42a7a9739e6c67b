"""Kill switches in the Django admin: their state, and release actions (engaging needs a reason:
`manage.py kill_switch engage <capability> --reason ...`). Changes go through the audited services."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.admin_base import ReadOnlyAdmin
from apps.core.problems import DomainError
from apps.ops.killswitch import kill_switch_release
from apps.ops.models import KillSwitch


@admin.register(KillSwitch)
class KillSwitchAdmin(ReadOnlyAdmin):
    list_display = ("capability", "engaged", "reason", "changed_by", "changed_at", "cooldown_until")
    actions = ["release", "release_now"]

    def _release(self, request: HttpRequest, queryset: QuerySet[KillSwitch], *, force: bool) -> None:
        for switch in queryset.filter(engaged=True):
            try:
                kill_switch_release(capability=switch.capability, actor_label=f"admin:{request.user}", force=force)
            except DomainError as exc:
                self.message_user(request, exc.detail, messages.ERROR)
            else:
                self.message_user(request, f"{switch.capability} released.", messages.SUCCESS)

    @admin.action(description="Release (after the cooldown)", permissions=["superuser"])
    def release(self, request: HttpRequest, queryset: QuerySet[KillSwitch]) -> None:
        self._release(request, queryset, force=False)

    @admin.action(description="Release now (ignore the cooldown)", permissions=["superuser"])
    def release_now(self, request: HttpRequest, queryset: QuerySet[KillSwitch]) -> None:
        self._release(request, queryset, force=True)
