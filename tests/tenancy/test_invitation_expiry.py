"""Invitations expire STUDIO_INVITATION_TTL_DAYS after they were last sent: an expired one cannot
be accepted and waits on none of the invitee's pages; inviting the address again renews it; the
studio sees it as expired until the beat cleanup deletes it, STUDIO_INVITATION_EXPIRED_KEEP_DAYS
later. The database's clock decides expiry, so the tests move rows back in time."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

import pytest
from django.conf import settings
from django.core import mail
from django.db.models import F
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

import tasks.tenancy  # also registers the consumer of tenancy.member_invited
from apps.outbox.models import OutboxMessage
from apps.outbox.routing import resolve_route
from apps.tenancy.checks import invitation_settings_are_sane
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.invitations import TOPIC_MEMBER_INVITED, member_invitation_create
from apps.tenancy.models import MembershipInvitation, Organization, User
from apps.tenancy.selectors import invitations_of_user
from apps.tenancy.services import (
    InvitationExpired,
    member_invite,
    membership_invitation_accept,
    membership_invitation_renew,
    membership_invitations_expired_delete,
)
from config.celery_app import app as celery_app
from tests.factories.tenancy import UserFactory
from tests.fixtures import TenantBundle
from tests.tenancy.helpers import audits_of, pending_of, roles_of

pytestmark = pytest.mark.django_db

# The configured validity (the default, 14 days, unless the environment sets another).
TTL = dt.timedelta(days=settings.STUDIO_INVITATION_TTL_DAYS)
SECOND = dt.timedelta(seconds=1)


def invite(org: Organization, person: User, role: str, actor: User | None) -> MembershipInvitation:
    invited = member_invite(tenant=org, email=person.email, role=role, actor=actor)
    assert invited.invitation is not None
    return invited.invitation


def aged(invitation: MembershipInvitation, by: dt.timedelta) -> MembershipInvitation:
    """The invitation as if it had been sent `by` earlier (both its times move back); reloaded."""
    with tenant_context(invitation.tenant_id):
        MembershipInvitation.objects.filter(pk=invitation.pk).update(
            created_at=F("created_at") - by, expires_at=F("expires_at") - by
        )
        return MembershipInvitation.objects.get(pk=invitation.pk)


def row_of(invitation: MembershipInvitation) -> MembershipInvitation | None:
    with tenant_context(invitation.tenant_id):
        return MembershipInvitation.objects.filter(pk=invitation.pk).first()


# --- when it expires ------------------------------------------------------------------------


@override_settings(STUDIO_INVITATION_TTL_DAYS=3)
def test_an_invitation_expires_the_configured_days_after_it_was_sent(tenant_a: TenantBundle) -> None:
    before = timezone.now()
    invitation = invite(tenant_a.org, cast(User, UserFactory()), "staff", tenant_a.owner)
    after = timezone.now()
    stored = row_of(invitation)
    assert stored is not None
    assert before + dt.timedelta(days=3) <= stored.expires_at <= after + dt.timedelta(days=3)
    assert abs(stored.expires_at - stored.created_at - dt.timedelta(days=3)) < SECOND


def test_accepting_one_second_before_it_expires_makes_them_a_member(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    # given: an invitation sent TTL - 1 s ago
    invitation = aged(invite(tenant_a.org, tenant_b.owner, "photographer", tenant_a.owner), TTL - SECOND)
    # when: its person accepts it
    membership = membership_invitation_accept(tenant_id=tenant_a.org.pk, user=tenant_b.owner, role="photographer")
    # then: a member with the offered role, and the invitation is gone
    assert membership.role == "photographer" and roles_of(tenant_a.org)[tenant_b.owner.pk] == "photographer"
    assert row_of(invitation) is None


def test_accepting_one_second_after_it_expired_is_refused_and_writes_nothing(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    # given: an owner invitation sent TTL + 1 s ago
    invitation = aged(invite(tenant_a.org, tenant_b.owner, "owner", tenant_a.owner), TTL + SECOND)
    # when: its person accepts it
    with pytest.raises(InvitationExpired) as refused:
        membership_invitation_accept(tenant_id=tenant_a.org.pk, user=tenant_b.owner, role="owner")
    # then: 410 saying so and what to do; no membership, no audit, the invitation left for the studio to see
    assert refused.value.status_code == 410 and refused.value.slug == "invitation-expired"
    assert "expired" in refused.value.detail and "invite you again" in refused.value.detail
    assert roles_of(tenant_a.org) == {tenant_a.owner.pk: "owner"}
    assert audits_of(tenant_a.org, "membership.accept") == []
    assert pending_of(tenant_a.org) == {tenant_b.owner.pk: "owner"} and row_of(invitation) is not None


def test_an_expired_invitation_waits_on_none_of_the_invitees_pages(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    person = cast(User, UserFactory())
    fresh = invite(tenant_b.org, person, "staff", tenant_b.owner)
    aged(invite(tenant_a.org, person, "staff", tenant_a.owner), TTL + SECOND)
    assert [i.pk for i in invitations_of_user(user=person)] == [fresh.pk]


def test_an_expired_owner_invitation_still_counts_as_no_owner(tenant_a: TenantBundle, tenant_b: TenantBundle) -> None:
    aged(invite(tenant_a.org, tenant_b.owner, "owner", tenant_a.owner), TTL + SECOND)
    with pytest.raises(InvitationExpired):
        membership_invitation_accept(tenant_id=tenant_a.org.pk, user=tenant_b.owner)
    assert roles_of(tenant_a.org) == {tenant_a.owner.pk: "owner"}


# --- inviting again renews it ---------------------------------------------------------------


def test_inviting_the_address_again_renews_the_expired_invitation(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    # given: an invitation that expired a day ago
    expired = aged(invite(tenant_a.org, tenant_b.owner, "staff", tenant_a.owner), TTL + dt.timedelta(days=1))
    # when: the studio invites the address again, with another role
    before = timezone.now()
    again = invite(tenant_a.org, tenant_b.owner, "photographer", tenant_a.owner)
    # then: the same row (one per studio and person), offering the new role, valid for a full TTL
    # from now, still saying when the address was first invited
    renewed = row_of(again)
    assert renewed is not None and renewed.pk == expired.pk
    assert renewed.role == "photographer" and renewed.expires_at >= before + TTL
    assert renewed.created_at == expired.created_at
    assert [i.pk for i in invitations_of_user(user=tenant_b.owner)] == [expired.pk]
    # and: it can be accepted again
    membership_invitation_accept(tenant_id=tenant_a.org.pk, user=tenant_b.owner, role="photographer")
    assert roles_of(tenant_a.org)[tenant_b.owner.pk] == "photographer"


def test_sending_it_again_renews_it_once_and_says_what_it_offers(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    expired = aged(invite(tenant_a.org, tenant_b.owner, "staff", tenant_a.owner), TTL + SECOND)
    before = timezone.now()
    renewed = membership_invitation_renew(tenant=tenant_a.org, invitation_id=expired.pk, actor=tenant_a.owner)
    assert renewed.invitation is not None and renewed.invitation.pk == expired.pk and renewed.role == "staff"
    stored = row_of(expired)
    assert stored is not None and stored.expires_at >= before + TTL
    assert [a.data["role"] for a in audits_of(tenant_a.org, "membership.invite")] == ["staff", "staff"]
    membership_invitation_accept(tenant_id=tenant_a.org.pk, user=tenant_b.owner, role="staff")


# --- its e-mail ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_queued_email_of_an_invitation_expired_meanwhile_is_not_sent(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    with tenant_context(tenant_a.org.pk):
        invited = member_invitation_create(
            tenant=tenant_a.org, email=tenant_b.owner.email, role="staff", actor=tenant_a.owner, invited_by="Ann"
        )
    assert invited.invitation is not None
    aged(invited.invitation, TTL + SECOND)
    with tenant_context(tenant_a.org.pk):
        [message] = OutboxMessage.objects.filter(topic=TOPIC_MEMBER_INVITED)
    task = celery_app.tasks[resolve_route(message.topic).task_name]
    with tenant_context(message.tenant_id):
        assert task(message_id=str(message.pk), payload=message.payload) is False
    assert mail.outbox == []


# --- cleanup ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@override_settings(STUDIO_INVITATION_EXPIRED_KEEP_DAYS=30)
def test_cleanup_deletes_only_invitations_expired_longer_than_kept_in_batches(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    # given: in two studios, pending invitations (one about to expire), invitations expired
    # recently (the studio still sees them), and invitations expired more than 30 days ago
    people = [cast(User, UserFactory()) for _ in range(7)]
    keep = [
        invite(tenant_a.org, people[0], "staff", tenant_a.owner),
        aged(invite(tenant_b.org, people[1], "staff", tenant_b.owner), TTL - SECOND),
        aged(invite(tenant_a.org, people[2], "owner", tenant_a.owner), TTL + SECOND),
        aged(invite(tenant_b.org, people[3], "staff", tenant_b.owner), TTL + dt.timedelta(days=29)),
    ]
    gone = [
        aged(invite(tenant_a.org, people[4], "staff", tenant_a.owner), TTL + dt.timedelta(days=30, seconds=1)),
        aged(invite(tenant_b.org, people[5], "owner", tenant_b.owner), TTL + dt.timedelta(days=400)),
        aged(invite(tenant_a.org, people[6], "photographer", tenant_a.owner), TTL + dt.timedelta(days=31)),
    ]
    # when: the cleanup runs, two rows per batch
    with system_context("test: invitations cleanup"):
        deleted = membership_invitations_expired_delete(batch_size=2)
    # then: the three long-expired ones are gone, the rest stay
    assert deleted == 3
    with system_context("test: verify"):
        assert set(MembershipInvitation.objects.values_list("pk", flat=True)) == {i.pk for i in keep}
    assert {i.pk for i in gone}.isdisjoint(i.pk for i in keep)
    # and: the beat task runs it (nothing left to delete now)
    assert tasks.tenancy.invitations_cleanup.apply().get() == {"deleted": 0}


def test_the_cleanup_task_is_scheduled_on_the_maintenance_queue() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["tenancy.invitations_cleanup"]
    assert entry["task"] == "tenancy.invitations_cleanup" and entry["options"]["queue"] == "maintenance"
    assert "tenancy.invitations_cleanup" in celery_app.tasks


# --- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "error_id"),
    [
        ({"STUDIO_INVITATION_TTL_DAYS": 0}, "tenancy.E001"),
        ({"STUDIO_INVITATION_TTL_DAYS": 366}, "tenancy.E001"),
        ({"STUDIO_INVITATION_EXPIRED_KEEP_DAYS": -1}, "tenancy.E002"),
        ({"STUDIO_INVITATION_EXPIRED_KEEP_DAYS": 366}, "tenancy.E002"),
    ],
)
def test_invitation_settings_out_of_bounds_are_refused_at_start_up(overrides: dict[str, Any], error_id: str) -> None:
    assert invitation_settings_are_sane() == []
    with override_settings(**overrides):
        [error] = invitation_settings_are_sane()
    assert error.id == error_id


# --- the API ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_api_lists_expired_invitations_as_expired_and_inviting_again_renews_them(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    # given: a pending invitation and an expired one
    pending = invite(tenant_a.org, cast(User, UserFactory()), "staff", tenant_a.owner)
    expired = aged(invite(tenant_a.org, tenant_b.owner, "photographer", tenant_a.owner), TTL + SECOND)
    api = tenant_a.client()
    listed = {i["id"]: i for i in api.get(reverse("tenancy-invitations")).json()["results"]}
    # then: each says whether it is still pending, and until when it is (was) valid
    assert (listed[pending.pk]["status"], listed[expired.pk]["status"]) == ("pending", "expired")
    assert dt.datetime.fromisoformat(listed[expired.pk]["expires_at"]) < timezone.now()
    # when: the key invites the expired address again
    again = api.post(
        reverse("tenancy-members"),
        {"email": tenant_b.owner.email, "role": "photographer"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )
    # then: 202 as for any invitation, and it is pending again, for a full TTL
    assert again.status_code == 202, again.content
    renewed = {i["id"]: i for i in api.get(reverse("tenancy-invitations")).json()["results"]}[expired.pk]
    assert renewed["status"] == "pending"
    assert dt.datetime.fromisoformat(renewed["expires_at"]) > timezone.now() + TTL - dt.timedelta(minutes=1)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("age", [TTL + SECOND, TTL - dt.timedelta(days=1)], ids=["expired", "pending"])
def test_an_api_key_does_not_renew_an_owner_invitation(
    tenant_a: TenantBundle, tenant_b: TenantBundle, age: dt.timedelta
) -> None:
    # given: an owner invitation an owner sent (expired, or about to expire)
    invitation = aged(invite(tenant_a.org, tenant_b.owner, "owner", tenant_a.owner), age)
    # when: the studio's API key invites the address again as owner
    response = tenant_a.client().post(
        reverse("tenancy-members"),
        {"email": tenant_b.owner.email, "role": "owner"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )
    # then: 403 as for any owner offer by a key (renewing one offers the owner role for a new
    # period), and nothing written: the invitation keeps its expiry, no audit row, no e-mail queued
    assert response.status_code == 403, response.content
    assert response.json()["type"].endswith("owner-role-reserved")
    stored = row_of(invitation)
    assert stored is not None and stored.expires_at == invitation.expires_at
    assert [a.data["role"] for a in audits_of(tenant_a.org, "membership.invite")] == ["owner"]
    with tenant_context(tenant_a.org.pk):
        assert OutboxMessage.objects.filter(topic=TOPIC_MEMBER_INVITED).count() == 0
