"""The members API: a studio's owner or API key lists the members, invites by e-mail (the e-mail
goes out once, through the outbox), changes a role and removes a member; the studio keeps an
owner; nobody else manages members, and another studio's members are not there."""

from __future__ import annotations

import re
import uuid
from typing import Any, cast

import pytest
from django.conf import settings
from django.core import mail
from django.urls import reverse
from rest_framework.test import APIClient

import tasks.tenancy  # noqa: F401 - registers the consumer of tenancy.member_invited
from apps.outbox.models import InboxEntry, OutboxMessage
from apps.outbox.routing import resolve_route
from apps.tenancy.context import tenant_context
from apps.tenancy.invitations import MEMBER_INVITATION_CONSUMER, TOPIC_MEMBER_INVITED
from apps.tenancy.middleware import SESSION_TENANT_KEY
from apps.tenancy.models import ApiKey, AuditLog, Membership, Organization, User
from apps.tenancy.services import membership_invitation_accept
from config.celery_app import app as celery_app
from tests.commerce.helpers import drain_outbox
from tests.factories.tenancy import MembershipFactory, UserFactory
from tests.fixtures import TenantBundle
from tests.tenancy.helpers import pending_of, roles_of

# Commits matter here: the Idempotency-Key row commits with the effect, and the consumer sends
# mail outside any transaction (it refuses to inside one).
pytestmark = pytest.mark.django_db(transaction=True)

LIST = reverse("tenancy-members")
PROBLEM = "application/problem+json"


INVITATIONS = reverse("tenancy-invitations")


def invitation_detail(invitation_id: int) -> str:
    return reverse("tenancy-invitation-detail", kwargs={"invitation_id": invitation_id})


def detail(user: User | int) -> str:
    return reverse("tenancy-member-detail", kwargs={"user_id": user if isinstance(user, int) else user.pk})


def a_member(org: Organization, role: str, **user_fields: Any) -> User:
    return cast(Membership, MembershipFactory(tenant=org, user=UserFactory(**user_fields), role=role)).user


def signed_in(user: User) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def send(client: APIClient, method: str, path: str, body: Any = None, *, key: str | None = None) -> Any:
    return getattr(client, method)(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()))


def member_audits(org: Organization) -> list[AuditLog]:
    with tenant_context(org.pk):
        return list(AuditLog.objects.filter(tenant=org, action__startswith="membership.").order_by("id"))


def invitations(org: Organization) -> list[OutboxMessage]:
    with tenant_context(org.pk):
        return list(OutboxMessage.objects.filter(topic=TOPIC_MEMBER_INVITED).order_by("created_at", "id"))


def api_key_label(org: Organization) -> str:
    with tenant_context(org.pk):
        return f"api_key:{ApiKey.objects.get(tenant=org).pk}"


def state(org: Organization) -> tuple[dict[int, str], dict[int, str], int, int, int, int]:
    """What a refused request must leave as it was: roles, pending invitations, users, audits,
    messages, e-mails."""
    counts = User.objects.count(), len(member_audits(org)), len(invitations(org)), len(mail.outbox)
    return roles_of(org), pending_of(org), *counts


def assert_problem(response: Any, status: int, slug: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    assert response.json()["type"] == f"/problems/{slug}", response.json()


def set_password_path(body: str) -> str | None:
    base = re.escape(settings.DARKROOM_PUBLIC_BASE_URL.rstrip("/"))
    match = re.search(rf"{base}(/studio/reset/[^/\s]+/[^/\s]+/)", body)
    return match[1] if match else None


def consume(message: OutboxMessage) -> bool:
    """Run the message's consumer task as a worker would (again, for a redelivery)."""
    task = celery_app.tasks[resolve_route(message.topic).task_name]
    with tenant_context(message.tenant_id):
        return bool(task(message_id=str(message.pk), payload=message.payload))


# --- listing --------------------------------------------------------------------------------


def test_the_list_shows_this_studios_members_page_by_page(tenant_a: TenantBundle, tenant_b: TenantBundle) -> None:
    # given: studio A with an owner, a photographer with a name and a staff member; studio B's members
    photographer = a_member(tenant_a.org, "photographer", first_name="Ann", last_name="Lee")
    staff = a_member(tenant_a.org, "staff")
    theirs = a_member(tenant_b.org, "staff")
    api = tenant_a.client()
    # when: the studio's key lists them, two at a time
    first = api.get(LIST, {"limit": 2})
    rest = api.get(LIST, {"limit": 2, "offset": 2})
    # then: A's three members, longest-standing first, with user, name, role and joining time
    assert first.status_code == rest.status_code == 200, first.content
    page = first.json()
    assert page["count"] == 3 and page["previous"] is None and "offset=2" in page["next"]
    members = page["results"] + rest.json()["results"]
    assert [(m["user_id"], m["role"]) for m in members] == [
        (tenant_a.owner.pk, "owner"),
        (photographer.pk, "photographer"),
        (staff.pk, "staff"),
    ]
    ann = members[1]
    assert (ann["username"], ann["email"], ann["name"]) == (photographer.username, photographer.email, "Ann Lee")
    assert members[2]["name"] == "" and ann["joined_at"]
    # and: nobody of studio B
    assert theirs.pk not in {m["user_id"] for m in members}
    assert tenant_b.owner.pk not in {m["user_id"] for m in members}
    # and: a bad page parameter is a problem, not a guess
    assert_problem(api.get(LIST, {"limit": 0}), 400, "validation-error")


# --- inviting -------------------------------------------------------------------------------


def test_a_new_address_is_invited_and_its_message_sends_one_email_with_a_password_link(tenant_a: TenantBundle) -> None:
    api = tenant_a.client()
    # when: the studio's key invites an address nobody uses, as photographer
    response = send(api, "post", LIST, {"email": "Nora.Quinn@Example.com", "role": "photographer"})
    # then: 202 with the address as sent, the role and the status only, as for an existing account
    assert response.status_code == 202, response.content
    assert response.json() == {"email": "Nora.Quinn@example.com", "role": "photographer", "status": "invited"}
    # and: an account without a password, invited, not a member
    user = User.objects.get(email="Nora.Quinn@example.com")
    assert user.username == "nora.quinn" and not user.has_usable_password()
    assert user.pk not in roles_of(tenant_a.org) and pending_of(tenant_a.org) == {user.pk: "photographer"}
    # and: audited under the API key's label (no person acted)
    [audit] = member_audits(tenant_a.org)
    assert (audit.action, audit.actor_user_id, audit.actor_label) == (
        "membership.invite",
        None,
        api_key_label(tenant_a.org),
    )
    assert (audit.data["user_created"], audit.data["pending"]) == (True, True)
    # and: no e-mail yet, one outbox message committed with the invitation (ids, no link)
    assert mail.outbox == []
    [message] = invitations(tenant_a.org)
    assert message.tenant_id == tenant_a.org.pk
    assert message.payload == {
        "tenant_id": tenant_a.org.pk,
        "user_id": user.pk,
        "invited_by": f'{tenant_a.org.name}\'s integration "test"',
        "pending": True,
    }
    assert resolve_route(TOPIC_MEMBER_INVITED).task_name == MEMBER_INVITATION_CONSUMER
    # when: the relay hands it to its consumer
    assert drain_outbox(topics={TOPIC_MEMBER_INVITED}) == [TOPIC_MEMBER_INVITED]
    # then: one e-mail from the studio address: the role, the username, a password link, and the
    # invitations page to accept on
    [email] = mail.outbox
    assert email.to == ["Nora.Quinn@example.com"]
    assert email.from_email == settings.STUDIO_PASSWORD_RESET_FROM_EMAIL
    assert tenant_a.org.name in email.subject and "invites you" in email.subject
    assert "photographer" in email.body and "nora.quinn" in email.body and "integration" in email.body
    assert set_password_path(email.body) and "/studio/invitations/" in email.body
    assert email.extra_headers["Message-ID"].startswith(f"<member-invitation-{message.pk}@")
    # when: the broker delivers the message again, twice
    # then: nothing more is sent
    assert [consume(message), consume(message)] == [False, False]
    assert len(mail.outbox) == 1


def test_the_answer_does_not_tell_whether_an_address_has_an_account(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    api = tenant_a.client()
    # when: an existing account's address and a new one are invited, both typed in another case
    typed_known = tenant_b.owner.email.upper()
    known = send(api, "post", LIST, {"email": typed_known, "role": "staff"})
    unknown = send(api, "post", LIST, {"email": "Nobody.Yet@EXAMPLE.com", "role": "staff"})
    # then: the same answer for both
    assert known.status_code == unknown.status_code == 202
    assert set(known.json()) == set(unknown.json()) == {"email", "role", "status"}
    assert known.json()["status"] == unknown.json()["status"] == "invited"
    # and: the pending list shows each address as it was typed, not the account's own spelling
    listed = [i["email"] for i in api.get(INVITATIONS).json()["results"]]
    assert listed == [User.objects.normalize_email(typed_known), "Nobody.Yet@example.com"]


def test_an_existing_account_is_only_invited_and_nothing_about_it_is_answered(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    # given: someone with an account and a name (studio B's owner)
    person = tenant_b.owner
    person.first_name, person.last_name = "Bea", "Bystander"
    person.save(update_fields=["first_name", "last_name"])
    users_before = User.objects.count()
    # when: studio A's key invites their address, typed in another case
    response = send(tenant_a.client(), "post", LIST, {"email": person.email.upper(), "role": "staff"})
    # then: 202 with the address, the role and the status only: no id, username or name of theirs
    assert response.status_code == 202, response.content
    sent = User.objects.normalize_email(person.email.upper())
    assert response.json() == {"email": sent, "role": "staff", "status": "invited"}
    assert "Bea" not in response.content.decode() and "Bystander" not in response.content.decode()
    # and: no membership, no new account; a pending invitation, audited as such
    assert User.objects.count() == users_before
    assert person.pk not in roles_of(tenant_a.org) and roles_of(tenant_b.org)[person.pk] == "owner"
    listed = tenant_a.client().get(INVITATIONS)
    assert [(i["email"], i["role"]) for i in listed.json()["results"]] == [(sent, "staff")]  # as invited
    [audit] = member_audits(tenant_a.org)
    assert (audit.action, audit.data["pending"], audit.data["user_created"]) == ("membership.invite", True, False)
    # when: the message is consumed
    [message] = invitations(tenant_a.org)
    assert message.payload["pending"] is True
    drain_outbox(topics={TOPIC_MEMBER_INVITED})
    # then: one e-mail inviting them to accept or decline after signing in, without a password link
    [email] = mail.outbox
    assert email.to == [person.email] and set_password_path(email.body) is None
    base = settings.DARKROOM_PUBLIC_BASE_URL.rstrip("/")
    assert f"{base}/studio/login/" in email.body and f"{base}/studio/invitations/" in email.body
    assert "accept" in email.body and "decline" in email.body and "as staff" in email.body
    assert tenant_a.org.name in email.subject and "invites you" in email.subject
    assert "integration" in email.body
    # and: still no membership
    assert person.pk not in roles_of(tenant_a.org)


def test_an_account_without_a_password_gets_a_link_with_its_pending_invitation(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    # given: an account studio B's invitation made, never claimed
    assert send(tenant_b.client(), "post", LIST, {"email": "unclaimed@example.com", "role": "staff"}).status_code == 202
    drain_outbox(topics={TOPIC_MEMBER_INVITED})
    mail.outbox.clear()
    # when: studio A invites the same address
    response = send(tenant_a.client(), "post", LIST, {"email": "unclaimed@example.com", "role": "photographer"})
    # then: pending, and its e-mail lets them choose a password to sign in and answer
    assert response.status_code == 202, response.content
    drain_outbox(topics={TOPIC_MEMBER_INVITED})
    [email] = mail.outbox
    assert set_password_path(email.body) and "accept" in email.body


def test_inviting_a_pending_address_again_updates_the_role_and_emails_again(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    api = tenant_a.client()
    assert send(api, "post", LIST, {"email": tenant_b.owner.email, "role": "staff"}).status_code == 202
    again = send(api, "post", LIST, {"email": tenant_b.owner.email, "role": "photographer"})
    assert again.status_code == 202 and again.json()["role"] == "photographer"
    assert [i["role"] for i in api.get(INVITATIONS).json()["results"]] == ["photographer"]
    drain_outbox(topics={TOPIC_MEMBER_INVITED})
    first, second = mail.outbox
    assert "as photographer" in first.body and "as photographer" in second.body


def test_a_withdrawn_invitation_sends_nothing_and_grants_nothing(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    api = tenant_a.client()
    assert send(api, "post", LIST, {"email": tenant_b.owner.email, "role": "staff"}).status_code == 202
    [invitation] = api.get(INVITATIONS).json()["results"]
    # when: the studio withdraws it before its e-mail went out (twice, with one key)
    withdrawn = send(api, "delete", invitation_detail(invitation["id"]), key="withdraw-1")
    replay = send(api, "delete", invitation_detail(invitation["id"]), key="withdraw-1")
    # then: 204, replayed; no invitation, no membership, no e-mail; a new request finds nothing
    assert withdrawn.status_code == replay.status_code == 204 and replay["Idempotent-Replayed"] == "true"
    assert api.get(INVITATIONS).json()["count"] == 0 and tenant_b.owner.pk not in roles_of(tenant_a.org)
    assert drain_outbox(topics={TOPIC_MEMBER_INVITED}) == [TOPIC_MEMBER_INVITED]
    assert mail.outbox == []
    assert_problem(send(api, "delete", invitation_detail(invitation["id"])), 404, "invitation-not-found")
    assert [a.action for a in member_audits(tenant_a.org)] == ["membership.invite", "membership.withdraw"]


def test_an_invitation_accepted_before_its_email_went_out_sends_nothing(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    assert send(tenant_a.client(), "post", LIST, {"email": tenant_b.owner.email, "role": "staff"}).status_code == 202
    membership_invitation_accept(tenant_id=tenant_a.org.pk, user=tenant_b.owner)
    [message] = invitations(tenant_a.org)
    assert consume(message) is False
    assert mail.outbox == [] and roles_of(tenant_a.org)[tenant_b.owner.pk] == "staff"
    # and: the message counts as handled (its inbox row is recorded), so no sweep sends it again
    with tenant_context(tenant_a.org.pk):
        assert InboxEntry.objects.filter(consumer=MEMBER_INVITATION_CONSUMER, message_id=message.pk).exists()


def test_invitations_are_listed_and_withdrawn_by_their_studio_only(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    # given: a pending invitation to A
    person = cast(User, UserFactory())
    assert send(tenant_a.client(), "post", LIST, {"email": person.email, "role": "staff"}).status_code == 202
    [invitation] = tenant_a.client().get(INVITATIONS).json()["results"]
    assert set(invitation) == {"id", "email", "role", "created_at", "expires_at", "status"}
    # when / then: studio B's key sees none of A's invitations and cannot withdraw one
    assert tenant_b.client().get(INVITATIONS).json()["count"] == 0
    assert_problem(send(tenant_b.client(), "delete", invitation_detail(invitation["id"])), 404, "invitation-not-found")
    assert tenant_a.client().get(INVITATIONS).json()["count"] == 1
    # and: a member who is not an owner may neither list nor withdraw
    staff = signed_in(a_member(tenant_a.org, "staff"))
    assert_problem(staff.get(INVITATIONS), 403, "permission-denied")
    assert_problem(send(staff, "delete", invitation_detail(invitation["id"])), 403, "permission-denied")
    # and: a signed-in owner may
    assert send(signed_in(tenant_a.owner), "delete", invitation_detail(invitation["id"])).status_code == 204


def test_a_session_in_several_studios_acts_for_none_it_did_not_choose(
    tenant_a: TenantBundle, tenant_b: TenantBundle
) -> None:
    # given: B's owner is also an owner of A (lower id); their session has chosen no studio
    MembershipFactory(tenant=tenant_a.org, user=tenant_b.owner, role="owner")
    client = signed_in(tenant_b.owner)
    before = state(tenant_a.org)
    # when / then: the API refuses rather than picking a studio for them, and says to pick one
    refused = send(client, "post", LIST, {"email": "x@example.com", "role": "staff"})
    assert_problem(refused, 403, "permission-denied")
    assert "pick it at /studio/choose/" in refused.json()["detail"]
    assert state(tenant_a.org) == before
    # and: once they choose B, they act for B
    session = client.session
    session[SESSION_TENANT_KEY] = tenant_b.org.pk
    session.save()
    assert [m["user_id"] for m in client.get(LIST).json()["results"]] == [tenant_b.owner.pk]


def test_a_replayed_invitation_answers_the_same_and_queues_no_second_email(tenant_a: TenantBundle) -> None:
    api = tenant_a.client()
    body = {"email": "twice@example.com", "role": "staff"}
    # when: the same request is sent twice with one key
    first = send(api, "post", LIST, body, key="invite-1")
    again = send(api, "post", LIST, body, key="invite-1")
    # then: the second is the first's stored answer
    assert first.status_code == again.status_code == 202, again.content
    assert again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    # and: one user, one invitation audit, one message, so one e-mail
    assert User.objects.filter(email="twice@example.com").count() == 1
    assert len(member_audits(tenant_a.org)) == 1 and len(invitations(tenant_a.org)) == 1
    drain_outbox(topics={TOPIC_MEMBER_INVITED})
    assert len(mail.outbox) == 1
    # and: the key with another body is refused, writing nothing
    before = state(tenant_a.org)
    assert_problem(send(api, "post", LIST, {**body, "role": "owner"}, key="invite-1"), 422, "idempotency-key-reused")
    assert state(tenant_a.org) == before


def test_the_email_is_not_sent_to_someone_removed_before_it_went_out(tenant_a: TenantBundle) -> None:
    # given: a member whose role change queued an e-mail
    member = a_member(tenant_a.org, "staff")
    api = tenant_a.client()
    changed = send(api, "post", LIST, {"email": member.email, "role": "photographer"})
    assert changed.status_code == 201 and changed.json()["status"] == "member", changed.content
    # when: they are removed before it went out
    assert send(api, "delete", detail(member)).status_code == 204
    assert drain_outbox(topics={TOPIC_MEMBER_INVITED}) == [TOPIC_MEMBER_INVITED]
    assert mail.outbox == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "ann@example.com", "role": "admin"}, "role"),
        ({"email": "not-an-address", "role": "staff"}, "email"),
        ({"email": "", "role": "staff"}, "email"),
        ({"role": "staff"}, "email"),
        ({"email": "ann@example.com", "role": "staff", "welcome": "hi"}, "welcome"),
        ({"email": 7, "role": "staff"}, "email"),
    ],
    ids=["unknown-role", "bad-address", "empty-address", "no-address", "unknown-field", "wrong-type"],
)
def test_a_bad_invitation_is_a_problem_and_writes_nothing(tenant_a: TenantBundle, body: Any, field: str) -> None:
    before = state(tenant_a.org)
    response = send(tenant_a.client(), "post", LIST, body)
    assert_problem(response, 400, "validation-error")
    assert field in response.json()["errors"]
    assert state(tenant_a.org) == before


# --- roles and removal ----------------------------------------------------------------------


def test_the_key_changes_a_role_and_the_same_role_changes_nothing(tenant_a: TenantBundle) -> None:
    staff = a_member(tenant_a.org, "staff")
    api = tenant_a.client()
    changed = send(api, "patch", detail(staff), {"role": "photographer"})
    assert changed.status_code == 200, changed.content
    assert (changed.json()["user_id"], changed.json()["role"]) == (staff.pk, "photographer")
    assert roles_of(tenant_a.org)[staff.pk] == "photographer"
    same = send(api, "patch", detail(staff), {"role": "photographer"})
    assert same.status_code == 200 and same.json()["role"] == "photographer"
    [audit] = member_audits(tenant_a.org)
    assert (audit.action, audit.data, audit.actor_label) == (
        "membership.set",
        {"role": "photographer", "previous_role": "staff"},
        api_key_label(tenant_a.org),
    )


@pytest.mark.parametrize("body", [{"role": "superuser"}, {}, {"role": "staff", "user_id": 1}, {"role": 1}], ids=str)
def test_a_bad_role_change_is_a_problem_and_writes_nothing(tenant_a: TenantBundle, body: Any) -> None:
    staff = a_member(tenant_a.org, "staff")
    before = state(tenant_a.org)
    assert_problem(send(tenant_a.client(), "patch", detail(staff), body), 400, "validation-error")
    assert state(tenant_a.org) == before


def test_the_key_removes_a_member_whose_account_stays(tenant_a: TenantBundle) -> None:
    staff = a_member(tenant_a.org, "staff")
    api = tenant_a.client()
    removed = send(api, "delete", detail(staff), key="remove-1")
    assert removed.status_code == 204 and removed.content == b""
    assert staff.pk not in roles_of(tenant_a.org) and User.objects.filter(pk=staff.pk).exists()
    [audit] = member_audits(tenant_a.org)
    assert (audit.action, audit.target_id, audit.data) == ("membership.remove", str(staff.pk), {"role": "staff"})
    # and: a retry with the key is a replay; a new request finds nobody
    replay = send(api, "delete", detail(staff), key="remove-1")
    assert replay.status_code == 204 and replay["Idempotent-Replayed"] == "true"
    assert_problem(send(api, "delete", detail(staff)), 404, "member-not-found")
    assert len(member_audits(tenant_a.org)) == 1


# --- the last owner -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "body"),
    [("patch", {"role": "staff"}), ("delete", None), ("post", "invite-as-staff")],
    ids=["demote", "remove", "re-invite-as-staff"],
)
def test_the_last_owner_is_neither_demoted_nor_removed(tenant_a: TenantBundle, method: str, body: Any) -> None:
    a_member(tenant_a.org, "staff")
    before = state(tenant_a.org)
    owner = signed_in(tenant_a.owner)
    if method == "post":
        response = send(owner, "post", LIST, {"email": tenant_a.owner.email, "role": "staff"})
    else:
        response = send(owner, method, detail(tenant_a.owner), body)
    assert_problem(response, 409, "last-owner")
    assert "without an owner" in response.json()["detail"]
    assert state(tenant_a.org) == before


@pytest.mark.parametrize(
    "change",
    [
        "invite-new-owner",
        "invite-member-as-owner",
        "invite-account-as-owner",
        "promote",
        "demote-owner",
        "remove-owner",
        "re-invite-owner",
    ],
)
def test_an_api_key_neither_makes_nor_unmakes_owners(tenant_a: TenantBundle, change: str) -> None:
    # given: a second owner (so no last-owner rule applies) and a staff member
    second_owner = a_member(tenant_a.org, "owner")
    staff = a_member(tenant_a.org, "staff")
    outsider = cast(User, UserFactory())
    before = state(tenant_a.org)
    api = tenant_a.client()
    # when: the studio's API key grants, offers or takes away the owner role
    response = {
        "invite-new-owner": lambda: send(api, "post", LIST, {"email": "mallory@example.test", "role": "owner"}),
        "invite-member-as-owner": lambda: send(api, "post", LIST, {"email": staff.email, "role": "owner"}),
        "invite-account-as-owner": lambda: send(api, "post", LIST, {"email": outsider.email, "role": "owner"}),
        "promote": lambda: send(api, "patch", detail(staff), {"role": "owner"}),
        "demote-owner": lambda: send(api, "patch", detail(second_owner), {"role": "staff"}),
        "remove-owner": lambda: send(api, "delete", detail(second_owner)),
        "re-invite-owner": lambda: send(api, "post", LIST, {"email": second_owner.email, "role": "photographer"}),
    }[change]()
    # then: 403, and nothing written: no membership, account, audit row or invitation
    assert_problem(response, 403, "owner-role-reserved")
    assert "members page" in response.json()["detail"]
    assert state(tenant_a.org) == before
    assert not User.objects.filter(email="mallory@example.test").exists()
    # and: the same changes stay open to a signed-in owner
    assert send(signed_in(tenant_a.owner), "patch", detail(staff), {"role": "owner"}).status_code == 200


def test_one_of_two_owners_steps_down_through_the_api(tenant_a: TenantBundle) -> None:
    second = a_member(tenant_a.org, "owner")
    owner = signed_in(tenant_a.owner)
    response = send(owner, "patch", detail(tenant_a.owner), {"role": "staff"})
    assert response.status_code == 200, response.content
    assert roles_of(tenant_a.org) == {tenant_a.owner.pk: "staff", second.pk: "owner"}
    # and: as staff now, they manage nobody any more
    assert_problem(send(owner, "delete", detail(second)), 403, "permission-denied")


# --- who may --------------------------------------------------------------------------------


def test_a_signed_in_owner_acts_as_themselves(tenant_a: TenantBundle) -> None:
    tenant_a.owner.first_name, tenant_a.owner.last_name = "Olga", "Owner"
    tenant_a.owner.save(update_fields=["first_name", "last_name"])
    response = send(signed_in(tenant_a.owner), "post", LIST, {"email": "new@example.com", "role": "staff"})
    assert response.status_code == 202, response.content
    [audit] = member_audits(tenant_a.org)
    assert (audit.actor_user_id, audit.actor_label) == (tenant_a.owner.pk, tenant_a.owner.username)
    drain_outbox(topics={TOPIC_MEMBER_INVITED})
    [email] = mail.outbox
    assert "Olga Owner invites you" in email.body


@pytest.mark.parametrize("role", ["photographer", "staff"])
def test_members_who_are_not_owners_may_not_manage_members(tenant_a: TenantBundle, role: str) -> None:
    # given: a signed-in member of the studio who is not an owner
    client = signed_in(a_member(tenant_a.org, role))
    before = state(tenant_a.org)
    # when / then: every members endpoint refuses them with a 403 problem, writing nothing
    assert_problem(client.get(LIST), 403, "permission-denied")
    assert_problem(send(client, "post", LIST, {"email": "x@example.com", "role": "owner"}), 403, "permission-denied")
    assert_problem(send(client, "patch", detail(tenant_a.owner), {"role": "staff"}), 403, "permission-denied")
    assert_problem(send(client, "delete", detail(tenant_a.owner)), 403, "permission-denied")
    assert state(tenant_a.org) == before


def test_without_credentials_nothing_is_listed_or_written(tenant_a: TenantBundle) -> None:
    before = state(tenant_a.org)
    assert_problem(APIClient().get(LIST), 401, "not-authenticated")
    assert_problem(send(APIClient(), "delete", detail(tenant_a.owner)), 401, "not-authenticated")
    assert state(tenant_a.org) == before


def test_another_studios_member_is_a_404(tenant_a: TenantBundle, tenant_b: TenantBundle) -> None:
    # given: a staff member of studio B, and studio A's key
    theirs = a_member(tenant_b.org, "staff")
    api = tenant_a.client()
    before = state(tenant_b.org)
    # when / then: changing or removing them (or someone nobody knows) is a 404 problem
    for user_id in (theirs.pk, tenant_b.owner.pk, 999_999_999):
        assert_problem(send(api, "patch", detail(user_id), {"role": "owner"}), 404, "member-not-found")
        assert_problem(send(api, "delete", detail(user_id)), 404, "member-not-found")
    # and: studio B is as it was
    assert state(tenant_b.org) == before
