"""Studio members managed by owners: inviting by e-mail, changing a role, removing; a studio always
keeps an owner, even when two changes race."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, cast

import pytest
from django.db import connection, transaction

from apps.core.polling import wait_until
from apps.core.problems import DomainError, InvalidInput
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Membership, MembershipInvitation, Organization, User
from apps.tenancy.services import (
    LastOwnerRequired,
    MemberNotFound,
    NotAnOwner,
    member_invite,
    member_remove,
    member_role_set,
    membership_add,
)
from tests.factories.tenancy import MembershipFactory, UserFactory
from tests.fixtures import TenantBundle, backend_pid, waits_for_a_lock
from tests.tenancy.helpers import audits_of, pending_of, roles_of

pytestmark = pytest.mark.django_db


def a_member(org: Organization, role: str, **user_fields: Any) -> User:
    return cast(Membership, MembershipFactory(tenant=org, user=UserFactory(**user_fields), role=role)).user


# --- inviting -------------------------------------------------------------------------------


def test_inviting_a_new_address_creates_a_user_without_a_password_and_a_pending_invitation(
    tenant_a: TenantBundle,
) -> None:
    # given: an address nobody uses, and a username its local part would clash with
    UserFactory(username="ann.lee", email="someone-else@example.test")
    # when: the owner invites it
    invited = member_invite(tenant=tenant_a.org, email="Ann.Lee@Example.COM", role="photographer", actor=tenant_a.owner)
    # then: a new user with a free username and no usable password, invited but not a member (the
    # outcome is the one an existing account gets, so it does not tell whether the address had one)
    assert invited.created_user is True and invited.pending and invited.membership is None
    user = invited.user
    assert (user.email, user.username) == ("Ann.Lee@example.com", "ann.lee2")
    assert not user.has_usable_password()
    assert user.pk not in roles_of(tenant_a.org) and pending_of(tenant_a.org) == {user.pk: "photographer"}
    # and: audited with the owner as actor
    [audit] = audits_of(tenant_a.org, "membership.invite")
    assert (audit.actor_user_id, audit.target_id) == (tenant_a.owner.pk, str(user.pk))
    assert audit.data == {
        "email": "Ann.Lee@example.com",
        "role": "photographer",
        "previous_role": None,
        "user_created": True,
        "pending": True,
    }


def test_inviting_an_existing_address_in_another_case_only_invites_that_user(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    # given: someone with an account (studio B's owner)
    users_before = User.objects.count()
    # when: studio A's owner invites their address, typed in another case
    invited = member_invite(tenant=tenant_a.org, email=tenant_b.owner.email.upper(), role="staff", actor=tenant_a.owner)
    # then: a pending invitation of that user, no membership, no new user
    assert invited.pending and invited.membership is None and invited.created_user is False
    assert invited.user.pk == tenant_b.owner.pk and User.objects.count() == users_before
    assert tenant_b.owner.pk not in roles_of(tenant_a.org)
    assert roles_of(tenant_b.org)[tenant_b.owner.pk] == "owner"
    with tenant_context(tenant_a.org.pk):
        [invitation] = MembershipInvitation.objects.filter(tenant=tenant_a.org)
    assert (invitation.user_id, invitation.role) == (tenant_b.owner.pk, "staff")
    # and: audited as a pending invitation
    [audit] = audits_of(tenant_a.org, "membership.invite")
    assert audit.data == {
        "email": User.objects.normalize_email(tenant_b.owner.email.upper()),
        "role": "staff",
        "previous_role": None,
        "user_created": False,
        "pending": True,
    }


def test_inviting_a_member_again_sets_the_role_but_never_demotes_the_last_owner(tenant_a: TenantBundle) -> None:
    photographer = a_member(tenant_a.org, "photographer")
    invited = member_invite(tenant=tenant_a.org, email=photographer.email, role="owner", actor=tenant_a.owner)
    assert invited.membership is not None and invited.membership.role == "owner"
    assert not invited.pending and roles_of(tenant_a.org)[photographer.pk] == "owner"
    # when: the two owners are invited as staff in turn
    member_invite(tenant=tenant_a.org, email=photographer.email, role="staff", actor=tenant_a.owner)
    with pytest.raises(LastOwnerRequired):
        member_invite(tenant=tenant_a.org, email=tenant_a.owner.email, role="staff", actor=tenant_a.owner)
    # then: the first worked, the second was refused
    assert roles_of(tenant_a.org) == {tenant_a.owner.pk: "owner", photographer.pk: "staff"}
    assert len(audits_of(tenant_a.org, "membership.invite")) == 2


@pytest.mark.parametrize(("email", "role"), [("not-an-address", "staff"), ("ann@example.com", "admin"), ("", "staff")])
def test_bad_input_is_refused_and_writes_nothing(tenant_a: TenantBundle, email: str, role: str) -> None:
    users_before = User.objects.count()
    with pytest.raises(InvalidInput):
        member_invite(tenant=tenant_a.org, email=email, role=role, actor=tenant_a.owner)
    assert User.objects.count() == users_before
    assert roles_of(tenant_a.org) == {tenant_a.owner.pk: "owner"}
    assert audits_of(tenant_a.org, "membership.invite") == []


# --- roles and removal ----------------------------------------------------------------------


def test_a_role_change_is_audited_and_the_same_role_changes_nothing(tenant_a: TenantBundle) -> None:
    staff = a_member(tenant_a.org, "staff")
    member_role_set(tenant=tenant_a.org, user_id=staff.pk, role="photographer", actor=tenant_a.owner)
    member_role_set(tenant=tenant_a.org, user_id=staff.pk, role="photographer", actor=tenant_a.owner)
    assert roles_of(tenant_a.org)[staff.pk] == "photographer"
    [audit] = audits_of(tenant_a.org, "membership.set")
    assert audit.data == {"role": "photographer", "previous_role": "staff"}
    assert audit.actor_user_id == tenant_a.owner.pk


def test_a_removal_is_audited_and_keeps_the_user(tenant_a: TenantBundle) -> None:
    staff = a_member(tenant_a.org, "staff")
    member_remove(tenant=tenant_a.org, user_id=staff.pk, actor=tenant_a.owner)
    assert staff.pk not in roles_of(tenant_a.org) and User.objects.filter(pk=staff.pk).exists()
    [audit] = audits_of(tenant_a.org, "membership.remove")
    assert (audit.target_id, audit.data, audit.actor_user_id) == (str(staff.pk), {"role": "staff"}, tenant_a.owner.pk)
    with pytest.raises(MemberNotFound):
        member_remove(tenant=tenant_a.org, user_id=staff.pk, actor=tenant_a.owner)


@pytest.mark.parametrize(
    "change",
    [
        lambda org, user: member_role_set(tenant=org, user_id=user.pk, role="staff", actor=user),
        lambda org, user: member_remove(tenant=org, user_id=user.pk, actor=user),
        lambda org, user: member_role_set(tenant=org, user_id=user.pk, role="photographer", actor=None),
        lambda org, user: membership_add(tenant=org, user=user, role="staff"),
    ],
    ids=["demote", "remove", "demote-from-the-cli", "add-again-as-staff"],
)
def test_the_last_owner_can_be_neither_demoted_nor_removed(
    tenant_a: TenantBundle, change: Callable[[Organization, User], object]
) -> None:
    # given: one owner beside other members
    a_member(tenant_a.org, "staff")
    before = roles_of(tenant_a.org)
    # then: demoting or removing them is refused with a 409 and writes nothing
    with pytest.raises(LastOwnerRequired) as refused:
        change(tenant_a.org, tenant_a.owner)
    assert refused.value.status_code == 409 and "without an owner" in refused.value.detail
    assert roles_of(tenant_a.org) == before
    assert audits_of(tenant_a.org, "membership.set") == audits_of(tenant_a.org, "membership.remove") == []


def test_one_of_two_owners_may_step_down(tenant_a: TenantBundle) -> None:
    second = a_member(tenant_a.org, "owner")
    member_role_set(tenant=tenant_a.org, user_id=tenant_a.owner.pk, role="staff", actor=tenant_a.owner)
    assert roles_of(tenant_a.org) == {tenant_a.owner.pk: "staff", second.pk: "owner"}
    # and: the former owner manages nobody any more
    with pytest.raises(NotAnOwner):
        member_remove(tenant=tenant_a.org, user_id=second.pk, actor=tenant_a.owner)


def test_another_studios_member_is_not_found(tenant_a: TenantBundle, tenant_b: TenantBundle) -> None:
    theirs = a_member(tenant_b.org, "staff")
    with pytest.raises(MemberNotFound):
        member_role_set(tenant=tenant_a.org, user_id=theirs.pk, role="owner", actor=tenant_a.owner)
    with pytest.raises(MemberNotFound):
        member_remove(tenant=tenant_a.org, user_id=theirs.pk, actor=tenant_a.owner)
    assert roles_of(tenant_b.org)[theirs.pk] == "staff"


# --- races ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("how", "refusal"),
    [
        ("remove", LastOwnerRequired),
        ("demote", LastOwnerRequired),
        ("demote each other", NotAnOwner),
        ("add again as staff", LastOwnerRequired),
    ],
)
def test_two_owners_changed_at_once_leave_one_owner(
    tenant_a: TenantBundle, how: str, refusal: type[DomainError]
) -> None:
    # given: two owners, A and B; change 1 (on B) has run and not committed yet
    org, owner_a = tenant_a.org, tenant_a.owner
    owner_b = a_member(org, "owner")
    first_done, release = threading.Event(), threading.Event()
    second_pid: list[int] = []
    outcomes: dict[str, object] = {}

    def change(target: User, other: User) -> None:
        actor = other if how == "demote each other" else None
        if how == "remove":
            member_remove(tenant=org, user_id=target.pk, actor=actor)
        elif how == "add again as staff":
            membership_add(tenant=org, user=target, role="staff")  # the CLI's, the admin's, seeds'
        else:
            member_role_set(tenant=org, user_id=target.pk, role="staff", actor=actor)

    def first() -> None:
        try:
            with transaction.atomic():
                change(owner_b, owner_a)
                first_done.set()
                assert release.wait(20)
            outcomes["first"] = "done"
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcomes["first"] = exc
            first_done.set()
        finally:
            connection.close()

    def second() -> None:
        try:
            second_pid.append(backend_pid())
            change(owner_a, owner_b)
            outcomes["second"] = "done"
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcomes["second"] = exc
        finally:
            connection.close()

    one = threading.Thread(target=first)
    one.start()
    assert first_done.wait(20)
    # when: change 2 (on A) starts while change 1 holds the owners' lock
    two = threading.Thread(target=second)
    two.start()
    assert wait_until(
        lambda: "second" in outcomes or (bool(second_pid) and waits_for_a_lock(second_pid[0])),
        timeout=20,
        interval=0.02,
    ), "gave up waiting for change 2 to wait for change 1's lock (or to finish without it)"
    release.set()
    one.join(20)
    two.join(20)
    # then: change 1 went through; change 2 counted the owners change 1 left and was refused
    assert outcomes["first"] == "done", outcomes
    assert isinstance(outcomes["second"], refusal), outcomes
    roles = roles_of(org)
    assert roles.get(owner_a.pk) == "owner"
    assert [role for role in roles.values() if role == "owner"] == ["owner"]
    changes = audits_of(org, "membership.remove" if how == "remove" else "membership.set")
    assert [a.target_id for a in changes] == [str(owner_b.pk)]
