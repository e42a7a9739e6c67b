"""A form acts for the studio its page showed: someone in several studios who switched studio in
another tab since (the chosen studio lives in the session, shared by every tab) is refused,
rather than renaming, inviting into or creating events in the studio they switched to."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from apps.catalog.models import Event
from apps.tenancy.context import tenant_context
from apps.tenancy.models import MembershipInvitation, Organization
from tests.web.studio.conftest import StudioPeople, form_nonce_on, new_member, signed_in, text

pytestmark = pytest.mark.django_db


def studio_field_on(page: object, action: str) -> str:
    """The studio id the page rendered into its form posting to `action`."""
    html = text(page)
    start = html.index(f'action="{action}"')
    form = html[start : html.index("</form>", start)]
    found = re.search(r'name="for_studio" value="(\d+)"', form)
    assert found, f"the form posting to {action} names no studio"
    return found.group(1)


def hidden_fields_on(page: object, action: str) -> dict[str, str]:
    """What the page's form posting to `action` sends unseen: its nonce and the studio it is for."""
    return {"nonce": form_nonce_on(page, action), "for_studio": studio_field_on(page, action)}


def owner_of_both_in_the_other_studio(studio: StudioPeople, other_studio: StudioPeople) -> Client:
    """`studio`'s owner, made an owner of `other_studio` too, signed in with `other_studio` chosen."""
    new_member(other_studio.org, "owner", user=studio.owner)
    client = signed_in(studio.owner)
    client.post("/studio/choose/", {"studio": other_studio.org.pk})
    return client


def test_a_settings_form_shown_for_one_studio_does_not_rename_the_one_chosen_since(
    studio: StudioPeople, other_studio: StudioPeople
) -> None:
    # given: an owner of both studios, whose tab shows the settings of the other studio
    client = owner_of_both_in_the_other_studio(studio, other_studio)
    page = client.get("/studio/settings/")
    assert other_studio.org.name in text(page)
    # and: in another tab they switch to their first studio
    client.post("/studio/choose/", {"studio": studio.org.pk})
    # when: the first tab's form is sent
    response = client.post(
        "/studio/settings/",
        {"name": "Other Studio Ltd", **hidden_fields_on(page, "/studio/settings/")},
    )
    # then: refused with a 409 that says which studio the form was for, and nothing is renamed
    assert response.status_code == 409
    assert f"This form was for {other_studio.org.name}" in text(response)
    assert f"Switch to {other_studio.org.name}</a>" in text(response)
    names = dict(Organization.objects.filter(pk__in=[studio.org.pk, other_studio.org.pk]).values_list("pk", "name"))
    assert names == {studio.org.pk: studio.org.name, other_studio.org.pk: other_studio.org.name}


def test_an_invitation_and_an_event_from_a_stale_tab_are_not_made_in_the_studio_chosen_since(
    studio: StudioPeople, other_studio: StudioPeople
) -> None:
    # given: an owner of both studios with the members and events pages of the other studio open
    client = owner_of_both_in_the_other_studio(studio, other_studio)
    members_page = client.get("/studio/members/")
    events_page = client.get("/studio/events/")
    client.post("/studio/choose/", {"studio": studio.org.pk})
    # when: both forms are sent after the switch
    invite = client.post(
        "/studio/members/",
        {
            "email": "new.owner@example.test",
            "role": "owner",
            **hidden_fields_on(members_page, "/studio/members/"),
        },
    )
    create = client.post(
        "/studio/events/",
        {
            "title": "Harbour Run",
            "date": "2026-06-01",
            "visibility": "public",
            **hidden_fields_on(events_page, "/studio/events/"),
        },
    )
    # then: both refused, and neither studio has the invitation or the event
    assert (invite.status_code, create.status_code) == (409, 409)
    for org in (studio.org, other_studio.org):
        with tenant_context(org.pk):
            assert not MembershipInvitation.objects.filter(email="new.owner@example.test").exists()
            assert not Event.objects.filter(title="Harbour Run").exists()


def test_every_studio_form_names_the_studio_its_page_showed(studio: StudioPeople) -> None:
    # given: the pages of an owner with forms that name nothing of the studio in their address
    client = signed_in(studio.owner)
    for path in ("/studio/settings/", "/studio/members/", "/studio/events/", "/studio/api-keys/", "/studio/wallet/"):
        page = client.get(path)
        # then: each of their forms carries the studio
        html = text(page)
        forms = html.count('method="post"') - html.count('action="/studio/logout/"')
        assert forms > 0 and html.count(f'name="for_studio" value="{studio.org.pk}"') == forms, path


@pytest.mark.parametrize("for_studio", ["", "  ", "abc", "1.5", "-3", "٣"])
def test_a_form_whose_studio_field_names_no_studio_at_all_is_refused_as_altered(
    studio: StudioPeople, for_studio: str
) -> None:
    # given: the owner, who may create events, and the events form with its studio field blanked
    # or altered (no studio page renders it so: every form carries its studio's id)
    client = signed_in(studio.owner)
    nonce = form_nonce_on(client.get("/studio/events/"), "/studio/events/")
    form = {"nonce": nonce, "title": "Mine", "date": "2026-06-01", "visibility": "public", "for_studio": for_studio}
    # when: it is sent
    response = client.post("/studio/events/", form)
    # then: a 400 saying the form was altered, not a 409 about "a studio you no longer work in"
    # (nobody left a studio), and no event is made
    assert response.status_code == 400
    assert "no longer work in" not in text(response)
    assert "incomplete or altered" in text(response)
    with tenant_context(studio.org.pk):
        assert not Event.objects.exists()


def test_a_form_for_a_studio_the_sender_is_not_in_still_reads_as_one_they_left(studio: StudioPeople) -> None:
    # given: the events form naming a studio id that is none of the owner's
    client = signed_in(studio.owner)
    nonce = form_nonce_on(client.get("/studio/events/"), "/studio/events/")
    form = {"nonce": nonce, "title": "Mine", "date": "2026-06-01", "visibility": "public", "for_studio": "999999999"}
    # when: it is sent
    response = client.post("/studio/events/", form)
    # then: the 409 that says the form was for a studio they no longer work in, nothing made
    assert response.status_code == 409
    assert "no longer work in" in text(response)
    with tenant_context(studio.org.pk):
        assert not Event.objects.exists()
