"""Who may open a studio page: a signed-in member of the studio chosen in the session, with a role
the page allows.

The roles mirror the API's permission classes (apps/*/apis.py): any member reads the catalog;
owners write it; owners and photographers upload; owners and staff see sales and manage
announcements; payout destinations, the studio's payouts, its API keys and its members are the
owner's; every member sees their own wallet. The chosen studio lives in the session under the key
the tenancy middleware reads (`SESSION_TENANT_KEY`), so the middleware and these pages always
agree on the tenant.

The session (so the chosen studio) is shared by every tab of the browser, so each studio form also
names the studio its page showed (`FOR_STUDIO_FIELD`): a form sent after its sender switched to
another studio in another tab is refused (`studio_page`), never applied to the studio chosen since.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, Concatenate, ParamSpec
from urllib.parse import urlsplit

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.http import url_has_allowed_host_and_scheme, urlencode

from apps.tenancy.context import tenant_context
from apps.tenancy.middleware import SESSION_TENANT_KEY
from apps.tenancy.models import Membership, Organization, User
from apps.tenancy.selectors import invitations_of_user, memberships_of_user

OWNER = Membership.Role.OWNER.value
PHOTOGRAPHER = Membership.Role.PHOTOGRAPHER.value
STAFF = Membership.Role.STAFF.value

CATALOG_WRITE_ROLES = (OWNER,)
UPLOAD_ROLES = (OWNER, PHOTOGRAPHER)
SALES_ROLES = (OWNER, STAFF)
ANNOUNCE_ROLES = (OWNER, STAFF)
PAYOUT_MANAGE_ROLES = (OWNER,)
API_KEY_MANAGE_ROLES = (OWNER,)
MEMBER_MANAGE_ROLES = (OWNER,)
REFUND_ROLES = (OWNER,)
STUDIO_SETTINGS_ROLES = (OWNER,)

# The hidden field of every studio form naming the studio its page was rendered for.
FOR_STUDIO_FIELD = "for_studio"

P = ParamSpec("P")


@dataclass(frozen=True)
class Studio:
    """The studio a page acts for, and who is acting."""

    tenant_id: int
    org: Organization
    role: str
    user: User
    memberships: tuple[Membership, ...]

    def can(self, roles: tuple[str, ...]) -> bool:
        return self.role in roles

    @property
    def can_write_catalog(self) -> bool:
        return self.can(CATALOG_WRITE_ROLES)

    @property
    def can_upload(self) -> bool:
        return self.can(UPLOAD_ROLES)

    @property
    def can_see_sales(self) -> bool:
        return self.can(SALES_ROLES)

    @property
    def can_announce(self) -> bool:
        return self.can(ANNOUNCE_ROLES)

    @property
    def can_manage_payouts(self) -> bool:
        return self.can(PAYOUT_MANAGE_ROLES)

    @property
    def can_manage_api_keys(self) -> bool:
        return self.can(API_KEY_MANAGE_ROLES)

    @property
    def can_manage_members(self) -> bool:
        return self.can(MEMBER_MANAGE_ROLES)

    @property
    def can_change_settings(self) -> bool:
        return self.can(STUDIO_SETTINGS_ROLES)

    @property
    def can_refund(self) -> bool:
        return self.can(REFUND_ROLES)

    @property
    def caller(self) -> str:
        """The key space of this user's form submissions (`submit_once`)."""
        return f"user:{self.user.pk}"


def problem_page(
    request: HttpRequest,
    studio: Studio | None,
    *,
    status: int,
    title: str,
    message: str,
    back: tuple[str, str] | None = None,
) -> HttpResponse:
    """A page explaining why the request was refused, with its status, and a link (`back`: url,
    text) to the page to try again from, when given. A page not found for someone in several
    studios links to the studio picker, back to this address: it may be another of theirs (rows
    of other studios are hidden, never looked up)."""
    if back is None and status == 404 and studio is not None and len(studio.memberships) > 1:
        back = (choose_url(_return_path(request)), "Is it in another of your studios? Switch studio")
    context = {"studio": studio, "title": title, "message": message, "back": back}
    return render(request, "studio/problem.html", context, status=status)


def forbidden(request: HttpRequest, studio: Studio | None, message: str) -> HttpResponse:
    return problem_page(request, studio, status=403, title="Not allowed", message=message)


def choose_url(next_url: str) -> str:
    return f"{reverse('studio:choose')}?{urlencode({'next': next_url})}"


def _return_path(request: HttpRequest) -> str:
    """Where to come back to after signing in or picking a studio: the page asked for, or for a
    form (a POST, whose address answers GET with 405) the studio page it was sent from (its
    Referer), else the overview."""
    if request.method in ("GET", "HEAD"):
        return request.get_full_path()
    referer = request.META.get("HTTP_REFERER", "")
    if url_has_allowed_host_and_scheme(referer, allowed_hosts={request.get_host()}):
        parts = urlsplit(referer)
        if parts.path.startswith(reverse("studio:overview")):
            return f"{parts.path}?{parts.query}" if parts.query else parts.path
    return reverse("studio:overview")


def _form_of_another_studio(request: HttpRequest, studio: Studio) -> HttpResponse | None:
    """A 409 page for a form its page rendered for another studio than the one chosen now (its
    sender switched studio in another tab since), None otherwise. A post that names no studio
    (not sent from a studio page's form) acts for the chosen studio; one whose studio field names
    no studio at all (blank, not a studio id: no page renders it so) is refused as altered (400)."""
    if request.method != "POST":
        return None
    shown = request.POST.get(FOR_STUDIO_FIELD)
    if shown is None or shown == str(studio.tenant_id):
        return None
    if not (shown.isascii() and shown.isdigit()):
        message = (
            "This form arrived incomplete or altered: it does not say which studio it is for. "
            "Nothing was changed; send it again from its page."
        )
        return problem_page(request, studio, status=400, title="Form not recognised", message=message)
    other = next((m.tenant for m in studio.memberships if str(m.tenant_id) == shown), None)
    if other is None:
        message = (
            f"This form was for a studio you no longer work in; you are working in {studio.org.name} now. "
            "Nothing was changed."
        )
        return problem_page(request, studio, status=409, title="Form of another studio", message=message)
    message = (
        f"This form was for {other.name}, but you switched to {studio.org.name} since (in another tab or "
        f"window). Nothing was changed: switch back to {other.name} and send it again from its page."
    )
    return problem_page(
        request,
        studio,
        status=409,
        title="Form of another studio",
        message=message,
        back=(choose_url(_return_path(request)), f"Switch to {other.name}"),
    )


def studio_page(
    *roles: str,
    post_roles: tuple[str, ...] = (),
) -> Callable[[Callable[Concatenate[HttpRequest, Studio, P], HttpResponseBase]], Callable[..., HttpResponseBase]]:
    """Decorate a view `(request, studio, ...)`: signed in (else to the login page), a member of a
    studio (else to their invitations page if they have pending ones, else 403), a studio chosen
    when there are several (else to the picker), one of `roles` when given and, for a POST, one of
    `post_roles` when given (a page every member opens whose form only some may send; else 403),
    and a form sent for that studio (else 409, see `_form_of_another_studio`). The view runs in
    the chosen studio's tenant context."""

    def decorate(
        view: Callable[Concatenate[HttpRequest, Studio, P], HttpResponseBase],
    ) -> Callable[..., HttpResponseBase]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            # Balances, buyers' e-mails, payout destinations: no cache (shared or the browser's,
            # after signing out) may keep a copy.
            response = checked(request, *args, **kwargs)
            add_never_cache_headers(response)
            return response

        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            user = request.user
            if not user.is_authenticated:
                return redirect_to_login(_return_path(request), login_url=reverse("studio:login"))
            assert isinstance(user, User)
            memberships = tuple(memberships_of_user(user=user))
            if not memberships:
                if invitations_of_user(user=user):
                    # Invited somewhere, a member nowhere yet: their answer comes first.
                    return HttpResponseRedirect(reverse("studio:invitations"))
                return forbidden(
                    request,
                    None,
                    "Your account is not a member of any studio. Ask a studio owner to add you, "
                    "or sign in with another account.",
                )
            wanted = request.session.get(SESSION_TENANT_KEY)
            chosen = next((m for m in memberships if m.tenant_id == wanted), None)
            if chosen is None:
                if len(memberships) > 1:
                    return HttpResponseRedirect(choose_url(_return_path(request)))
                chosen = memberships[0]
            studio = Studio(
                tenant_id=chosen.tenant_id, org=chosen.tenant, role=chosen.role, user=user, memberships=memberships
            )
            if roles and chosen.role not in roles:
                allowed = " or ".join(roles)
                return forbidden(
                    request, studio, f"This page is for the studio's {allowed} role; you are {chosen.role} here."
                )
            if post_roles and request.method == "POST" and chosen.role not in post_roles:
                allowed = " or ".join(post_roles)
                return forbidden(
                    request, studio, f"This form is for the studio's {allowed} role; you are {chosen.role} here."
                )
            # After the role check: a refused role is answered without reading (spooling) the body.
            if stale := _form_of_another_studio(request, studio):
                return stale
            with tenant_context(chosen.tenant_id):
                return view(request, studio, *args, **kwargs)

        return wrapped

    return decorate
