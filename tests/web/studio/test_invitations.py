"""The invited person's own page: their pending invitations, with Accept and Decline. Only they can
answer one (anyone else gets a 404); an answer is applied once; until they accept, they have no
access to the studio."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

from apps.tenancy.invitations import set_password_url
from apps.tenancy.models import Organization, User
from apps.tenancy.services import member_invite
from tests.tenancy.helpers import audits_of, pending_of, roles_of
from tests.web.studio.conftest import StudioPeople, form_nonce_on, new_member, new_user, signed_in, text

pytestmark = pytest.mark.django_db

PAGE = "/studio/invitations/"
NEW_PASSWORD = "a-long-first-passphrase-42"


def accept_url(org: Organization) -> str:
    return f"/studio/invitations/{org.pk}/accept"


def decline_url(org: Organization) -> str:
    return f"/studio/invitations/{org.pk}/decline"


def invited(studio: StudioPeople, person: User, role: str) -> None:
    result = member_invite(tenant=studio.org, email=person.email, role=role, actor=studio.owner)
    assert result.pending


def shown_role(page: Any, org: Organization) -> str:
    """The role the page's Accept form of `org` carries (what the person agrees to)."""
    form = re.search(rf'action="{accept_url(org)}".*?</form>', text(page), re.S)
    assert form, "no Accept form"
    found = re.search(r'name="role" value="([^"]*)"', form.group(0))
    assert found, "the Accept form carries no role"
    return found.group(1)


def answer(client: Client, url: str, form: tuple[str, str] | None = None) -> Any:
    """Post the answer form at `url` as the page renders it now, or as `form` (nonce, role) kept
    from an earlier rendering."""
    if form is None:
        page = client.get(PAGE)
        org_id = int(url.split("/")[-2])
        form = (
            form_nonce_on(page, url),
            shown_role(page, Organization.objects.get(pk=org_id)) if "accept" in url else "",
        )
    nonce, role = form
    return client.post(url, {"nonce": nonce, "role": role})


def test_someone_in_no_studio_is_shown_their_invitations_and_accepts_one(studio: StudioPeople) -> None:
    # given: a person with an account and no studio, invited as photographer
    person = new_user()
    invited(studio, person, "photographer")
    client = signed_in(person)
    # then: the studio is not theirs yet: its pages lead to their invitations instead
    for path in ("/studio/", "/studio/events/", "/studio/choose/"):
        response = client.get(path)
        assert response.status_code == 302 and urlsplit(response["Location"]).path == PAGE, path
    page = client.get(PAGE)
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    assert studio.org.name in text(page) and "photographer" in text(page)
    # when: they accept, and the form is sent again
    form = (form_nonce_on(page, accept_url(studio.org)), shown_role(page, studio.org))
    first = answer(client, accept_url(studio.org), form)
    again = answer(client, accept_url(studio.org), form)
    # then: a photographer of the studio, once; both answers land on its overview, not on a
    # picker asking again for the studio just accepted
    assert first.status_code == again.status_code == 303
    assert first["Location"] == again["Location"] == "/studio/"
    assert roles_of(studio.org)[person.pk] == "photographer" and pending_of(studio.org) == {}
    assert len(audits_of(studio.org, "membership.accept")) == 1
    overview = client.get("/studio/")
    assert overview.status_code == 200 and f"{studio.org.name} (photographer)" in text(overview)
    assert f"You are now a member of {studio.org.name}, as photographer." in text(overview)
    assert "Pick it" not in text(overview)


def test_declining_leaves_them_outside_the_studio(studio: StudioPeople) -> None:
    person = new_user()
    invited(studio, person, "owner")
    client = signed_in(person)
    declined = answer(client, decline_url(studio.org))
    assert declined.status_code == 303 and declined["Location"] == PAGE
    assert person.pk not in roles_of(studio.org) and pending_of(studio.org) == {}
    [audit] = audits_of(studio.org, "membership.decline")
    assert audit.actor_user_id == person.pk
    assert "no pending invitations" in text(client.get(PAGE))
    assert client.get("/studio/").status_code == 403
    # and: accepting afterwards finds nothing
    assert client.post(accept_url(studio.org), {"nonce": "c" * 24}).status_code == 404
    assert person.pk not in roles_of(studio.org)


@pytest.mark.parametrize("who", ["stranger", "studio-owner", "member-of-the-studio", "another-invitee"])
@pytest.mark.parametrize("action", ["accept", "decline"])
def test_nobody_else_can_answer_it(studio: StudioPeople, other_studio: StudioPeople, who: str, action: str) -> None:
    # given: a person invited to the studio as owner
    person = new_user()
    invited(studio, person, "owner")
    someone = {
        "stranger": new_user(),
        "studio-owner": studio.owner,
        "member-of-the-studio": studio.staff,
        "another-invitee": other_studio.owner,
    }[who]
    if who == "another-invitee":
        invited(other_studio, person, "staff")  # they have an invitation, but elsewhere
    before = roles_of(studio.org), pending_of(studio.org)
    # when: someone else posts the answer
    url = accept_url(studio.org) if action == "accept" else decline_url(studio.org)
    refused = signed_in(someone).post(url, {"nonce": "d" * 24})
    # then: 404, and nothing changed
    assert refused.status_code == 404 and "Invitation not found" in text(refused)
    assert (roles_of(studio.org), pending_of(studio.org)) == before
    assert audits_of(studio.org, f"membership.{action}") == []


def test_an_unknown_studio_is_a_404_and_anonymous_visitors_go_to_the_login(studio: StudioPeople) -> None:
    person = new_user()
    assert signed_in(person).post("/studio/invitations/999999999/accept", {"nonce": "e" * 24}).status_code == 404
    for response in (Client().get(PAGE), Client().post(accept_url(studio.org), {"nonce": "f" * 24})):
        assert response.status_code == 302 and urlsplit(response["Location"]).path == "/studio/login/"


def test_an_answer_needs_the_csrf_token(studio: StudioPeople) -> None:
    person = new_user()
    invited(studio, person, "staff")
    client = Client(enforce_csrf_checks=True)
    client.force_login(person)
    assert client.post(accept_url(studio.org), {"nonce": "g" * 24}).status_code == 403
    assert pending_of(studio.org) == {person.pk: "staff"} and person.pk not in roles_of(studio.org)


def test_a_member_elsewhere_sees_the_invitation_on_the_picker(studio: StudioPeople, other_studio: StudioPeople) -> None:
    # given: B's photographer, invited to A
    invited(studio, other_studio.photographer, "staff")
    client = signed_in(other_studio.photographer)
    # then: their overview (of B) points to the invitation
    overview = client.get("/studio/")
    assert overview.status_code == 200 and f"join {studio.org.name}" in text(overview)
    # and: the picker offers only the studio they are a member of, and points to the invitation
    picker = text(client.get("/studio/choose/"))
    assert f'value="{other_studio.org.pk}"' in picker and f'value="{studio.org.pk}"' not in picker
    assert "pending invitation" in picker


def test_an_acceptance_grants_only_the_role_the_page_showed(studio: StudioPeople) -> None:
    # given: a person invited as staff, with their invitations page open
    person = new_user()
    invited(studio, person, "staff")
    client = signed_in(person)
    page = client.get(PAGE)
    assert shown_role(page, studio.org) == "staff"
    # when: the studio re-invites them as owner, and they press the Accept they were shown
    invited(studio, person, "owner")
    stale = client.post(accept_url(studio.org), {"nonce": form_nonce_on(page, accept_url(studio.org)), "role": "staff"})
    # then: 409, nothing granted, the new offer still pending
    assert stale.status_code == 409 and "The invitation changed" in text(stale)
    assert "offers the owner role" in text(stale)
    assert person.pk not in roles_of(studio.org) and pending_of(studio.org) == {person.pk: "owner"}
    assert audits_of(studio.org, "membership.accept") == []
    # and: an acceptance that names no role grants nothing either
    bare = client.post(accept_url(studio.org), {"nonce": "h" * 24})
    assert bare.status_code == 409 and person.pk not in roles_of(studio.org)
    # and: the page, opened again, shows the owner offer, and accepting it works
    assert answer(client, accept_url(studio.org)).status_code == 303
    assert roles_of(studio.org)[person.pk] == "owner" and pending_of(studio.org) == {}


def test_a_member_elsewhere_lands_in_the_studio_they_accepted(studio: StudioPeople, other_studio: StudioPeople) -> None:
    # given: B's photographer, working in B (chosen), and in a third studio too, invited to A
    person = other_studio.photographer
    third = Organization.objects.create(slug=f"third-{person.pk}", name="Third Studio")
    new_member(third, "staff", person)
    invited(studio, person, "staff")
    client = signed_in(person)
    assert client.post("/studio/choose/", {"studio": other_studio.org.pk}).status_code == 303
    # when: they accept A's invitation, and the form is sent again
    page = client.get(PAGE)
    form = (form_nonce_on(page, accept_url(studio.org)), shown_role(page, studio.org))
    first = answer(client, accept_url(studio.org), form)
    again = answer(client, accept_url(studio.org), form)
    # then: both land on A's overview, A chosen to work in, with the message once
    assert first.status_code == again.status_code == 303
    assert first["Location"] == again["Location"] == "/studio/"
    overview = client.get("/studio/")
    assert overview.status_code == 200 and f"{studio.org.name} (staff)" in text(overview)
    assert text(overview).count(f"You are now a member of {studio.org.name}, as staff.") == 1
    # and: the other studios are still theirs to switch to
    picker = text(client.get("/studio/choose/"))
    assert f'value="{other_studio.org.pk}"' in picker and f'value="{third.pk}"' in picker


def test_a_declined_invitation_leaves_the_chosen_studio_as_it_was(
    studio: StudioPeople, other_studio: StudioPeople
) -> None:
    person = other_studio.photographer
    invited(studio, person, "staff")
    client = signed_in(person)
    assert answer(client, decline_url(studio.org)).status_code == 303
    overview = client.get("/studio/")
    assert overview.status_code == 200 and f"{other_studio.org.name} (photographer)" in text(overview)


def test_after_choosing_their_first_password_they_are_told_their_username(studio: StudioPeople) -> None:
    # given: an address nobody uses, invited; its account has a username made from it, no password
    result = member_invite(tenant=studio.org, email="Maria.Lens@Example.com", role="photographer", actor=studio.owner)
    person = result.user
    assert result.created_user and not person.has_usable_password()
    # when: they open the e-mail's link and choose a password
    browser = Client()
    link = urlsplit(set_password_url(person)).path
    form_page = browser.get(link, follow=True)
    assert "Choose your password" in text(form_page)
    chosen = browser.post(
        form_page.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    )
    assert chosen.status_code == 302
    # then: the page after names their username, and its sign-in link fills it in
    done = text(browser.get(chosen["Location"]))
    assert "Your password is set" in done
    assert f"Your username is <strong>{person.username}</strong>" in done
    sign_in_link = f'href="/studio/login/?username={person.username}"'
    assert sign_in_link in done
    login_page = text(browser.get(f"/studio/login/?username={person.username}"))
    assert f'name="username" value="{person.username}"' in login_page
    # and: another browser opening the same page is told no username
    assert person.username not in text(Client().get(chosen["Location"]))
    # and: they sign in with it, and are led to their invitation
    signed = browser.post("/studio/login/", {"username": person.username, "password": NEW_PASSWORD})
    assert signed.status_code == 302
    assert urlsplit(browser.get("/studio/")["Location"]).path == PAGE


def test_the_sign_in_link_fills_in_only_a_username() -> None:
    # an address, markup, or a long value in the link: shown escaped, cut to a username's length
    page = text(Client().get("/studio/login/?username=%22%3E%3Cscript%3Ex%3C/script%3E"))
    assert "<script>x" not in page and 'value="&quot;&gt;&lt;script&gt;x&lt;/script&gt;"' in page
    long = text(Client().get("/studio/login/?username=" + "a" * 5000))
    assert "a" * 255 not in long
    # and: a password in the link is never put in the form
    with_password = text(Client().get("/studio/login/?username=kim&password=secret-pw"))
    assert "secret-pw" not in with_password
