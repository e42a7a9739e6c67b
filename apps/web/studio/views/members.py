"""Members (owners only): the studio's people, adding one by e-mail, changing a role, removing one;
the invitations, pending or expired (each says until when it is or was valid), withdrawing one,
and sending one again ("Send again": it is valid for STUDIO_INVITATION_TTL_DAYS from then on).

Adding an address that already has an account (and is not a member) grants nothing: it leaves a
pending invitation that person accepts or declines after signing in (`views/invitations.py`), and
the page names them only by the address the owner typed (never the account's name, its own
spelling of the address, nor an address it changed to since, which is not the studio's to see).
"Send again" renews the invitation of the same account, e-mailed to its current address, never of
whoever has the address typed now.

Every form goes through `submit` (`submit_once`): a resubmitted form has one effect. The services
refuse to leave the studio without an owner (`LastOwnerRequired`, 409), re-checked under the
owners' row locks, so the page shows the refusal in the form and nothing is written.

The invitation e-mail is sent after `submit` returned the effect's redirect, i.e. after the
membership committed and outside any transaction, and only when this request ran the effect (a
replayed form sends nothing). A failed send leaves the membership in place and says so; adding
the person again sends the e-mail again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods, require_POST

from apps.tenancy import selectors
from apps.tenancy.invitations import invitation_send
from apps.tenancy.models import Membership, MembershipInvitation, User
from apps.tenancy.services import (
    MemberInvited,
    member_invite,
    member_remove,
    member_role_set,
    membership_invitation_renew,
    membership_invitation_withdraw,
)
from apps.web.studio.access import MEMBER_MANAGE_ROLES, OWNER, Studio, problem_page, studio_page
from apps.web.studio.forms import (
    InvitationRenewForm,
    InvitationWithdrawForm,
    MemberInviteForm,
    MemberRemoveForm,
    MemberRoleForm,
)
from apps.web.studio.views.common import page_of, submit

logger = logging.getLogger("darkroom.web.studio.members")


@dataclass(frozen=True)
class MemberRow:
    membership: Membership
    role_form: MemberRoleForm
    is_you: bool


def member_name(user: User) -> str:
    return user.get_full_name() or user.get_username()


def _row_prefix(user_id: int) -> str:
    """Every row has its own role form: the prefix keeps field names and element ids apart."""
    return f"member-{user_id}"


def _refused(request: HttpRequest, studio: Studio, form: forms.Form, *, title: str) -> Callable[[int], HttpResponse]:
    """The page a refused invitation form gets: `title`, and why (its form's errors) or what to do."""
    return lambda status: problem_page(
        request,
        studio,
        status=status,
        title=title,
        message=" ".join(str(e) for e in form.non_field_errors()) or "Reload the members page and try again.",
    )


def _list_url(request: HttpRequest) -> str:
    page = request.GET.get("page", "")
    url = reverse("studio:members")
    return f"{url}?{urlencode({'page': page})}" if page.isascii() and page.isdigit() else url


def _after_change(request: HttpRequest, studio: Studio, user_id: int, still_owner: bool) -> str:
    """Back to the list, unless the owner just gave up managing members (their own role or
    membership changed): then the overview, which they may still open."""
    if user_id == studio.user.pk and not still_owner:
        return reverse("studio:overview")
    return _list_url(request)


def _render_list(
    request: HttpRequest,
    studio: Studio,
    *,
    status: int = 200,
    invite_form: MemberInviteForm | None = None,
    row_form: tuple[int, MemberRoleForm] | None = None,
) -> HttpResponse:
    page = page_of(request, selectors.members_of_tenant(tenant_id=studio.tenant_id))
    bound = dict([row_form]) if row_form else {}
    rows = [
        MemberRow(
            membership=membership,
            role_form=bound.get(membership.user_id)
            or MemberRoleForm(prefix=_row_prefix(membership.user_id), initial={"role": membership.role}),
            is_you=membership.user_id == studio.user.pk,
        )
        for membership in page
    ]
    context = {
        "studio": studio,
        "page": page,
        "rows": rows,
        "invitations": page_of(request, selectors.invitations_of_tenant(tenant_id=studio.tenant_id), param="ipage"),
        "withdraw_form": InvitationWithdrawForm(),
        "renew_form": InvitationRenewForm(),
        "invite_form": invite_form or MemberInviteForm(),
        "page_query": f"?page={page.number}" if page.number > 1 else "",
    }
    return render(request, "studio/members.html", context, status=status)


def _not_found(request: HttpRequest, studio: Studio) -> HttpResponse:
    message = "This studio has no such member."
    return problem_page(request, studio, status=404, title="Member not found", message=message)


# --- the list and adding a member -----------------------------------------------------------


@require_http_methods(["GET", "POST"])
@studio_page(*MEMBER_MANAGE_ROLES)
def members(request: HttpRequest, studio: Studio) -> HttpResponse:
    if request.method != "POST":
        return _render_list(request, studio)
    form = MemberInviteForm(request.POST)
    invited: list[MemberInvited] = []

    def effect() -> str:
        result = member_invite(
            tenant=studio.org, email=form.cleaned_data["email"], role=form.cleaned_data["role"], actor=studio.user
        )
        invited.append(result)
        user, role = result.user, Membership.Role(result.role).label.lower()
        if result.membership is None:
            messages.success(
                request,
                f"You invited {User.objects.normalize_email(form.cleaned_data['email'])} as {role}. They become a "
                "member once they accept; they are being e-mailed.",
            )
            return _list_url(request)
        messages.success(request, f"{member_name(user)} ({user.email}) is now {role}; they are being e-mailed.")
        return _after_change(request, studio, user.pk, result.membership.role == OWNER)

    response = submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render_list(request, studio, status=status, invite_form=form),
    )
    if invited and response.status_code == 303:
        _send_invitation(request, studio, invited[0])
    return response


def _send_invitation(request: HttpRequest, studio: Studio, invited: MemberInvited) -> None:
    """E-mail the new member, or the person with a pending invitation (it has committed). A
    failure is reported, not raised: the membership or invitation stands, and adding them again
    sends another e-mail."""
    user = invited.user
    try:
        invitation_send(
            studio=studio.org,
            user=user,
            role=invited.role,
            invited_by=studio.user,
            pending=invited.pending,
            expires_at=invited.invitation.expires_at if invited.invitation else None,
        )
    except Exception:
        logger.exception("member invitation e-mail failed", extra={"tenant_id": studio.tenant_id, "user_id": user.pk})
        standing = "The invitation stands" if invited.pending else "They are a member"
        messages.error(
            request,
            f"The e-mail to {invited.invitation.invited_email if invited.invitation else user.email} could not be "
            f"sent. {standing}; invite them again to send it again.",
        )


@require_POST
@studio_page(*MEMBER_MANAGE_ROLES)
def invitation_withdraw_view(request: HttpRequest, studio: Studio, invitation_id: int) -> HttpResponse:
    """Withdraw a pending invitation (one button per row of the invitations table). One that was
    answered or withdrawn meanwhile is a 404, after `submit` had its chance to replay the form."""
    form = InvitationWithdrawForm(request.POST)

    def effect() -> str:
        withdrawn: MembershipInvitation = membership_invitation_withdraw(
            tenant=studio.org, invitation_id=invitation_id, actor=studio.user
        )
        messages.success(request, f"The invitation of {withdrawn.invited_email} is withdrawn.")
        return _list_url(request)

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=_refused(request, studio, form, title="The invitation was not withdrawn"),
    )


@require_POST
@studio_page(*MEMBER_MANAGE_ROLES)
def invitation_renew_view(request: HttpRequest, studio: Studio, invitation_id: int) -> HttpResponse:
    """Send an invitation again ("Send again", offered on expired rows): it is renewed, with the
    role it offers, and e-mailed again once the form's effect committed (a replayed form sends
    nothing). One answered or withdrawn meanwhile is a 404, after `submit` had its chance to
    replay the form."""
    form = InvitationRenewForm(request.POST)
    renewed: list[MemberInvited] = []

    def effect() -> str:
        result = membership_invitation_renew(tenant=studio.org, invitation_id=invitation_id, actor=studio.user)
        renewed.append(result)
        email = result.invitation.invited_email if result.invitation else result.user.email
        messages.success(request, f"The invitation of {email} was sent again; they are being e-mailed.")
        return _list_url(request)

    response = submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=_refused(request, studio, form, title="The invitation was not sent again"),
    )
    if renewed and response.status_code == 303:
        _send_invitation(request, studio, renewed[0])
    return response


# --- changing a role ------------------------------------------------------------------------


@require_POST
@studio_page(*MEMBER_MANAGE_ROLES)
def member_role(request: HttpRequest, studio: Studio, user_id: int) -> HttpResponse:
    """Set one member's role; the last owner keeps theirs (409, in the row's form). Someone who is
    not (or no longer) a member is a 404, after `submit` had its chance to replay the form."""
    membership = selectors.member_get(tenant_id=studio.tenant_id, user_id=user_id)
    form = MemberRoleForm(request.POST, prefix=_row_prefix(user_id))

    def effect() -> str:
        previous_role = membership.role if membership is not None else None
        updated = member_role_set(tenant=studio.org, user_id=user_id, role=form.cleaned_data["role"], actor=studio.user)
        name = member_name(updated.user)
        label = updated.get_role_display().lower()
        if updated.role == previous_role:
            messages.info(request, f"{name} is already {label}; nothing changed.")
        else:
            messages.success(request, f"{name} is now {label}.")
        return _after_change(request, studio, user_id, updated.role == OWNER)

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: (
            _render_list(request, studio, status=status, row_form=(user_id, form))
            if membership is not None
            else _not_found(request, studio)
        ),
    )


# --- removing a member ----------------------------------------------------------------------


def _render_remove(
    request: HttpRequest, studio: Studio, membership: Membership, form: MemberRemoveForm, *, status: int
) -> HttpResponse:
    context = {
        "studio": studio,
        "membership": membership,
        "name": member_name(membership.user),
        "is_you": membership.user_id == studio.user.pk,
        "form": form,
    }
    return render(request, "studio/member_remove.html", context, status=status)


@require_http_methods(["GET", "POST"])
@studio_page(*MEMBER_MANAGE_ROLES)
def member_remove_view(request: HttpRequest, studio: Studio, user_id: int) -> HttpResponse:
    """GET asks for confirmation; POST removes. The last owner cannot be removed (409). Someone
    who is not (or no longer) a member is a 404, after `submit` had its chance to replay the form
    (a resubmitted removal lands where the first one did)."""
    membership = selectors.member_get(tenant_id=studio.tenant_id, user_id=user_id)
    if request.method != "POST":
        if membership is None:
            return _not_found(request, studio)
        return _render_remove(request, studio, membership, MemberRemoveForm(), status=200)
    form = MemberRemoveForm(request.POST)

    def effect() -> str:
        removed = member_remove(tenant=studio.org, user_id=user_id, actor=studio.user)
        user = removed.user
        messages.success(request, f"{member_name(user)} ({user.email}) is no longer a member of {studio.org.name}.")
        return _after_change(request, studio, user_id, still_owner=False)

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: (
            _render_remove(request, studio, membership, form, status=status)
            if membership is not None
            else _not_found(request, studio)
        ),
    )
