"""An event's attendees on the studio dashboard: owners and staff list them with their e-mail
choices, drop-in face and signed page link, and register pasted ones once; bad lines are
refused with their line numbers and nothing is written. "Replace link" replaces one attendee's
link once per form; another event's or studio's attendee is a 404."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.notifications.models import Attendee
from apps.notifications.selectors import attendee_token
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.web.studio.conftest import StudioPeople, form_nonce_on, new_event, signed_in, text

pytestmark = pytest.mark.django_db


def attendees(org: Any) -> list[tuple[str, str, bool]]:
    with tenant_context(org.pk):
        return list(Attendee.objects.order_by("email").values_list("email", "name", "email_consent"))


def test_staff_register_pasted_attendees_once_and_see_their_links(studio: StudioPeople) -> None:
    # given: an event and its (empty) attendees page, linked from the event page
    event = new_event(studio.org)
    action = f"/studio/events/{event.pk}/attendees"
    staff = signed_in(studio.staff)
    assert f'href="{action}"' in text(staff.get(f"/studio/events/{event.pk}/"))
    page = staff.get(action)
    assert page.status_code == 200 and "Nobody registered yet." in text(page)
    # when: three lines are pasted (comma, tab, bare e-mail) with consent, and the form resent
    form = {
        "nonce": form_nonce_on(page, action),
        "lines": "Ann@Example.com, Ann Example\nbob@example.com\tBob\n\ncarl@example.com\n",
        "email_consent": "on",
    }
    first, second = staff.post(action, form), staff.post(action, form)
    # then: registered once, lower-cased, with consent, audited once
    assert (first.status_code, second.status_code) == (303, 303)
    assert attendees(studio.org) == [
        ("ann@example.com", "Ann Example", True),
        ("bob@example.com", "Bob", True),
        ("carl@example.com", "", True),
    ]
    with system_context("test"):
        assert AuditLog.objects.filter(action="attendees.register").count() == 1
    # and: the list shows each with the signed link to their page
    listing = text(staff.get(action))
    with tenant_context(studio.org.pk):
        ann = Attendee.objects.get(email="ann@example.com")
    assert "Attendees of" in listing and "(3)" in listing
    assert f"/attendee/{attendee_token(tenant_id=studio.org.pk, attendee_id=ann.pk)}/" in listing


def test_the_message_counts_the_attendees_added_in_words_that_fit(studio: StudioPeople) -> None:
    event = new_event(studio.org)
    action = f"/studio/events/{event.pk}/attendees"
    owner = signed_in(studio.owner)

    def register(lines: str) -> str:
        response = owner.post(action, {"nonce": form_nonce_on(owner.get(action), action), "lines": lines}, follow=True)
        assert response.status_code == 200
        return text(response)

    # when: one attendee is registered, then two more with the first again
    one = register("ann@example.com")
    three = register("ann@example.com\nbob@example.com\ncarl@example.com")
    # then: each message counts them in words that fit the number, without "(s)"
    assert "1 attendee added, 0 updated." in one
    assert "2 attendees added, 1 updated." in three
    assert "(s)" not in one + three


def test_bad_lines_are_named_and_nothing_is_written(studio: StudioPeople) -> None:
    event = new_event(studio.org)
    action = f"/studio/events/{event.pk}/attendees"
    owner = signed_in(studio.owner)
    page = owner.get(action)
    refused = owner.post(
        action,
        {"nonce": form_nonce_on(page, action), "lines": "ann@example.com\nnot an address\nANN@example.com"},
    )
    body = text(refused)
    assert refused.status_code == 400
    assert "Line 2: “not an address” is not an e-mail address." in body
    assert "Line 3: ann@example.com is listed twice." in body
    assert attendees(studio.org) == []


def test_photographers_and_other_studios_cannot_reach_the_attendees(
    studio: StudioPeople, other_studio: StudioPeople
) -> None:
    event = new_event(studio.org)
    action = f"/studio/events/{event.pk}/attendees"
    assert signed_in(studio.photographer).get(action).status_code == 403
    assert signed_in(other_studio.owner).get(action).status_code == 404


def test_pasting_known_attendees_without_the_consent_box_keeps_their_consent(studio: StudioPeople) -> None:
    # given: Ann registered with e-mail consent
    event = new_event(studio.org)
    action = f"/studio/events/{event.pk}/attendees"
    owner = signed_in(studio.owner)
    page = owner.get(action)
    owner.post(action, {"nonce": form_nonce_on(page, action), "lines": "ann@example.com", "email_consent": "on"})
    # when: Ann and Bob are pasted with the box unticked
    page = owner.get(action)
    response = owner.post(action, {"nonce": form_nonce_on(page, action), "lines": "ann@example.com\nbob@example.com"})
    # then: Ann keeps her consent; Bob is registered without one
    assert response.status_code == 303
    assert attendees(studio.org) == [("ann@example.com", "", True), ("bob@example.com", "", False)]


def test_staff_replace_an_attendees_link_once_and_the_list_shows_the_new_one(studio: StudioPeople) -> None:
    # given: Ann on the attendees page, her link listed
    event = new_event(studio.org)
    action = f"/studio/events/{event.pk}/attendees"
    staff = signed_in(studio.staff)
    staff.post(action, {"nonce": form_nonce_on(staff.get(action), action), "lines": "ann@example.com"})
    with tenant_context(studio.org.pk):
        ann = Attendee.objects.get(email="ann@example.com")
    old = f"/attendee/{attendee_token(tenant_id=studio.org.pk, attendee_id=ann.pk)}/"
    page = staff.get(action)
    assert old in text(page) and "Replace link" in text(page)
    # when: staff press her "Replace link" button, and the browser sends the form twice
    reset = f"{action}/{ann.pk}/reset-link"
    form = {"nonce": form_nonce_on(page, reset)}
    first, second = staff.post(reset, form), staff.post(reset, form)
    # then: back to the list, which says so and shows her new link instead of the old one
    assert (first.status_code, first["Location"]) == (303, action)
    assert (second.status_code, second["Location"]) == (303, action)
    listing = text(staff.get(action))
    new = f"/attendee/{attendee_token(tenant_id=studio.org.pk, attendee_id=ann.pk, generation=1)}/"
    assert "The link of ann@example.com is replaced" in listing
    assert new in listing and old not in listing
    # and: replaced once, audited once; the old link opens nothing, the new one her page
    with tenant_context(studio.org.pk):
        assert Attendee.objects.get(pk=ann.pk).link_generation == 1
    with system_context("test"):
        assert (
            AuditLog.objects.filter(action="attendee.link_replace", actor_label=f"user:{studio.staff.pk}").count() == 1
        )
    assert Client().get(old).status_code == 404 and Client().get(new).status_code == 200


def test_replacing_the_link_of_an_attendee_of_another_event_or_studio_is_a_404_page(
    studio: StudioPeople, other_studio: StudioPeople
) -> None:
    # given: Ann at an event of the studio, Bob at another studio's event, and a second event
    event, other_event = new_event(studio.org), new_event(studio.org)
    theirs = new_event(other_studio.org)
    owner = signed_in(studio.owner)
    action = f"/studio/events/{event.pk}/attendees"
    owner.post(action, {"nonce": form_nonce_on(owner.get(action), action), "lines": "ann@example.com"})
    other = signed_in(other_studio.owner)
    their_action = f"/studio/events/{theirs.pk}/attendees"
    other.post(their_action, {"nonce": form_nonce_on(other.get(their_action), their_action), "lines": "bob@x.org"})
    with system_context("test"):
        ann, bob = Attendee.objects.get(email="ann@example.com"), Attendee.objects.get(email="bob@x.org")
    # when: the owner replaces Ann's link under the other event, Bob's under each, and the
    # other studio's owner Ann's
    attempts = [
        (owner, other_event.pk, ann.pk),
        (owner, event.pk, bob.pk),
        (owner, theirs.pk, bob.pk),
        (other, event.pk, ann.pk),
    ]
    for client, event_id, attendee_id in attempts:
        response = client.post(f"/studio/events/{event_id}/attendees/{attendee_id}/reset-link", {"nonce": "n1"})
        # then: a 404 page each time
        assert response.status_code == 404, (event_id, attendee_id)
    # and: nothing changed; a photographer may not replace a link at all
    photographer = signed_in(studio.photographer)
    assert photographer.post(f"{action}/{ann.pk}/reset-link", {"nonce": "n2"}).status_code == 403
    with system_context("test"):
        assert list(Attendee.objects.values_list("link_generation", flat=True)) == [0, 0]
        assert not AuditLog.objects.filter(action="attendee.link_replace").exists()
