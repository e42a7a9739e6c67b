"""API permissions: a caller must act for a tenant; some operations need a role."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from apps.tenancy.authentication import ApiKeyPrincipal
from apps.tenancy.models import User
from apps.tenancy.selectors import memberships_of_user


def request_tenant(request: Request) -> tuple[int | None, str | None]:
    """(tenant id, role) of the caller, from the credential only.

    API keys act with the `owner` role's reach for integration endpoints they are given.
    """
    user = request.user
    if isinstance(user, ApiKeyPrincipal):
        return user.api_key.tenant_id, "api_key"
    return getattr(request._request, "tenant_id", None), getattr(request._request, "tenant_role", None)


PICK_A_STUDIO = (
    "You are a member of several studios and have not picked the one to act for: pick it at /studio/choose/, "
    "then try again."
)


class IsTenantMember(BasePermission):
    message = "This endpoint needs an API key or a signed-in member of a studio."

    def has_permission(self, request: Request, view: Any) -> bool:
        tenant_id, _ = request_tenant(request)
        allowed = bool(request.user and request.user.is_authenticated and tenant_id is not None)
        if not allowed and request.user and request.user.is_authenticated:
            # Refused for a person of several studios who has not chosen one: say so (one query, on refusal only).
            if isinstance(request.user, User) and len(memberships_of_user(user=request.user)) > 1:
                self.message = PICK_A_STUDIO
        return allowed


class HasTenantRole(IsTenantMember):
    """Use as `HasTenantRole.of("owner", "api_key")`."""

    roles: frozenset[str] = frozenset()
    message = "Your role in this studio does not allow this operation."

    @classmethod
    def of(cls, *roles: str) -> type[HasTenantRole]:
        return type("HasTenantRole_" + "_".join(roles), (cls,), {"roles": frozenset(roles)})

    def has_permission(self, request: Request, view: Any) -> bool:
        if not super().has_permission(request, view):
            return False
        _, role = request_tenant(request)
        return role in self.roles
