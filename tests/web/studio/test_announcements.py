"""Announcements: compose, send once, follow the asynchronous fan-out's counts."""

from __future__ import annotations

import pytest

from apps.notifications.models import Announcement, AnnouncementDelivery
from apps.notifications.services import TOPIC_SEND_REQUESTED, AttendeeIn, attendees_register
from apps.ops.killswitch import kill_switch_engage
from apps.outbox.models import OutboxMessage
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.helpers import drain_outbox
from tests.web.studio.conftest import StudioPeople, form_nonce_on, new_event, signed_in, text

pytestmark = pytest.mark.django_db


def send_requests(org) -> int:
    with system_context("test"):
        return OutboxMessage.objects.filter(topic=TOPIC_SEND_REQUESTED, tenant_id=org.pk).count()


def announcements(org) -> list[Announcement]:
    with tenant_context(org.pk):
        return list(Announcement.objects.filter(tenant=org))


def with_attendees(studio: StudioPeople, n: int):
    event = new_event(studio.org, title="City Marathon")
    with tenant_context(studio.org.pk):
        attendees_register(
            tenant=studio.org,
            event_id=event.pk,
            attendees=[AttendeeIn(email=f"runner{i}@example.test", email_consent=False) for i in range(n)],
            actor_label="test",
        )
    return event


@pytest.mark.django_db(transaction=True)  # the fan-out commits one transaction per chunk
def test_compose_and_send_now_twice_creates_one_announcement_and_one_send_request(studio: StudioPeople) -> None:
    # given: an event with three attendees and the compose form
    event = with_attendees(studio, 3)
    client = signed_in(studio.owner)
    nonce = form_nonce_on(client.get("/studio/announcements/"), "/studio/announcements/")
    form = {"nonce": nonce, "event": str(event.pk), "title": "Photos are up", "body": "Find yours.", "send_now": "on"}
    # when: it is submitted twice
    first = client.post("/studio/announcements/", form)
    second = client.post("/studio/announcements/", form)
    # then: one announcement, sent once
    assert first.status_code == second.status_code == 303 and first["Location"] == second["Location"]
    [announcement] = announcements(studio.org)
    assert first["Location"] == f"/studio/announcements/{announcement.pk}/"
    assert announcement.send_requested_at is not None
    assert send_requests(studio.org) == 1
    # and: its page says it is sending, until the fan-out has run
    page = text(client.get(first["Location"]))
    assert 'class="status-sending">sending<' in page and "in progress" in page
    assert drain_outbox() == [TOPIC_SEND_REQUESTED]  # the fan-out's consumer, as a worker runs it
    page = text(client.get(first["Location"]))
    assert 'class="status-sent">sent<' in page and "3 (delivered 3, failed 0, pending 0)" in page
    listing = text(client.get("/studio/announcements/"))
    assert "Photos are up" in listing and 'class="status-sent" data-label="Status">sent<' in listing


def test_a_draft_is_sent_from_its_page_once(studio: StudioPeople) -> None:
    event = with_attendees(studio, 2)
    client = signed_in(studio.staff)  # staff manage announcements, as in the API
    created = client.post(
        "/studio/announcements/", {"nonce": "d" * 24, "event": str(event.pk), "title": "Soon", "body": "Stay tuned."}
    )
    assert created.status_code == 303
    [draft] = announcements(studio.org)
    assert draft.send_requested_at is None and send_requests(studio.org) == 0
    page = client.get(created["Location"])
    assert 'class="status-draft">draft<' in text(page) and "Send to 2 attendees" in text(page)
    action = f"/studio/announcements/{draft.pk}/send"
    nonce = form_nonce_on(page, action)
    assert client.post(action, {"nonce": nonce}).status_code == 303
    assert client.post(action, {"nonce": nonce}).status_code == 303
    assert send_requests(studio.org) == 1
    # a second, fresh send form changes nothing either (the service sends once)
    assert client.post(action, {"nonce": "e" * 24}).status_code == 303
    assert send_requests(studio.org) == 1
    assert "Send to" not in text(client.get(created["Location"]))


def test_sending_from_a_tab_opened_before_it_was_sent_says_it_went_out_already(studio: StudioPeople) -> None:
    # given: a draft's page open in two tabs, and the draft sent from the first
    event = with_attendees(studio, 2)
    client = signed_in(studio.owner)
    created = client.post(
        "/studio/announcements/", {"nonce": "d" * 24, "event": str(event.pk), "title": "Soon", "body": "Stay tuned."}
    )
    [draft] = announcements(studio.org)
    action = f"/studio/announcements/{draft.pk}/send"
    first, second = client.get(created["Location"]), client.get(created["Location"])
    client.post(action, {"nonce": form_nonce_on(first, action)}, follow=True)
    # when: the second tab's Send is pressed
    sent_again = client.post(action, {"nonce": form_nonce_on(second, action)}, follow=True)
    # then: the page says it had gone out already and nothing more is sent
    page = text(sent_again)
    assert "This announcement was sent already" in page and "nothing more is sent" in page
    assert "Announcement sent: its deliveries are being written" not in page
    assert send_requests(studio.org) == 1


def test_bad_announcement_input_writes_nothing(studio: StudioPeople, other_studio: StudioPeople) -> None:
    mine = new_event(studio.org)
    theirs = new_event(other_studio.org)
    client = signed_in(studio.owner)
    empty = client.post("/studio/announcements/", {"nonce": "a" * 24, "event": str(mine.pk), "title": "", "body": ""})
    assert empty.status_code == 400 and "This field is required." in text(empty)
    foreign = client.post(
        "/studio/announcements/", {"nonce": "b" * 24, "event": str(theirs.pk), "title": "Hi", "body": "there"}
    )
    assert foreign.status_code == 400 and "Select a valid choice" in text(foreign)
    assert announcements(studio.org) == [] and announcements(other_studio.org) == []


def test_photographers_cannot_announce(studio: StudioPeople) -> None:
    event = new_event(studio.org)
    response = signed_in(studio.photographer).post(
        "/studio/announcements/", {"nonce": "a" * 24, "event": str(event.pk), "title": "Hi", "body": "there"}
    )
    assert response.status_code == 403
    assert announcements(studio.org) == []


def test_another_studios_announcement_is_not_found(studio: StudioPeople, other_studio: StudioPeople) -> None:
    event = new_event(other_studio.org)
    with tenant_context(other_studio.org.pk):
        theirs = Announcement.objects.create(tenant=other_studio.org, event=event, title="Theirs", body="x")
    client = signed_in(studio.owner)
    assert client.get(f"/studio/announcements/{theirs.pk}/").status_code == 404
    assert client.post(f"/studio/announcements/{theirs.pk}/send", {"nonce": "a" * 24}).status_code == 404
    assert send_requests(other_studio.org) == 0


def test_the_fanout_kill_switch_is_explained_and_sending_waits(studio: StudioPeople) -> None:
    event = with_attendees(studio, 1)
    kill_switch_engage(capability="fanout", reason="mail provider incident", actor_label="test")
    client = signed_in(studio.owner)
    assert "Announcement delivery is paused" in text(client.get("/studio/announcements/"))
    created = client.post(
        "/studio/announcements/",
        {"nonce": "a" * 24, "event": str(event.pk), "title": "Hi", "body": "there", "send_now": "on"},
    )
    assert created.status_code == 303 and send_requests(studio.org) == 1
    page = text(client.get(created["Location"]))
    assert "This announcement goes out once it resumes." in page and 'class="status-sending">sending<' in page
    with tenant_context(studio.org.pk):
        assert AnnouncementDelivery.objects.count() == 0


@pytest.mark.django_db(transaction=True)  # the fan-out commits one transaction per chunk
def test_the_page_says_how_many_got_an_email_and_how_many_see_it_on_their_page_only(studio: StudioPeople) -> None:
    # given: an event with two attendees who agreed to e-mail and three who did not
    event = with_attendees(studio, 3)
    with tenant_context(studio.org.pk):
        attendees_register(
            tenant=studio.org,
            event_id=event.pk,
            attendees=[AttendeeIn(email=f"fan{i}@example.test", email_consent=True) for i in range(2)],
            actor_label="test",
        )
    client = signed_in(studio.owner)
    nonce = form_nonce_on(client.get("/studio/announcements/"), "/studio/announcements/")
    form = {"nonce": nonce, "event": str(event.pk), "title": "Prints", "body": "20% off.", "send_now": "on"}
    # when: the announcement is sent and fanned out
    page_url = client.post("/studio/announcements/", form)["Location"]
    assert TOPIC_SEND_REQUESTED in drain_outbox()  # the fan-out, then its e-mails, as the workers run them
    # then: the five recipients are split by how they were told, not all counted as e-mailed
    page = text(client.get(page_url))
    assert "5 (delivered 5, failed 0, pending 0)" in page
    assert "2 by e-mail; 3 on their attendee page only" in page


def test_a_body_with_a_control_character_is_a_field_error_and_writes_nothing(studio: StudioPeople) -> None:
    # given: the compose form of a studio with an event
    event = new_event(studio.org, title="City Marathon")
    client = signed_in(studio.owner)
    refused = "Control characters (including text-direction overrides) are not allowed; line breaks and tabs are."
    form = {
        "nonce": form_nonce_on(client.get("/studio/announcements/"), "/studio/announcements/"),
        "event": str(event.pk),
        "title": "Photos are up",
        "body": "Find\x11 yours.",
    }
    # when: the body holds a control character
    response = client.post("/studio/announcements/", form)
    # then: the form comes back with the error on the body, and nothing is stored
    assert response.status_code == 400
    assert response.context["form"].errors["body"] == [refused]
    assert refused in text(response)
    assert announcements(studio.org) == []
    # and: a body typed in the textarea (CR LF line breaks) is stored with its line breaks as "\n"
    form["body"] = "Find yours.\r\nThanks"
    form["nonce"] = form_nonce_on(response, "/studio/announcements/")
    assert client.post("/studio/announcements/", form).status_code == 303
    assert [a.body for a in announcements(studio.org)] == ["Find yours.\nThanks"]
