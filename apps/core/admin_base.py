"""Admin base classes shared by the apps."""

from typing import Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest


def is_platform_superuser(request: HttpRequest) -> bool:
    """The admin is the platform superusers' (README, "Django admin"): only they act through it.
    Staff without the flag may hold view (or change) permissions, to look."""
    user = request.user
    return bool(user.is_active and user.is_superuser)


class SuperuserActions:
    """Actions declared `@admin.action(permissions=["superuser"])` are offered to, and run for,
    platform superusers only (Django drops them from a request whose user lacks the permission,
    so a forged post of one is refused as "no action selected")."""

    def has_superuser_permission(self, request: HttpRequest) -> bool:
        return is_platform_superuser(request)


class ReadOnlyAdmin(SuperuserActions, admin.ModelAdmin):
    """Browse only: rows are written by services (or are append-only), never from the admin."""

    # URLs shown are https (Django 6's default; saying so keeps 5.2 from warning on each form).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
