"""Tenant context for server-rendered pages (session auth).

A signed-in user acts for the tenant stored in their session if they are still a member of it,
else for their only membership; someone in several studios who has not chosen one (or whose
choice is no longer theirs) acts for none until they choose (the studio's picker), so a studio
they did not pick never receives their uploads or writes. Pending invitations are not
memberships and count for nothing here. Platform superusers in the Django admin act in the audited
system context. Everyone else acts for nobody: RLS shows them no tenant rows at all.
The API does its own resolution after DRF authentication (see `apps.tenancy.apis.TenantApi`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from django.http import HttpRequest, HttpResponse

from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.selectors import memberships_of_user

SESSION_TENANT_KEY = "darkroom_tenant_id"


def session_tenant(request: HttpRequest) -> tuple[int | None, str | None]:
    """(tenant id, role) for a session user, or (None, None)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None, None
    memberships = memberships_of_user(user=user)
    if not memberships:
        return None, None
    wanted = request.session.get(SESSION_TENANT_KEY)
    chosen = next((m for m in memberships if m.tenant_id == wanted), None)
    if chosen is None:
        if len(memberships) > 1:
            return None, None
        chosen = memberships[0]
    return chosen.tenant_id, chosen.role


class TenantContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.tenant_id, request.tenant_role = session_tenant(request)  # type: ignore[attr-defined]
        scope: AbstractContextManager[None]
        if request.path.startswith("/admin/") and getattr(request.user, "is_superuser", False):
            scope = system_context("django admin")
        else:
            scope = tenant_context(request.tenant_id)  # type: ignore[attr-defined]
        with scope:
            return self.get_response(request)
