"""Admin for platform superusers (runs in the audited system context, see middleware).

Memberships decide who may see a studio's sales and wallet and who is paid: they are added
(or their role set) through `membership_add` and removed with an audit row, never edited in
place. API keys are issued by studios; here they can only be revoked, through the audited
`api_key_revoke` (a revoked key never comes back).
"""

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.admin_base import ReadOnlyAdmin
from apps.tenancy.models import ApiKey, AuditLog, Membership, Organization, User
from apps.tenancy.services import api_key_revoke, audit_record, membership_add


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")


@admin.register(User)
class DarkroomUserAdmin(UserAdmin):
    pass


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "tenant", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__username", "user__email", "tenant__slug")
    raw_id_fields = ("user", "tenant")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # add the membership again with the new role: `membership_add` sets it, audited

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        saved = membership_add(tenant=obj.tenant, user=obj.user, role=obj.role)
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        self._audit_removal(request, obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        for membership in queryset:
            self._audit_removal(request, membership)
        super().delete_queryset(request, queryset)

    @staticmethod
    def _audit_removal(request: HttpRequest, membership: Membership) -> None:
        audit_record(
            action="membership.remove",
            tenant_id=membership.tenant_id,
            actor_user=request.user,  # type: ignore[arg-type]
            actor_label=f"admin:{request.user.get_username()}",
            target_type="user",
            target_id=str(membership.user_id),
            data={"role": membership.role},
        )


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = ("name", "tenant", "prefix", "created_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("=prefix", "name", "tenant__slug")
    actions = ("revoke",)

    @admin.action(description="Revoke the selected API keys (audited; they stop working at once)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        keys = list(queryset.select_related("tenant"))
        for key in keys:
            api_key_revoke(tenant=key.tenant, api_key_id=key.pk, actor=request.user)  # type: ignore[arg-type]
        messages.success(request, f"Revoked {len(keys)} key(s).")


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "tenant", "actor_label", "action", "target_type", "target_id", "request_id")
    list_filter = ("action",)
    search_fields = ("request_id", "target_id", "actor_label")
