"""The signed-in person's own pending invitations: accept (become a member with the offered role)
or decline. Open to anyone signed in, members of no studio included (they are who gets invited).

An invitation is found by (studio in the URL, signed-in user): nobody but the invited person can
see or answer it, and anyone else gets a 404. Each answer is one form through `submit_once`,
scoped to the invitation's studio and the person (`user:<pk>`), so a resubmitted answer lands
where the first did and is applied once. Nothing is sent by e-mail. An acceptance lands on the
studio's overview with that studio chosen to work in (they just said they want to work there),
whether it is their only studio or one of several.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from apps.core.problems import DomainError
from apps.tenancy.middleware import SESSION_TENANT_KEY
from apps.tenancy.models import Membership, Organization, User
from apps.tenancy.selectors import invitations_of_user, memberships_of_user
from apps.tenancy.services import membership_invitation_accept, membership_invitation_decline
from apps.web.studio.access import problem_page
from apps.web.studio.forms import InvitationAnswerForm
from apps.web.submit_once import submit_once

NOT_FOUND = "You have no pending invitation to this studio (it may have been answered or withdrawn)."


def _render_list(request: HttpRequest, user: User, *, status: int = 200) -> HttpResponse:
    context = {
        "studio": None,
        "invitations": invitations_of_user(user=user),
        "form": InvitationAnswerForm(),
        # Someone in no studio yet has no studio page to go back to (it leads here).
        "has_studio": bool(memberships_of_user(user=user)),
    }
    return render(request, "studio/invitations.html", context, status=status)


@never_cache
@require_GET
def invitations(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path(), login_url=reverse("studio:login"))
    assert isinstance(user, User)
    return _render_list(request, user)


def _answer(request: HttpRequest, tenant_id: int, *, accept: bool) -> HttpResponse:
    """Run one answer once (`submit_once`, scoped to the studio in the URL and the person). An
    answer the person has no invitation for (an unknown studio included) is refused
    (InvitationNotFound, 404) and stores nothing: the effect rolls back with its form key."""
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(reverse("studio:invitations"), login_url=reverse("studio:login"))
    assert isinstance(user, User)
    form = InvitationAnswerForm(request.POST)
    # The role the page showed; an acceptance without it grants nothing (InvitationChanged).
    shown_role = form.cleaned_data["role"] if form.is_valid() else ""

    def effect() -> str:
        if accept:
            membership = membership_invitation_accept(tenant_id=tenant_id, user=user, role=shown_role)
            studio = Organization.objects.get(pk=tenant_id)
            role = Membership.Role(membership.role).label.lower()
            messages.success(request, f"You are now a member of {studio.name}, as {role}.")
            return reverse("studio:overview")
        membership_invitation_decline(tenant_id=tenant_id, user=user)
        messages.success(request, "Invitation declined; nothing changed for you.")
        return reverse("studio:invitations")

    try:
        response = submit_once(request, tenant_id=tenant_id, caller=f"user:{user.pk}", effect=effect)
    except DomainError as exc:
        message = NOT_FOUND if exc.status_code == 404 else exc.detail
        title = "Invitation not found" if exc.status_code == 404 else exc.title
        return problem_page(
            request,
            None,
            status=exc.status_code,
            title=title,
            message=message,
            back=(reverse("studio:invitations"), "Your invitations"),
        )
    if accept:
        # Accepted, now or by the submission this one repeats: work in that studio. (Should the
        # membership be gone by then, the session's choice is ignored as any stale one is.)
        request.session[SESSION_TENANT_KEY] = tenant_id
    return response


@never_cache
@require_POST
def invitation_accept(request: HttpRequest, tenant_id: int) -> HttpResponse:
    return _answer(request, tenant_id, accept=True)


@never_cache
@require_POST
def invitation_decline(request: HttpRequest, tenant_id: int) -> HttpResponse:
    return _answer(request, tenant_id, accept=False)
