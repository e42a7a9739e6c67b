"""The members page: owners add people by e-mail (new people choose their password through the
e-mailed link), change roles and remove members; the studio keeps an owner; nobody else manages
members."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client

from apps.tenancy.context import tenant_context
from apps.tenancy.models import AuditLog, MembershipInvitation, Organization, User
from apps.web.studio.views import members as members_views
from tests.tenancy.helpers import audits_of, pending_of, roles_of
from tests.web.studio.conftest import StudioPeople, form_nonce_on, new_member, signed_in, text

pytestmark = pytest.mark.django_db

PAGE = "/studio/members/"
NEW_PASSWORD = "a-long-new-passphrase-42"
LAST_OWNER = "would be left without an owner"


def role_url(user: User | int) -> str:
    return f"/studio/members/{user if isinstance(user, int) else user.pk}/role"


def remove_url(user: User | int) -> str:
    return f"/studio/members/{user if isinstance(user, int) else user.pk}/remove"


def member_audits(org: Organization) -> list[AuditLog]:
    with tenant_context(org.pk):
        return list(AuditLog.objects.filter(tenant=org, action__startswith="membership.").order_by("id"))


def invite(client: Client, email: str, role: str, nonce: str | None = None) -> Any:
    nonce = nonce or form_nonce_on(client.get(PAGE), PAGE)
    return client.post(PAGE, {"nonce": nonce, "email": email, "role": role})


def set_role(client: Client, user: User | int, role: str, nonce: str | None = None) -> Any:
    prefix = f"member-{user if isinstance(user, int) else user.pk}"
    nonce = nonce or form_nonce_on(client.get(PAGE), role_url(user))
    return client.post(role_url(user), {"nonce": nonce, f"{prefix}-role": role})


def remove(client: Client, user: User | int, nonce: str | None = None) -> Any:
    nonce = nonce or form_nonce_on(client.get(remove_url(user)), remove_url(user))
    return client.post(remove_url(user), {"nonce": nonce})


def set_password_path(body: str) -> str | None:
    base = re.escape(settings.DARKROOM_PUBLIC_BASE_URL.rstrip("/"))
    match = re.search(rf"{base}(/studio/reset/[^/\s]+/[^/\s]+/)", body)
    return match[1] if match else None


def state(org: Organization) -> tuple[dict[int, str], int, int, int]:
    """What a refused form must leave as it was: roles, users, membership audits, e-mails."""
    return roles_of(org), User.objects.count(), len(member_audits(org)), len(mail.outbox)


# --- adding a member ------------------------------------------------------------------------


def test_a_new_person_is_invited_chooses_a_password_through_the_email_and_accepts(studio: StudioPeople) -> None:
    # given: the owner on the members page
    owner = signed_in(studio.owner)
    # when: they invite an address nobody uses, as photographer
    added = invite(owner, "Nora.Quinn@Example.com", "photographer")
    # then: back to the list, which shows the pending invitation in the words an existing account
    # gets (the page does not tell whether the address had an account)
    assert added.status_code == 303 and added["Location"] == PAGE
    listing = text(owner.get(PAGE))
    assert "become a member once they accept" in listing and "Nora.Quinn@example.com" in listing
    assert 'id="invitation-' in listing
    # and: a user without a usable password, invited, not a member yet, audited
    user = User.objects.get(email="Nora.Quinn@example.com")
    assert user.username == "nora.quinn" and not user.has_usable_password()
    assert user.pk not in roles_of(studio.org) and pending_of(studio.org) == {user.pk: "photographer"}
    [audit] = audits_of(studio.org, "membership.invite")
    assert (audit.actor_user_id, audit.target_id, audit.data["user_created"]) == (studio.owner.pk, str(user.pk), True)
    # and: one e-mail, from the studio address, with a link to choose a password, the username and
    # the invitations page
    [message] = mail.outbox
    assert message.to == ["Nora.Quinn@example.com"] and message.from_email == settings.STUDIO_PASSWORD_RESET_FROM_EMAIL
    assert studio.org.name in message.subject
    assert "photographer" in message.body and "nora.quinn" in message.body and "/studio/invitations/" in message.body
    link = set_password_path(message.body)
    assert link, message.body
    # when: they follow the link and choose a password
    person = Client()
    form_page = person.get(link, follow=True)
    # (their first password: not "new", as a reset's is)
    assert "Choose your password" in text(form_page) and "new password" not in text(form_page).lower()
    set_url = form_page.redirect_chain[-1][0]
    done = person.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/studio/reset/done/"
    done_page = text(person.get(done["Location"]))
    assert "Your password is set" in done_page and "changed" not in done_page
    # then: they sign in with it and are led to their invitation
    login = person.post("/studio/login/", {"username": "nora.quinn", "password": NEW_PASSWORD})
    assert login.status_code == 302
    studio_home = person.get("/studio/")
    assert studio_home.status_code == 302 and urlsplit(studio_home["Location"]).path == "/studio/invitations/"
    # when: they accept the role offered
    page = person.get("/studio/invitations/")
    accept_url = f"/studio/invitations/{studio.org.pk}/accept"
    accepted = person.post(accept_url, {"nonce": form_nonce_on(page, accept_url), "role": "photographer"})
    # then: they see the studio, as photographer
    assert accepted.status_code == 303
    overview = person.get("/studio/")
    assert overview.status_code == 200
    assert f"{studio.org.name} (photographer)" in text(overview)
    # and: the link is spent
    assert "This link does not work" in text(Client().get(link, follow=True))


def test_an_existing_user_is_invited_and_becomes_a_member_only_by_accepting(
    studio: StudioPeople, other_studio: StudioPeople
) -> None:
    # given: someone with an account and a name (an owner of another studio)
    person = other_studio.owner
    person.first_name, person.last_name = "Bea", "Bystander"
    person.save(update_fields=["first_name", "last_name"])
    users_before = User.objects.count()
    owner = signed_in(studio.owner)
    # when: the owner adds their address, typed in another case, as staff
    added = invite(owner, person.email.upper(), "staff")
    # then: nothing granted: no membership here, no user created; a pending invitation, audited
    assert added.status_code == 303 and added["Location"] == PAGE
    assert person.pk not in roles_of(studio.org) and roles_of(other_studio.org)[person.pk] == "owner"
    assert User.objects.count() == users_before
    [audit] = audits_of(studio.org, "membership.invite")
    assert (audit.data["user_created"], audit.data["pending"]) == (False, True)
    # and: the page names them by the address only, and lists the invitation apart from the members
    listing = text(owner.get(PAGE))
    assert "become a member once they accept" in listing
    assert "Bea" not in listing and person.username not in listing.replace(person.email, "")
    assert 'id="invitation-' in listing and f'id="member-{person.pk}"' not in listing
    # and: an e-mail asking them to accept after signing in, with no password link
    [message] = mail.outbox
    assert message.to == [person.email]
    assert set_password_path(message.body) is None and "/studio/reset/" not in message.body
    base = settings.DARKROOM_PUBLIC_BASE_URL.rstrip("/")
    assert f"{base}/studio/login/" in message.body and f"{base}/studio/invitations/" in message.body
    assert "staff" in message.body and studio.org.name in message.body
    # and: signed in, they still work in their own studio only, with the invitation pointed out
    client = signed_in(person)
    overview = client.get("/studio/")
    assert overview.status_code == 200 and f"{other_studio.org.name} (owner)" in text(overview)
    assert "pending invitation" in text(overview)
    # when: they accept it on their invitations page
    page = client.get("/studio/invitations/")
    accept_url = f"/studio/invitations/{studio.org.pk}/accept"
    accepted = client.post(accept_url, {"nonce": form_nonce_on(page, accept_url), "role": "staff"})
    # then: staff here now, working in the studio they accepted (their own one a switch away)
    assert accepted.status_code == 303 and accepted["Location"] == "/studio/"
    assert roles_of(studio.org)[person.pk] == "staff"
    overview = client.get("/studio/")
    assert overview.status_code == 200 and f"{studio.org.name} (staff)" in text(overview)
    # and: the owner's page lists them as a member, no longer as invited
    listing = text(owner.get(PAGE))
    assert f'id="member-{person.pk}"' in listing and 'id="invitation-' not in listing


def test_the_owner_withdraws_a_pending_invitation(studio: StudioPeople, other_studio: StudioPeople) -> None:
    owner = signed_in(studio.owner)
    person = other_studio.owner
    assert invite(owner, person.email, "photographer").status_code == 303
    with tenant_context(studio.org.pk):
        [invitation] = MembershipInvitation.objects.filter(tenant=studio.org)
    withdraw_url = f"/studio/members/invitations/{invitation.pk}/withdraw"
    nonce = form_nonce_on(owner.get(PAGE), withdraw_url)
    # when: withdrawn, twice (a resubmitted form)
    first = owner.post(withdraw_url, {"nonce": nonce})
    again = owner.post(withdraw_url, {"nonce": nonce})
    # then: gone once, audited; both land on the list
    assert first.status_code == again.status_code == 303 and first["Location"] == again["Location"] == PAGE
    with tenant_context(studio.org.pk):
        assert not MembershipInvitation.objects.filter(tenant=studio.org).exists()
    assert len(audits_of(studio.org, "membership.withdraw")) == 1
    assert "is withdrawn" in text(owner.get(PAGE))
    # and: the person can no longer accept it; a fresh withdrawal is a 404
    accept_url = f"/studio/invitations/{studio.org.pk}/accept"
    assert signed_in(person).post(accept_url, {"nonce": "a" * 24}).status_code == 404
    assert person.pk not in roles_of(studio.org)
    assert owner.post(withdraw_url, {"nonce": "b" * 24}).status_code == 404


def test_adding_someone_who_never_chose_a_password_again_sends_a_fresh_link(studio: StudioPeople) -> None:
    owner = signed_in(studio.owner)
    invite(owner, "late@example.com", "staff")
    invite(owner, "late@example.com", "photographer")
    first, second = mail.outbox
    assert set_password_path(first.body) and set_password_path(second.body)
    user = User.objects.get(email="late@example.com")
    assert pending_of(studio.org) == {user.pk: "photographer"}


def test_a_resubmitted_add_form_adds_and_emails_once(studio: StudioPeople) -> None:
    owner = signed_in(studio.owner)
    nonce = form_nonce_on(owner.get(PAGE), PAGE)
    first = invite(owner, "twice@example.com", "staff", nonce)
    second = invite(owner, "twice@example.com", "staff", nonce)
    assert first.status_code == second.status_code == 303 and first["Location"] == second["Location"]
    assert User.objects.filter(email="twice@example.com").count() == 1
    assert len(audits_of(studio.org, "membership.invite")) == 1
    assert len(mail.outbox) == 1


@pytest.mark.parametrize(
    ("email", "role", "error"),
    [
        ("not-an-address", "staff", "Enter a valid email address."),
        ("", "staff", "This field is required."),
        ("ok@example.com", "admin", "Select a valid choice. admin is not one of the available choices."),
    ],
)
def test_bad_input_re_renders_with_the_error_and_writes_nothing(
    studio: StudioPeople, email: str, role: str, error: str
) -> None:
    owner = signed_in(studio.owner)
    nonce = form_nonce_on(owner.get(PAGE), PAGE)
    before = state(studio.org)
    response = invite(owner, email, role, nonce)
    assert response.status_code == 400
    assert error in text(response)
    assert 'name="nonce"' in text(response)
    assert state(studio.org) == before


def test_a_failed_email_leaves_the_member_and_says_so(studio: StudioPeople, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**kwargs: Any) -> bool:
        raise ConnectionRefusedError("mail server down")

    monkeypatch.setattr(members_views, "invitation_send", refuse)
    owner = signed_in(studio.owner)
    added = invite(owner, "unlucky@example.com", "staff")
    assert added.status_code == 303
    assert User.objects.filter(email="unlucky@example.com").exists()
    assert "could not be sent" in text(owner.get(PAGE))


# --- changing a role ------------------------------------------------------------------------


def test_the_owner_changes_a_role_once_per_form_and_it_is_audited(studio: StudioPeople) -> None:
    # given: the members page with a role form per member
    owner = signed_in(studio.owner)
    nonce = form_nonce_on(owner.get(PAGE), role_url(studio.photographer))
    # when: the photographer is made staff, and the form is sent again
    changed = set_role(owner, studio.photographer, "staff", nonce)
    again = set_role(owner, studio.photographer, "staff", nonce)
    # then: staff, one audit row, both answers land on the list with the news
    assert changed.status_code == again.status_code == 303 and changed["Location"] == PAGE
    assert roles_of(studio.org)[studio.photographer.pk] == "staff"
    [audit] = audits_of(studio.org, "membership.set")
    assert audit.data == {"role": "staff", "previous_role": "photographer"}
    assert (audit.actor_user_id, audit.target_id) == (studio.owner.pk, str(studio.photographer.pk))
    assert "is now staff" in text(owner.get(PAGE))
    # and: the member's pages follow their new role
    assert signed_in(studio.photographer).get("/studio/sales/").status_code == 200


def test_an_unknown_role_re_renders_the_row_and_writes_nothing(studio: StudioPeople) -> None:
    owner = signed_in(studio.owner)
    before = state(studio.org)
    response = set_role(owner, studio.staff, "superuser")
    assert response.status_code == 400
    assert "Select a valid choice. superuser is not one of the available choices." in text(response)
    assert state(studio.org) == before


def test_an_owner_who_steps_down_lands_on_the_overview(studio: StudioPeople) -> None:
    co_owner = new_member(studio.org, "owner")
    owner = signed_in(studio.owner)
    response = set_role(owner, studio.owner, "photographer")
    assert response.status_code == 303 and response["Location"] == "/studio/"
    assert roles_of(studio.org)[studio.owner.pk] == "photographer" and roles_of(studio.org)[co_owner.pk] == "owner"
    assert owner.get(PAGE).status_code == 403


# --- removing a member ----------------------------------------------------------------------


def test_the_owner_removes_a_member_after_confirming(studio: StudioPeople) -> None:
    owner = signed_in(studio.owner)
    # given: the confirmation page, reached from the list
    assert f'href="{remove_url(studio.staff)}"' in text(owner.get(PAGE))
    confirm = owner.get(remove_url(studio.staff))
    assert confirm.status_code == 200 and studio.staff.email in text(confirm)
    nonce = form_nonce_on(confirm, remove_url(studio.staff))
    # when: confirmed, twice (a resubmitted form)
    removed = remove(owner, studio.staff, nonce)
    again = remove(owner, studio.staff, nonce)
    # then: gone, once, audited; both answers land on the list
    assert removed.status_code == again.status_code == 303
    assert removed["Location"] == again["Location"] == PAGE
    assert studio.staff.pk not in roles_of(studio.org)
    [audit] = audits_of(studio.org, "membership.remove")
    assert (audit.actor_user_id, audit.target_id, audit.data) == (
        studio.owner.pk,
        str(studio.staff.pk),
        {"role": "staff"},
    )
    assert "is no longer a member" in text(owner.get(PAGE))
    # and: the removed member cannot open the studio any more; their account stays
    assert signed_in(studio.staff).get("/studio/").status_code == 403
    assert User.objects.filter(pk=studio.staff.pk).exists()
    # and: their confirmation page is now a 404
    assert owner.get(remove_url(studio.staff)).status_code == 404


# --- the last owner -------------------------------------------------------------------------


def test_the_last_owner_cannot_be_demoted_409_and_nothing_written(studio: StudioPeople) -> None:
    owner = signed_in(studio.owner)
    before = state(studio.org)
    response = set_role(owner, studio.owner, "staff")
    assert response.status_code == 409
    assert LAST_OWNER in text(response) and "A studio needs an owner" in text(response)
    assert state(studio.org) == before


def test_the_last_owner_cannot_be_removed_409_and_nothing_written(studio: StudioPeople) -> None:
    owner = signed_in(studio.owner)
    before = state(studio.org)
    response = remove(owner, studio.owner)
    assert response.status_code == 409
    assert LAST_OWNER in text(response)
    assert 'name="nonce"' in text(response)
    assert state(studio.org) == before


def test_inviting_the_last_owner_as_staff_is_refused_too(studio: StudioPeople) -> None:
    owner = signed_in(studio.owner)
    before = state(studio.org)
    response = invite(owner, studio.owner.email, "staff")
    assert response.status_code == 409 and LAST_OWNER in text(response)
    assert state(studio.org) == before


# --- who may --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["photographer", "staff"])
def test_only_owners_manage_members(studio: StudioPeople, role: str) -> None:
    client = signed_in(getattr(studio, role))
    before = state(studio.org)
    assert "Members</a>" not in text(client.get("/studio/"))
    assert client.get(PAGE).status_code == 403
    assert client.post(PAGE, {"nonce": "n" * 24, "email": "x@example.com", "role": "owner"}).status_code == 403
    assert (
        client.post(role_url(studio.owner), {"nonce": "n" * 24, f"member-{studio.owner.pk}-role": "staff"}).status_code
        == 403
    )
    assert client.get(remove_url(studio.owner)).status_code == 403
    assert client.post(remove_url(studio.owner), {"nonce": "n" * 24}).status_code == 403
    assert client.post("/studio/members/invitations/1/withdraw", {"nonce": "n" * 24}).status_code == 403
    assert state(studio.org) == before


def test_owners_see_the_link(studio: StudioPeople) -> None:
    overview = text(signed_in(studio.owner).get("/studio/"))
    assert f'href="{PAGE}"' in overview and ">Members</a>" in overview


def test_the_list_shows_this_studios_members_only(studio: StudioPeople, other_studio: StudioPeople) -> None:
    listing = text(signed_in(studio.owner).get(PAGE))
    for user in (studio.owner, studio.photographer, studio.staff):
        assert f'id="member-{user.pk}"' in listing and user.email in listing
    for user in (other_studio.owner, other_studio.photographer, other_studio.staff):
        assert f'id="member-{user.pk}"' not in listing and user.email not in listing


def test_another_studios_member_is_a_404(studio: StudioPeople, other_studio: StudioPeople) -> None:
    owner = signed_in(studio.owner)
    theirs = other_studio.staff
    before = state(other_studio.org)
    assert owner.get(remove_url(theirs)).status_code == 404
    refused = owner.post(remove_url(theirs), {"nonce": "n" * 24})
    assert refused.status_code == 404 and "Member not found" in text(refused)
    assert owner.post(role_url(theirs), {"nonce": "m" * 24, f"member-{theirs.pk}-role": "owner"}).status_code == 404
    assert state(other_studio.org) == before


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_visitors_are_sent_to_the_login(studio: StudioPeople, method: str) -> None:
    for path in (PAGE, remove_url(studio.staff)):
        response = getattr(Client(), method)(path)
        assert response.status_code == 302
        assert urlsplit(response["Location"]).path == "/studio/login/"
