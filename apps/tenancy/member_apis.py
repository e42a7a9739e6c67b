"""Members API for studios: list the members, invite by e-mail, change a role, remove; list
invitations (pending or expired) and withdraw them. Inviting an address again renews its
invitation (valid for STUDIO_INVITATION_TTL_DAYS from then on), an expired one included.

Inviting an address that already has an account (and is not a member) grants nothing: it leaves a
pending invitation its owner accepts or declines after signing in, and the answer (202) says only
that the address was invited: no user id, username or name of someone who is not (yet) a member.

The same operations and refusals as the studio's members page (`apps/web/studio/views/members.py`),
for the same callers: the studio's owners, and its API keys (which act with an owner's reach).
Every mutating call runs under the Idempotency-Key protocol of `TenantApi`; the services join its
transaction and take the owners' lock, so the studio always keeps an owner (409 `last-owner`).
The invitation e-mail is an outbox message committed with the membership and sent once by its
consumer (`apps.tenancy.invitations`), never inside the request.

Kept apart from `apps.tenancy.apis`, which every app imports for `TenantApi`: the invitation path
imports the outbox and the mail helpers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.openapi import PAGINATION_PARAMETERS, PAGINATION_QUERY, page_of
from apps.core.pagination import StrictLimitOffsetPagination
from apps.core.serializers import StrictSerializer
from apps.tenancy.apis import TenantApi
from apps.tenancy.authentication import ApiKeyPrincipal
from apps.tenancy.invitations import member_invitation_create, member_invitation_renew
from apps.tenancy.models import Membership, MembershipInvitation, User
from apps.tenancy.permissions import HasTenantRole
from apps.tenancy.selectors import invitations_of_tenant, members_of_tenant
from apps.tenancy.services import member_remove, member_role_set, membership_invitation_withdraw, person_name

# The members page is the owner's (apps/web/studio/access.py MEMBER_MANAGE_ROLES); API keys act
# with the owner's reach, except over owners: a key neither makes, demotes nor removes one
# (403 `owner-role-reserved`), so a leaked key cannot turn itself into a person who signs in
# as an owner and mints keys (keys cannot mint keys: apps/tenancy/apis.py).
MEMBER_MANAGE_ROLES = ("owner", "api_key")


class MemberOutputSerializer(serializers.Serializer):
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.EmailField()
    name = serializers.CharField(help_text="The member's full name; empty when they have not given one.")
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    joined_at = serializers.DateTimeField(help_text="When they became a member of this studio.")


def member_out(membership: Membership) -> dict[str, Any]:
    user = membership.user
    return {
        "user_id": membership.user_id,
        "username": user.get_username(),
        "email": user.email,
        "name": user.get_full_name(),
        "role": membership.role,
        "joined_at": membership.created_at,
    }


class InvitationOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The invitation's id (to withdraw it).")
    email = serializers.EmailField(
        help_text=(
            "The address as it was invited. The invitation is its person's: if their account has changed its "
            "address since, the e-mail goes to the new one (sending it again: `POST .../renew`)."
        )
    )
    role = serializers.ChoiceField(choices=Membership.Role.choices, help_text="The role offered.")
    created_at = serializers.DateTimeField(help_text="When the address was first invited.")
    expires_at = serializers.DateTimeField(
        help_text="Until when it can be accepted (inviting the address again renews it for the full validity)."
    )
    status = serializers.ChoiceField(
        choices=["pending", "expired"],
        help_text='"pending": it can be accepted; "expired": past `expires_at`, it grants nothing until renewed.',
    )


def invitation_out(invitation: MembershipInvitation) -> dict[str, Any]:
    """An invitation of `invitations_of_tenant` (which tells whether it has expired)."""
    return {
        "id": invitation.pk,
        "email": invitation.invited_email,
        "role": invitation.role,
        "created_at": invitation.created_at,
        "expires_at": invitation.expires_at,
        "status": "expired" if getattr(invitation, "expired", False) else "pending",
    }


@dataclass(frozen=True)
class MemberActor:
    """Who acts: the person (None for an API key, which skips the owner check as an operator
    does), their audit label ("" names a person by username), the name an invitation gives, and
    whether they may grant or take away the owner role (owners yes, API keys no)."""

    user: User | None
    label: str
    name: str
    may_change_owners: bool

    def acting(self) -> dict[str, Any]:
        """The keyword arguments naming who acts, as the membership services take them."""
        return {"actor": self.user, "actor_label": self.label, "may_change_owners": self.may_change_owners}


class _MembersApi(TenantApi):
    permission_classes = [HasTenantRole.of(*MEMBER_MANAGE_ROLES)]

    def actor(self, request: Request) -> MemberActor:
        """A signed-in owner (checked again under the owners' lock), or the API key by its label."""
        user = request.user
        if isinstance(user, ApiKeyPrincipal):
            studio = self.tenant.name
            return MemberActor(
                user=None,
                label=self.idempotency_caller(request),
                name=f'{studio}\'s integration "{user.api_key.name}"',
                may_change_owners=False,
            )
        assert isinstance(user, User), "only owners and API keys pass the permission check"
        return MemberActor(user=user, label="", name=person_name(user), may_change_owners=True)

    @property
    def tenant_pk(self) -> int:
        assert self.tenant_id is not None, "permission classes guarantee a tenant"
        return self.tenant_id


class MembersApi(_MembersApi):
    """The studio's members (GET) and inviting someone by e-mail (POST); owner or API key."""

    query_parameters = PAGINATION_QUERY

    class InviteInputSerializer(StrictSerializer):
        email = serializers.EmailField(max_length=254)
        role = serializers.ChoiceField(choices=Membership.Role.choices)

    class InviteOutputSerializer(MemberOutputSerializer):
        status = serializers.ChoiceField(choices=["member"], help_text='Always "member": they were one already.')

    class InvitedOutputSerializer(serializers.Serializer):
        email = serializers.EmailField()
        role = serializers.ChoiceField(choices=Membership.Role.choices, help_text="The role offered.")
        status = serializers.ChoiceField(
            choices=["invited"], help_text='Always "invited": nothing is granted until they accept.'
        )

    @extend_schema(
        operation_id="v1_members_list",
        parameters=PAGINATION_PARAMETERS,
        description=(
            "The studio's members with their roles, longest-standing first (pending invitations are not members)."
        ),
        responses=page_of(MemberOutputSerializer),
    )
    def get(self, request: Request) -> Response:
        paginator = StrictLimitOffsetPagination()
        page = paginator.paginate_queryset(members_of_tenant(tenant_id=self.tenant_pk), request, view=self)
        return paginator.get_paginated_response(
            MemberOutputSerializer([member_out(m) for m in page or []], many=True).data
        )

    @extend_schema(
        operation_id="v1_members_invite",
        request=InviteInputSerializer,
        responses={201: InviteOutputSerializer, 202: InvitedOutputSerializer},
        description=(
            "Invite the person with this e-mail address with this role, and e-mail them.\n\n"
            "* A member: gets the new role (201).\n"
            "* Anyone else: nothing is granted. A pending invitation is made (or given the new role, and renewed "
            "if it had expired), valid for `STUDIO_INVITATION_TTL_DAYS` from now, and the "
            "e-mail says until when and asks them to accept or decline it after signing in; an address without an "
            "account also "
            "gets a link to choose a password. The answer is the same whether or not the address had an "
            "account: 202, with the address as sent, the role and `status: invited` only.\n\n"
            "Refused with 409 `last-owner` if it would leave the studio without an owner, and with 403 "
            "`owner-role-reserved` when an API key would grant, offer or take away the owner role."
        ),
    )
    def post(self, request: Request) -> Response:
        data = self.InviteInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        actor = self.actor(request)
        invited = member_invitation_create(
            tenant=self.tenant,
            invited_by=actor.name,
            **actor.acting(),
            **data.validated_data,
        )
        if invited.membership is None:
            # The address as sent (normalised), not the account's: its spelling would tell that one exists.
            email = User.objects.normalize_email(data.validated_data["email"].strip())
            invited_body = {"email": email, "role": invited.role, "status": "invited"}
            return Response(self.InvitedOutputSerializer(invited_body).data, status=202)
        body = {**member_out(invited.membership), "status": "member"}
        return Response(self.InviteOutputSerializer(body).data, status=201)


class InvitationsApi(_MembersApi):
    """The studio's invitations, pending or expired (GET); owner or API key."""

    query_parameters = PAGINATION_QUERY

    @extend_schema(
        operation_id="v1_invitations_list",
        parameters=PAGINATION_PARAMETERS,
        description=(
            "Invitations to this studio, oldest first, each with the address as it was invited, until when it can "
            "be accepted (`expires_at`) and its `status`: a pending one becomes a membership when its person "
            "accepts it, and goes when they decline or the studio withdraws it; an expired one grants nothing, "
            "until the studio sends it again (`POST /api/v1/tenancy/invitations/{id}/renew`), and is deleted some "
            "days later."
        ),
        responses=page_of(InvitationOutputSerializer),
    )
    def get(self, request: Request) -> Response:
        paginator = StrictLimitOffsetPagination()
        page = paginator.paginate_queryset(invitations_of_tenant(tenant_id=self.tenant_pk), request, view=self)
        return paginator.get_paginated_response(
            InvitationOutputSerializer([invitation_out(i) for i in page or []], many=True).data
        )


class InvitationDetailApi(_MembersApi):
    """One pending invitation: withdraw it (DELETE); owner or API key."""

    @extend_schema(
        operation_id="v1_invitations_withdraw",
        request=None,
        responses={204: None},
        description=(
            "Withdraw a pending invitation (an e-mail not yet sent for it is not sent). 404 "
            "`invitation-not-found` once it was accepted, declined or withdrawn; an API key withdraws no "
            "invitation offering the owner role (403 `owner-role-reserved`)."
        ),
    )
    def delete(self, request: Request, invitation_id: int) -> Response:
        actor = self.actor(request)
        membership_invitation_withdraw(
            tenant=self.tenant,
            invitation_id=invitation_id,
            **actor.acting(),
        )
        return Response(status=204)


class InvitationRenewApi(_MembersApi):
    """Send an invitation again (POST); owner or API key."""

    @extend_schema(
        operation_id="v1_invitations_renew",
        request=None,
        responses={202: InvitationOutputSerializer},
        description=(
            "Send a pending or expired invitation again: the same person's invitation, with the role it offers, "
            "valid for `STUDIO_INVITATION_TTL_DAYS` from now, and e-mailed again to their account's current "
            "address (which may differ from the address invited, if they changed it since; inviting that address "
            "instead would invite whoever has it now). 404 `invitation-not-found` once it was accepted, declined or "
            "withdrawn; an API key renews no invitation offering the owner role (403 `owner-role-reserved`)."
        ),
    )
    def post(self, request: Request, invitation_id: int) -> Response:
        actor = self.actor(request)
        renewed = member_invitation_renew(
            tenant=self.tenant,
            invitation_id=invitation_id,
            invited_by=actor.name,
            **actor.acting(),
        )
        assert renewed.invitation is not None, "a renewal puts an invitation"
        return Response(InvitationOutputSerializer(invitation_out(renewed.invitation)).data, status=202)


class MemberDetailApi(_MembersApi):
    """One member: change their role (PATCH) or remove them (DELETE); owner or API key."""

    class RoleInputSerializer(StrictSerializer):
        role = serializers.ChoiceField(choices=Membership.Role.choices)

    @extend_schema(
        operation_id="v1_members_role_set",
        request=RoleInputSerializer,
        responses={200: MemberOutputSerializer},
        description=(
            "Give a member another role (the same role changes nothing). The last owner keeps theirs (409); "
            "an API key neither makes nor demotes an owner (403 `owner-role-reserved`)."
        ),
    )
    def patch(self, request: Request, user_id: int) -> Response:
        data = self.RoleInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        actor = self.actor(request)
        membership = member_role_set(
            tenant=self.tenant,
            user_id=user_id,
            **actor.acting(),
            **data.validated_data,
        )
        return Response(MemberOutputSerializer(member_out(membership)).data)

    @extend_schema(
        operation_id="v1_members_remove",
        request=None,
        responses={204: None},
        description=(
            "Remove a member from the studio (their account stays). The last owner cannot be removed (409); "
            "an API key removes no owner (403 `owner-role-reserved`)."
        ),
    )
    def delete(self, request: Request, user_id: int) -> Response:
        actor = self.actor(request)
        member_remove(
            tenant=self.tenant,
            user_id=user_id,
            **actor.acting(),
        )
        return Response(status=204)
