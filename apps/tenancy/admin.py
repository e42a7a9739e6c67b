"""Admin for platform superusers (runs in the audited system context, see middleware)."""

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.http import HttpRequest

from apps.core.admin_base import ReadOnlyAdmin
from apps.tenancy.models import ApiKey, AuditLog, Membership, Organization, User
from apps.tenancy.services import api_key_forget


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


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "tenant", "prefix", "created_at", "revoked_at")
    readonly_fields = ("prefix", "key_hash", "created_at")

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        api_key_forget(key_hash=obj.key_hash)


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "tenant", "actor_label", "action", "target_type", "target_id", "request_id")
    list_filter = ("action",)
    search_fields = ("request_id", "target_id", "actor_label")
