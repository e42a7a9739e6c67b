"""An invitation is to a person (an account), not to a string: when the account's e-mail address
changes after it was invited, sending the invitation again goes to the account's current address
(the studio's lists still show the address it typed: the new one is not the studio's to see), and
only that account can accept it, never whoever has the old address later. An invitation of an
address without an account (one made for it) goes to the address typed, as before. Addresses
change through the platform admin's user forms."""

from __future__ import annotations

import datetime as dt
import importlib
import uuid
from typing import Any, cast

import pytest
from django.conf import settings
from django.core import mail
from django.db.models import F
from django.forms.models import model_to_dict
from django.urls import reverse

import tasks.tenancy  # noqa: F401 - registers the consumer of tenancy.member_invited
from apps.tenancy.admin import DarkroomUserChangeForm, DarkroomUserCreationForm
from apps.tenancy.context import tenant_context
from apps.tenancy.models import MembershipInvitation, Organization, User
from apps.tenancy.selectors import invitations_of_tenant, invitations_of_user
from apps.tenancy.services import (
    InvitationNotFound,
    member_invite,
    membership_invitation_accept,
    membership_invitation_renew,
)
from tests.commerce.helpers import drain_outbox
from tests.factories.tenancy import UserFactory
from tests.fixtures import TenantBundle
from tests.tenancy.helpers import audits_of, pending_of, roles_of

pytestmark = pytest.mark.django_db

TTL = dt.timedelta(days=settings.STUDIO_INVITATION_TTL_DAYS)
OLD, NEW = "ann.old@example.test", "ann.new@example.test"


def invite(org: Organization, email: str, actor: User, role: str = "staff") -> MembershipInvitation:
    invited = member_invite(tenant=org, email=email, role=role, actor=actor)
    assert invited.invitation is not None
    return invited.invitation


def expired(invitation: MembershipInvitation) -> MembershipInvitation:
    """The invitation as if sent TTL + 1 day ago."""
    with tenant_context(invitation.tenant_id):
        MembershipInvitation.objects.filter(pk=invitation.pk).update(expires_at=F("expires_at") - TTL - dt.timedelta(1))
    return invitation


def address_changed(user: User, email: str) -> User:
    """A platform admin gives the account another address (the admin's change form)."""
    data: dict[str, Any] = model_to_dict(user) | {"email": email}
    form = DarkroomUserChangeForm(data=data, instance=user)
    assert form.is_valid(), form.errors
    return cast(User, form.save())


def account_added(username: str, email: str) -> User | DarkroomUserCreationForm:
    """A platform admin adds an account (without a password) with `email`: the new account, or the
    refusing form."""
    form = DarkroomUserCreationForm(data={"username": username, "email": email, "usable_password": "false"})
    return cast(User, form.save()) if form.is_valid() else form


def listed_addresses(org: Organization) -> dict[int, str]:
    """Invitation id → the address the studio's list shows."""
    with tenant_context(org.pk):
        return {i.pk: i.invited_email for i in invitations_of_tenant(tenant_id=org.pk)}


# --- the account changed its address -------------------------------------------------------


def test_sending_again_after_the_account_changed_its_address_renews_that_accounts_invitation(
    tenant_a: TenantBundle,
) -> None:
    # given: Ann's account invited at her old address, which she then changed; the invitation expired
    ann = cast(User, UserFactory(email=OLD))
    invitation = expired(invite(tenant_a.org, OLD, tenant_a.owner))
    address_changed(ann, NEW)
    users_before = User.objects.count()
    # when: the studio sends it again
    renewed = membership_invitation_renew(tenant=tenant_a.org, invitation_id=invitation.pk, actor=tenant_a.owner)
    # then: Ann's invitation is renewed (the same row), for her current address; no account is
    # made for the old one, and nobody else is invited
    assert renewed.user.pk == ann.pk and not renewed.created_user
    assert renewed.invitation is not None and renewed.invitation.pk == invitation.pk
    assert User.objects.count() == users_before and not User.objects.filter(email__iexact=OLD).exists()
    assert pending_of(tenant_a.org) == {ann.pk: "staff"}
    # and: the studio's list shows the address it typed; the renewal is audited with where it went
    assert listed_addresses(tenant_a.org) == {invitation.pk: OLD}
    audits = audits_of(tenant_a.org, "membership.invite")
    assert [(a.target_id, a.data["email"]) for a in audits] == [(str(ann.pk), OLD), (str(ann.pk), OLD)]
    assert audits[-1].data["renewal"] is True and audits[-1].data["sent_to"] == NEW
    # and: Ann accepts it
    membership_invitation_accept(tenant_id=tenant_a.org.pk, user=ann, role="staff")
    assert roles_of(tenant_a.org)[ann.pk] == "staff" and pending_of(tenant_a.org) == {}


def test_whoever_has_the_old_address_later_can_neither_accept_nor_be_sent_the_invitation(
    tenant_a: TenantBundle,
) -> None:
    # given: Ann invited at her old address, changed since; the admin then gives the old address
    # to a new account (Olaf's); the invitation expired
    ann = cast(User, UserFactory(email=OLD))
    invitation = expired(invite(tenant_a.org, OLD, tenant_a.owner, role="photographer"))
    address_changed(ann, NEW)
    olaf = account_added("olaf", OLD)
    assert isinstance(olaf, User)
    # when: the studio sends it again
    renewed = membership_invitation_renew(tenant=tenant_a.org, invitation_id=invitation.pk, actor=tenant_a.owner)
    # then: it is still Ann's, and Olaf has none: he cannot accept one, and nothing is granted
    assert renewed.user.pk == ann.pk
    assert pending_of(tenant_a.org) == {ann.pk: "photographer"}
    assert invitations_of_user(user=olaf) == []
    with pytest.raises(InvitationNotFound):
        membership_invitation_accept(tenant_id=tenant_a.org.pk, user=olaf)
    assert olaf.pk not in roles_of(tenant_a.org) and audits_of(tenant_a.org, "membership.accept") == []
    # and: Ann accepts it
    membership_invitation_accept(tenant_id=tenant_a.org.pk, user=ann, role="photographer")
    assert roles_of(tenant_a.org)[ann.pk] == "photographer"


# --- addresses without accounts, and spellings -----------------------------------------------


def test_an_address_without_an_account_is_sent_again_to_the_address_typed(tenant_a: TenantBundle) -> None:
    # given: an address without an account, typed with capitals, invited (an account is made for
    # it), and expired
    typed = User.objects.normalize_email("Fresh.Person@Example.COM")
    invitation = expired(invite(tenant_a.org, typed, tenant_a.owner))
    person = invitation.user
    # when: the studio sends it again
    renewed = membership_invitation_renew(tenant=tenant_a.org, invitation_id=invitation.pk, actor=tenant_a.owner)
    # then: the same account and row, to the address as typed; that account accepts it
    assert renewed.user.pk == person.pk and renewed.invitation is not None
    assert renewed.invitation.pk == invitation.pk and renewed.invitation.invited_email == typed == person.email
    assert listed_addresses(tenant_a.org) == {invitation.pk: typed}
    membership_invitation_accept(tenant_id=tenant_a.org.pk, user=person, role="staff")
    assert roles_of(tenant_a.org)[person.pk] == "staff"


def test_an_account_typed_in_another_case_is_still_listed_as_typed_after_sending_again(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    # given: an existing account's address invited in capitals (the list must not show the
    # account's own spelling: it would tell that the address has an account), expired
    typed = User.objects.normalize_email(tenant_b.owner.email.upper())
    invitation = expired(invite(tenant_a.org, typed, tenant_a.owner))
    # when: sent again
    membership_invitation_renew(tenant=tenant_a.org, invitation_id=invitation.pk, actor=tenant_a.owner)
    # then: still listed as typed, and still that account's
    assert listed_addresses(tenant_a.org) == {invitation.pk: typed}
    assert pending_of(tenant_a.org) == {tenant_b.owner.pk: "staff"}


def test_an_invited_address_without_an_account_belongs_to_the_account_made_for_it(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    # given: an address without an account, invited: an account (no password) is made for it
    invitation = invite(tenant_a.org, "nina@example.test", tenant_a.owner)
    nina = invitation.user
    # then: nobody else gets an account with that address, in any case
    refused = account_added("impostor", "NINA@example.test")
    assert isinstance(refused, DarkroomUserCreationForm) and "email" in refused.errors
    # and: someone else cannot accept it
    with pytest.raises(InvitationNotFound):
        membership_invitation_accept(tenant_id=tenant_a.org.pk, user=tenant_b.owner)
    # when: the admin moves that account to another address, gives the first one to a new
    # account, and the studio sends the (expired) invitation again
    address_changed(nina, "nina.other@example.test")
    newcomer = account_added("newcomer", "nina@example.test")
    assert isinstance(newcomer, User)
    membership_invitation_renew(tenant=tenant_a.org, invitation_id=expired(invitation).pk, actor=tenant_a.owner)
    # then: it stays the account it was made for, at its current address; the newcomer has none
    assert pending_of(tenant_a.org) == {nina.pk: "staff"}
    assert listed_addresses(tenant_a.org) == {invitation.pk: "nina@example.test"}
    with pytest.raises(InvitationNotFound):
        membership_invitation_accept(tenant_id=tenant_a.org.pk, user=newcomer)
    membership_invitation_accept(tenant_id=tenant_a.org.pk, user=nina, role="staff")
    assert roles_of(tenant_a.org)[nina.pk] == "staff"


# --- the API -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_api_sends_an_invitation_again_to_the_accounts_current_address(tenant_a: TenantBundle) -> None:
    # given: Ann invited at her old address, changed since, and expired
    ann = cast(User, UserFactory(email=OLD))
    invitation = expired(invite(tenant_a.org, OLD, tenant_a.owner))
    address_changed(ann, NEW)
    api = tenant_a.client()
    # then: the API lists the invitation with the address the studio typed
    listed = api.get(reverse("tenancy-invitations")).json()["results"]
    assert [(i["id"], i["email"], i["status"]) for i in listed] == [(invitation.pk, OLD, "expired")]
    # when: the key sends it again
    mail.outbox.clear()
    users_before = User.objects.count()
    url = reverse("tenancy-invitation-renew", args=[invitation.pk])
    response = api.post(url, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))
    # then: the same invitation, pending again, nobody else invited, and its e-mail goes to the
    # current address
    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["id"], body["email"], body["status"]) == (invitation.pk, OLD, "pending")
    assert User.objects.count() == users_before and pending_of(tenant_a.org) == {ann.pk: "staff"}
    drain_outbox(topics={"tenancy.member_invited"})
    assert [m.to for m in mail.outbox] == [[NEW]]
    # and: an invitation answered meanwhile is a 404
    membership_invitation_accept(tenant_id=tenant_a.org.pk, user=ann, role="staff")
    gone = api.post(url, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))
    assert gone.status_code == 404 and gone.json()["type"] == "/problems/invitation-not-found"


@pytest.mark.django_db(transaction=True)
def test_an_api_key_sends_no_owner_invitation_again(tenant_a: TenantBundle) -> None:
    invitation = expired(invite(tenant_a.org, "co-owner@example.test", tenant_a.owner, role="owner"))
    url = reverse("tenancy-invitation-renew", args=[invitation.pk])
    response = tenant_a.client().post(url, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))
    assert response.status_code == 403 and response.json()["type"] == "/problems/owner-role-reserved"
    assert audits_of(tenant_a.org, "membership.invite")[-1].data.get("renewal") is None


# --- invitations made before the typed address was kept: the data migration ------------------

RESTORING = importlib.import_module("apps.tenancy.migrations.0005_membership_invitation_typed_email_restored")


def address_forgotten(invitation: MembershipInvitation) -> MembershipInvitation:
    """The invitation as stored before `email` was kept (0003): blank."""
    with tenant_context(invitation.tenant_id):
        MembershipInvitation.objects.filter(pk=invitation.pk).update(email="")
    return invitation


def test_the_migration_lists_an_older_invitation_with_the_address_the_studio_typed(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    from django.db import connection

    # given: Ann invited by two studios before the address was kept (A typed her old address, then
    # sent it again with her address in other case; B typed the old one), and she changed it since;
    # Bob invited by A, with no audit row to go by (a row made by hand)
    ann = cast(User, UserFactory(email=OLD))
    of_a = address_forgotten(invite(tenant_a.org, OLD, tenant_a.owner))
    address_forgotten(invite(tenant_a.org, OLD.upper().replace("EXAMPLE.TEST", "example.test"), tenant_a.owner))
    of_b = address_forgotten(invite(tenant_b.org, OLD, tenant_b.owner))
    address_changed(ann, NEW)
    bob = cast(User, UserFactory(email="bob@example.test"))
    with tenant_context(tenant_a.org.pk):
        by_hand = MembershipInvitation.objects.create(tenant=tenant_a.org, user=bob, role="staff", invited_by="x")
    # and: an invitation that keeps its address already is left alone
    kept = invite(tenant_a.org, "cy@example.test", tenant_a.owner)
    assert listed_addresses(tenant_a.org)[of_a.pk] == NEW  # the account's address: not the studio's to see
    # when: the migration's update runs, outside any studio's context
    restored = RESTORING.restore_typed_email_on(connection)
    # then: each studio lists the address it typed last; the one without an audit row falls back
    assert restored == 2
    assert listed_addresses(tenant_a.org) == {
        of_a.pk: "ANN.OLD@example.test",
        by_hand.pk: "bob@example.test",
        kept.pk: "cy@example.test",
    }
    assert listed_addresses(tenant_b.org) == {of_b.pk: OLD}
