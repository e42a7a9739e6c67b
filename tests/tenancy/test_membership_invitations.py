"""Pending invitations of existing accounts: nobody joins a studio without accepting; the invited
person alone accepts or declines; the studio withdraws; a pending invitation grants nothing (no
studio to act for, no owner for the last-owner rule); RLS keeps each studio's invitations its own."""

from __future__ import annotations

import threading
from typing import Any, cast

import psycopg
import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import IntegrityError, ProgrammingError, connection, transaction
from django.test import RequestFactory

from apps.core.polling import wait_until
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.middleware import SESSION_TENANT_KEY, session_tenant
from apps.tenancy.models import Membership, MembershipInvitation, Organization, User
from apps.tenancy.selectors import invitations_of_user, memberships_of_user
from apps.tenancy.services import (
    InvitationNotFound,
    LastOwnerRequired,
    NotAnOwner,
    OwnerRoleReserved,
    member_invite,
    member_remove,
    member_role_set,
    membership_add,
    membership_invitation_accept,
    membership_invitation_decline,
    membership_invitation_withdraw,
)
from tests.factories.tenancy import MembershipFactory, UserFactory
from tests.fixtures import TenantBundle, backend_pid, waits_for_a_lock
from tests.tenancy.helpers import audits_of, pending_of, roles_of

pytestmark = pytest.mark.django_db


def a_member(org: Organization, role: str) -> User:
    return cast(Membership, MembershipFactory(tenant=org, user=UserFactory(), role=role)).user


def invite(org: Organization, person: User, role: str, actor: User | None, **kwargs: Any) -> MembershipInvitation:
    invited = member_invite(tenant=org, email=person.email, role=role, actor=actor, **kwargs)
    assert invited.invitation is not None and invited.membership is None
    return invited.invitation


# --- inviting -------------------------------------------------------------------------------


def test_inviting_again_updates_the_pending_role_and_still_grants_nothing(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    person = tenant_b.owner
    first = invite(tenant_a.org, person, "staff", tenant_a.owner)
    again = invite(tenant_a.org, person, "photographer", tenant_a.owner)
    assert again.pk == first.pk
    assert pending_of(tenant_a.org) == {person.pk: "photographer"}
    assert person.pk not in roles_of(tenant_a.org)
    assert [a.data["role"] for a in audits_of(tenant_a.org, "membership.invite")] == ["staff", "photographer"]


def test_a_new_address_is_invited_like_an_existing_account_and_joins_only_by_accepting(tenant_a: TenantBundle) -> None:
    # when: a new address is invited
    invited = member_invite(tenant=tenant_a.org, email="fresh@example.com", role="staff", actor=tenant_a.owner)
    # then: an account is made, but only invited, as an existing account would be
    assert invited.created_user and invited.membership is None and invited.pending
    assert invited.user.pk not in roles_of(tenant_a.org) and pending_of(tenant_a.org) == {invited.user.pk: "staff"}
    # and: its person becomes a member by accepting the role offered
    membership_invitation_accept(tenant_id=tenant_a.org.pk, user=invited.user, role="staff")
    assert roles_of(tenant_a.org)[invited.user.pk] == "staff" and pending_of(tenant_a.org) == {}


def test_an_account_an_earlier_invitation_made_elsewhere_is_invited_not_added(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    # given: an account studio B's invitation created, whose person never chose a password
    unclaimed = member_invite(tenant=tenant_b.org, email="unclaimed@example.com", role="staff", actor=tenant_b.owner)
    # when: studio A invites the same address
    invited = member_invite(tenant=tenant_a.org, email="unclaimed@example.com", role="owner", actor=tenant_a.owner)
    # then: pending (B's invitation made the account, not A's), in B as well until answered
    assert invited.pending and invited.user.pk == unclaimed.user.pk and not invited.created_user
    assert unclaimed.user.pk not in roles_of(tenant_a.org)


@pytest.mark.parametrize("change", ["offer-owner", "turn-owner-offer-into-staff", "withdraw-owner-offer"])
def test_an_api_key_neither_offers_nor_changes_nor_withdraws_an_owner_invitation(
    tenant_a: TenantBundle, tenant_b: TenantBundle, change: str
) -> None:
    person = tenant_b.owner
    key = {"actor": None, "actor_label": "api_key:1", "may_change_owners": False}
    if change != "offer-owner":
        invitation = invite(tenant_a.org, person, "owner", tenant_a.owner)
    before = pending_of(tenant_a.org)
    with pytest.raises(OwnerRoleReserved):
        if change == "offer-owner":
            member_invite(tenant=tenant_a.org, email=person.email, role="owner", **key)
        elif change == "turn-owner-offer-into-staff":
            member_invite(tenant=tenant_a.org, email=person.email, role="staff", **key)
        else:
            membership_invitation_withdraw(tenant=tenant_a.org, invitation_id=invitation.pk, **key)
    assert pending_of(tenant_a.org) == before


# --- answering ------------------------------------------------------------------------------


def test_accepting_makes_them_a_member_with_the_invited_role(tenant_a: TenantBundle, tenant_b: TenantBundle) -> None:
    person = tenant_b.owner
    invite(tenant_a.org, person, "photographer", tenant_a.owner)
    membership = membership_invitation_accept(tenant_id=tenant_a.org.pk, user=person)
    assert (membership.tenant_id, membership.user_id, membership.role) == (tenant_a.org.pk, person.pk, "photographer")
    assert roles_of(tenant_a.org)[person.pk] == "photographer" and pending_of(tenant_a.org) == {}
    [audit] = audits_of(tenant_a.org, "membership.accept")
    assert (audit.actor_user_id, audit.target_id, audit.data["role"]) == (person.pk, str(person.pk), "photographer")
    # and: a second answer finds nothing
    with pytest.raises(InvitationNotFound):
        membership_invitation_accept(tenant_id=tenant_a.org.pk, user=person)


def test_declining_leaves_no_membership_and_no_invitation(tenant_a: TenantBundle, tenant_b: TenantBundle) -> None:
    person = tenant_b.owner
    invite(tenant_a.org, person, "staff", tenant_a.owner)
    membership_invitation_decline(tenant_id=tenant_a.org.pk, user=person)
    assert person.pk not in roles_of(tenant_a.org) and pending_of(tenant_a.org) == {}
    [audit] = audits_of(tenant_a.org, "membership.decline")
    assert (audit.actor_user_id, audit.data) == (person.pk, {"role": "staff"})
    with pytest.raises(InvitationNotFound):
        membership_invitation_accept(tenant_id=tenant_a.org.pk, user=person)


def test_a_withdrawn_invitation_cannot_be_accepted(tenant_a: TenantBundle, tenant_b: TenantBundle) -> None:
    person = tenant_b.owner
    invitation = invite(tenant_a.org, person, "staff", tenant_a.owner)
    membership_invitation_withdraw(tenant=tenant_a.org, invitation_id=invitation.pk, actor=tenant_a.owner)
    with pytest.raises(InvitationNotFound):
        membership_invitation_accept(tenant_id=tenant_a.org.pk, user=person)
    assert person.pk not in roles_of(tenant_a.org) and pending_of(tenant_a.org) == {}
    [audit] = audits_of(tenant_a.org, "membership.withdraw")
    assert (audit.actor_user_id, audit.data) == (tenant_a.owner.pk, {"email": person.email, "role": "staff"})


def test_nobody_else_can_accept_or_decline_it(tenant_a: TenantBundle, tenant_b: TenantBundle) -> None:
    # given: B's owner is invited to A; someone else (a member of A, and a stranger) tries to answer
    invite(tenant_a.org, tenant_b.owner, "owner", tenant_a.owner)
    stranger = cast(User, UserFactory())
    colleague = a_member(tenant_a.org, "staff")
    for user in (stranger, colleague, tenant_a.owner):
        with pytest.raises(InvitationNotFound):
            membership_invitation_accept(tenant_id=tenant_a.org.pk, user=user)
        with pytest.raises(InvitationNotFound):
            membership_invitation_decline(tenant_id=tenant_a.org.pk, user=user)
    # then: nothing changed
    assert pending_of(tenant_a.org) == {tenant_b.owner.pk: "owner"}
    assert roles_of(tenant_a.org) == {tenant_a.owner.pk: "owner", colleague.pk: "staff"}
    # and: it is not accepted in another studio's name either
    with pytest.raises(InvitationNotFound):
        membership_invitation_accept(tenant_id=tenant_b.org.pk, user=tenant_b.owner)


def test_another_studio_cannot_withdraw_it(tenant_a: TenantBundle, tenant_b: TenantBundle) -> None:
    person = cast(User, UserFactory())
    invitation = invite(tenant_a.org, person, "staff", tenant_a.owner)
    with pytest.raises(InvitationNotFound):
        membership_invitation_withdraw(tenant=tenant_b.org, invitation_id=invitation.pk, actor=tenant_b.owner)
    assert pending_of(tenant_a.org) == {person.pk: "staff"}


def test_an_owner_who_stepped_down_withdraws_nothing(tenant_a: TenantBundle, tenant_b: TenantBundle) -> None:
    # given: a pending invitation, and its inviter no longer an owner
    invitation = invite(tenant_a.org, tenant_b.owner, "staff", tenant_a.owner)
    a_member(tenant_a.org, "owner")
    member_role_set(tenant=tenant_a.org, user_id=tenant_a.owner.pk, role="staff", actor=tenant_a.owner)
    # when / then: they may not withdraw it (the role their page was opened with is stale)
    with pytest.raises(NotAnOwner):
        membership_invitation_withdraw(tenant=tenant_a.org, invitation_id=invitation.pk, actor=tenant_a.owner)
    assert pending_of(tenant_a.org) == {tenant_b.owner.pk: "staff"}


def test_an_operator_adding_the_member_drops_their_pending_invitation(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    invite(tenant_a.org, tenant_b.owner, "staff", tenant_a.owner)
    membership_add(tenant=tenant_a.org, user=tenant_b.owner, role="photographer")
    assert pending_of(tenant_a.org) == {} and roles_of(tenant_a.org)[tenant_b.owner.pk] == "photographer"


# --- a pending invitation grants nothing ----------------------------------------------------


@pytest.mark.parametrize("change", ["demote", "remove"])
def test_a_pending_owner_invitation_is_not_an_owner_for_the_last_owner_rule(
    tenant_a: TenantBundle, tenant_b: TenantBundle, change: str
) -> None:
    # given: one owner, and B's owner invited as owner (not accepted)
    invite(tenant_a.org, tenant_b.owner, "owner", tenant_a.owner)
    # when / then: the only real owner still cannot step down or be removed
    with pytest.raises(LastOwnerRequired):
        if change == "demote":
            member_role_set(tenant=tenant_a.org, user_id=tenant_a.owner.pk, role="staff", actor=tenant_a.owner)
        else:
            member_remove(tenant=tenant_a.org, user_id=tenant_a.owner.pk, actor=tenant_a.owner)
    assert roles_of(tenant_a.org) == {tenant_a.owner.pk: "owner"}
    # and: once accepted, the new owner counts and the first may step down
    membership_invitation_accept(tenant_id=tenant_a.org.pk, user=tenant_b.owner)
    member_role_set(tenant=tenant_a.org, user_id=tenant_a.owner.pk, role="staff", actor=tenant_a.owner)
    assert roles_of(tenant_a.org) == {tenant_a.owner.pk: "staff", tenant_b.owner.pk: "owner"}


def _session_request(user: User, chosen: int | None = None) -> Any:
    request = RequestFactory().get("/")
    request.user = user
    request.session = {} if chosen is None else {SESSION_TENANT_KEY: chosen}
    return request


def test_a_pending_invitation_is_no_studio_to_act_for(tenant_a: TenantBundle, tenant_b: TenantBundle) -> None:
    # given: B's owner invited to A, even with A forced into their session
    invite(tenant_a.org, tenant_b.owner, "owner", tenant_a.owner)
    # then: they are a member of B only, and act for B
    assert [m.tenant_id for m in memberships_of_user(user=tenant_b.owner)] == [tenant_b.org.pk]
    assert [i.tenant_id for i in invitations_of_user(user=tenant_b.owner)] == [tenant_a.org.pk]
    assert session_tenant(_session_request(tenant_b.owner)) == (tenant_b.org.pk, "owner")
    assert session_tenant(_session_request(tenant_b.owner, chosen=tenant_a.org.pk)) == (tenant_b.org.pk, "owner")
    # and: someone invited somewhere but a member nowhere acts for no studio at all
    newcomer = cast(User, UserFactory())
    invite(tenant_a.org, newcomer, "owner", tenant_a.owner)
    assert session_tenant(_session_request(newcomer, chosen=tenant_a.org.pk)) == (None, None)


def test_a_member_of_several_studios_acts_for_none_until_they_choose(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    # given: a member of A (lower id) and of B
    person = a_member(tenant_b.org, "photographer")
    MembershipFactory(tenant=tenant_a.org, user=person, role="staff")
    # then: no studio is picked for them; their choice is followed; a stale choice picks none
    assert session_tenant(_session_request(person)) == (None, None)
    assert session_tenant(_session_request(person, chosen=tenant_b.org.pk)) == (tenant_b.org.pk, "photographer")
    assert session_tenant(_session_request(person, chosen=999_999)) == (None, None)
    # and: a single membership needs no choice; anonymous visitors act for none
    assert session_tenant(_session_request(tenant_a.owner)) == (tenant_a.org.pk, "owner")
    assert session_tenant(_session_request(cast(User, AnonymousUser()))) == (None, None)


# --- rules in Postgres ----------------------------------------------------------------------


def test_constraints_refuse_a_second_invitation_and_an_unknown_role(tenant_a: TenantBundle) -> None:
    person = cast(User, UserFactory())
    with tenant_context(tenant_a.org.pk):
        MembershipInvitation.objects.create(tenant=tenant_a.org, user=person, role="staff", invited_by="x")
        with pytest.raises(IntegrityError, match="membership_invitation_unique_tenant_user"), transaction.atomic():
            MembershipInvitation.objects.create(tenant=tenant_a.org, user=person, role="owner", invited_by="x")
        with pytest.raises(IntegrityError, match="membership_invitation_role_valid"), transaction.atomic():
            MembershipInvitation.objects.create(tenant=tenant_a.org, user=UserFactory(), role="admin", invited_by="x")


@pytest.mark.django_db(transaction=True)
def test_studio_b_cannot_see_or_write_studio_as_invitations(
    tenant_a: TenantBundle, tenant_b: TenantBundle, runtime_conn: psycopg.Connection
) -> None:
    # given: a pending invitation to studio A
    person = cast(User, UserFactory())
    invitation = invite(tenant_a.org, person, "staff", tenant_a.owner)
    # then: acting for B (or for nobody), it is invisible and out of reach
    assert MembershipInvitation.objects.count() == 0
    with tenant_context(tenant_b.org.pk):
        assert MembershipInvitation.objects.count() == 0
        assert MembershipInvitation.objects.filter(pk=invitation.pk).update(role="owner") == 0
        assert MembershipInvitation.objects.filter(pk=invitation.pk).delete()[0] == 0
        with pytest.raises(ProgrammingError, match="row-level security"), transaction.atomic():
            MembershipInvitation.objects.create(tenant=tenant_a.org, user=tenant_b.owner, role="owner", invited_by="B")
    with tenant_context(tenant_a.org.pk):
        assert list(MembershipInvitation.objects.values_list("pk", "role")) == [(invitation.pk, "staff")]
    # and: the same through raw SQL as the runtime role
    cur = runtime_conn.cursor()
    assert cur.execute("SELECT count(*) FROM tenancy_membershipinvitation").fetchone() == (0,)
    cur.execute("SELECT set_config('app.tenant_id', %s, true)", [str(tenant_b.org.pk)])
    assert cur.execute("SELECT count(*) FROM tenancy_membershipinvitation").fetchone() == (0,)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        cur.execute(
            "INSERT INTO tenancy_membershipinvitation (tenant_id, user_id, role, invited_by, created_at) "
            "VALUES (%s, %s, 'owner', 'B', now())",
            [tenant_a.org.pk, tenant_b.owner.pk],
        )
    runtime_conn.rollback()
    with system_context("test: verify"):
        assert MembershipInvitation.objects.count() == 1


# --- races ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_accept_and_a_withdrawal_at_once_have_one_effect(tenant_a: TenantBundle, tenant_b: TenantBundle) -> None:
    # given: a pending invitation; the person's acceptance has run and not committed yet
    person = tenant_b.owner
    invitation = invite(tenant_a.org, person, "staff", tenant_a.owner)
    accepted, release = threading.Event(), threading.Event()
    withdraw_pid: list[int] = []
    outcomes: dict[str, object] = {}

    def accept() -> None:
        try:
            with transaction.atomic():
                membership_invitation_accept(tenant_id=tenant_a.org.pk, user=person)
                accepted.set()
                assert release.wait(20)
            outcomes["accept"] = "done"
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcomes["accept"] = exc
            accepted.set()
        finally:
            connection.close()

    def withdraw() -> None:
        try:
            withdraw_pid.append(backend_pid())
            membership_invitation_withdraw(tenant=tenant_a.org, invitation_id=invitation.pk, actor=tenant_a.owner)
            outcomes["withdraw"] = "done"
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcomes["withdraw"] = exc
        finally:
            connection.close()

    one = threading.Thread(target=accept)
    one.start()
    assert accepted.wait(20)
    # when: the studio withdraws it meanwhile
    two = threading.Thread(target=withdraw)
    two.start()
    assert wait_until(
        lambda: "withdraw" in outcomes or (bool(withdraw_pid) and waits_for_a_lock(withdraw_pid[0])),
        timeout=20,
        interval=0.02,
    ), "gave up waiting for the withdrawal to wait for the acceptance's lock (or to finish without it)"
    release.set()
    one.join(20)
    two.join(20)
    # then: the acceptance stands; the withdrawal found nothing left to withdraw
    assert outcomes["accept"] == "done", outcomes
    assert isinstance(outcomes["withdraw"], InvitationNotFound), outcomes
    assert roles_of(tenant_a.org)[person.pk] == "staff" and pending_of(tenant_a.org) == {}
    assert audits_of(tenant_a.org, "membership.withdraw") == []
