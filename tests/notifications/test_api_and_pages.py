"""The studio's attendees and announcements API (replacing an attendee's link included), and the
attendee's pages (signed link)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

from apps.notifications.models import Announcement, Attendee
from apps.notifications.selectors import attendee_link, attendee_token
from apps.notifications.services import announcement_fanout
from apps.outbox.models import OutboxMessage
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.factories.catalog import EventFactory
from tests.factories.tenancy import MembershipFactory, UserFactory
from tests.notifications.helpers import event_with_attendees, notifications_of, sent_announcement

pytestmark = pytest.mark.django_db(transaction=True)


def post(client: Any, path: str, body: Any = None, *, key: str | None = None) -> Any:
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()))


def an_event(org: Any) -> Any:
    with tenant_context(org.pk):
        return EventFactory(tenant=org)


def attendees() -> list[Attendee]:
    with system_context("test: attendees"):
        return list(Attendee.objects.order_by("email"))


def test_a_studio_registers_attendees_then_updates_them(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    api = tenant_a.client()
    path = f"/api/v1/events/{event.pk}/attendees"
    body = {
        "attendees": [
            {"email": "Ann@Example.com", "name": "Ann", "email_consent": True},
            {"email": "bob@example.com"},
        ]
    }
    first = post(api, path, body, key="import-1")
    assert first.status_code == 200, first.content
    assert first.json() == {"created": 2, "updated": 0}
    assert post(api, path, body, key="import-1")["Idempotent-Replayed"] == "true"
    # when: a second import gives Bob consent and adds Cy
    again = post(api, path, {"attendees": [{"email": "BOB@example.com", "email_consent": True}, {"email": "cy@x.org"}]})
    assert again.json() == {"created": 1, "updated": 1}
    rows = attendees()
    assert [(a.email, a.name, a.email_consent, a.consent_recorded_at is not None) for a in rows] == [
        ("ann@example.com", "Ann", True, True),
        ("bob@example.com", "", True, True),
        ("cy@x.org", "", False, False),
    ]
    listed = api.get(path).json()
    assert listed["count"] == 3 and [a["email"] for a in listed["results"]] == [
        "ann@example.com",
        "bob@example.com",
        "cy@x.org",
    ]
    # and: each carries its signed links, which open that attendee's pages
    ann = listed["results"][0]
    inbox = Client().get(urlsplit(ann["inbox_url"]).path)
    assert inbox.status_code == 200 and "ann@example.com" in inbox.content.decode()
    assert Client().get(urlsplit(ann["dropin_url"]).path).status_code == 200
    # and: once Ann asks for photo alerts on her drop-in page, the list says since when
    assert ann["photo_alerts_at"] is None
    Client().post(urlsplit(ann["dropin_url"]).path + "/alerts", {"alerts": "on"})
    assert api.get(path).json()["results"][0]["photo_alerts_at"] is not None


def test_an_omitted_consent_keeps_what_was_recorded_and_false_withdraws_it(tenant_a: Any) -> None:
    # given: Ann consented; Bob did not
    event = an_event(tenant_a.org)
    api = tenant_a.client()
    path = f"/api/v1/events/{event.pk}/attendees"
    people = [{"email": "ann@example.com", "email_consent": True}, {"email": "bob@example.com"}]
    assert post(api, path, {"attendees": people}).status_code == 200
    recorded_at = attendees()[0].consent_recorded_at
    # when: both are sent again without `email_consent` (a name change), with a new attendee
    renamed = [{"email": "ann@example.com", "name": "Ann"}, {"email": "bob@example.com", "name": "Bob"}]
    again = post(api, path, {"attendees": [*renamed, {"email": "cy@example.com"}]})
    # then: Ann's consent and its time are kept, Bob still has none, Cy has none
    assert again.json() == {"created": 1, "updated": 2}
    assert [(a.name, a.email_consent, a.consent_recorded_at) for a in attendees()] == [
        ("Ann", True, recorded_at),
        ("Bob", False, None),
        ("", False, None),
    ]
    # and: an explicit false withdraws Ann's consent
    assert post(api, path, {"attendees": [{"email": "ann@example.com", "email_consent": False}]}).status_code == 200
    assert (attendees()[0].email_consent, attendees()[0].consent_recorded_at) == (False, None)


def test_an_unsubscribed_attendee_stays_unsubscribed_after_a_reimport(tenant_a: Any) -> None:
    event, people = event_with_attendees(tenant_a.org, consenting=1)
    token = attendee_token(tenant_id=tenant_a.org.pk, attendee_id=people[0].pk)
    assert Client().post(f"/attendee/{token}/unsubscribe").status_code == 200
    body = {"attendees": [{"email": people[0].email, "email_consent": True}]}
    assert post(tenant_a.client(), f"/api/v1/events/{event.pk}/attendees", body).status_code == 200
    assert attendees()[0].unsubscribed_at is not None


@pytest.mark.parametrize(
    "body",
    [
        {"attendees": []},
        {"attendees": [{"email": "not-an-email"}]},
        {"attendees": [{"email": "a@x.org"}, {"email": "A@x.org"}]},
        {"attendees": [{"email": "a@x.org", "extra": 1}]},
        {"attendees": [{"email": f"p{i}@x.org"} for i in range(1001)]},
        {"attendees": "a@x.org"},
        {"people": []},
    ],
)
def test_bad_imports_get_a_problem_and_write_nothing(tenant_a: Any, body: Any) -> None:
    event = an_event(tenant_a.org)
    response = post(tenant_a.client(), f"/api/v1/events/{event.pk}/attendees", body)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert attendees() == []


def test_another_studios_event_is_not_found(tenant_a: Any, tenant_b: Any) -> None:
    event = an_event(tenant_b.org)
    api = tenant_a.client()
    response = post(api, f"/api/v1/events/{event.pk}/attendees", {"attendees": [{"email": "a@x.org"}]})
    assert response.status_code == 404 and response.json()["type"].endswith("event-not-found")
    assert api.get(f"/api/v1/events/{event.pk}/attendees").status_code == 404
    created = post(api, "/api/v1/announcements", {"event_id": event.pk, "title": "t", "body": "b"})
    assert created.status_code == 400 and created.json()["type"].endswith("unknown-event")
    assert attendees() == []


def test_a_photographer_may_not_announce(tenant_a: Any) -> None:
    event = an_event(tenant_a.org)
    photographer = UserFactory()
    MembershipFactory(tenant=tenant_a.org, user=photographer, role="photographer")
    client = Client()
    client.force_login(photographer)
    response = client.post(
        "/api/v1/announcements",
        {"event_id": event.pk, "title": "t", "body": "b"},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="k",
        HTTP_X_TENANT=tenant_a.org.slug,
    )
    assert response.status_code in (403, 404), response.content
    with system_context("test"):
        assert not Announcement.objects.exists()


def test_a_studio_creates_sends_and_follows_an_announcement(tenant_a: Any) -> None:
    event, _ = event_with_attendees(tenant_a.org, consenting=0, silent=3)
    api = tenant_a.client()
    created = post(api, "/api/v1/announcements", {"event_id": event.pk, "title": "Online!", "body": "Go look."})
    assert created.status_code == 201, created.content
    announcement = created.json()
    assert (announcement["status"], announcement["recipients"]) == ("draft", 0)
    # when: sent twice (two keys)
    sent = post(api, f"/api/v1/announcements/{announcement['id']}/send")
    assert post(api, f"/api/v1/announcements/{announcement['id']}/send").status_code == 202
    assert sent.status_code == 202 and sent.json()["status"] == "sending"
    with system_context("test"):
        assert OutboxMessage.objects.filter(topic="announcement.send_requested").count() == 1
    with tenant_context(tenant_a.org.pk):
        announcement_fanout(announcement_id=announcement["id"])
    # then: followed to the end
    detail = api.get(f"/api/v1/announcements/{announcement['id']}").json()
    assert (detail["status"], detail["recipients"], detail["delivered"]) == ("sent", 3, 3)
    assert api.get("/api/v1/announcements").json()["results"][0]["id"] == announcement["id"]
    assert api.get("/api/v1/announcements/999999").status_code == 404
    assert post(api, "/api/v1/announcements/999999/send").status_code == 404


@pytest.mark.parametrize(
    "body",
    [{"title": "t", "body": "b"}, {"event_id": 1, "title": "", "body": "b"}, {"event_id": 1, "title": "t", "x": 1}],
)
def test_bad_announcements_get_a_problem(tenant_a: Any, body: Any) -> None:
    response = post(tenant_a.client(), "/api/v1/announcements", body)
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"


def test_the_attendee_reads_their_notifications_and_marks_them_read(tenant_a: Any) -> None:
    event, people = event_with_attendees(tenant_a.org, consenting=0, silent=1)
    for title in ("First news", "Second news"):
        announcement = sent_announcement(tenant_a.org, event, title=title)
        with tenant_context(tenant_a.org.pk):
            announcement_fanout(announcement_id=announcement.pk)
    link = attendee_link(tenant_id=tenant_a.org.pk, attendee_id=people[0].pk, generation=0)
    inbox = link.split("://", 1)[1].split("/", 1)[1]
    browser = Client()
    page = browser.get(f"/{inbox}")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Second news" in text and "First news" in text and "2 unread" in text
    # when: one is marked read, then all
    first, _ = notifications_of(tenant_a.org)
    assert browser.post(f"/{inbox}read", {"notification": first.pk}).status_code == 303
    assert [n.read_at is not None for n in notifications_of(tenant_a.org)] == [True, False]
    read_at = notifications_of(tenant_a.org)[0].read_at
    assert browser.post(f"/{inbox}read").status_code == 303
    # then: both read; the first keeps its first read time
    after = notifications_of(tenant_a.org)
    assert all(n.read_at for n in after) and after[0].read_at == read_at
    assert "Nothing unread" in browser.get(f"/{inbox}").content.decode()
    assert browser.post(f"/{inbox}read", {"notification": "x"}).status_code == 400


def test_one_click_unsubscribe_and_bad_links(tenant_a: Any) -> None:
    _, people = event_with_attendees(tenant_a.org, consenting=1)
    token = attendee_token(tenant_id=tenant_a.org.pk, attendee_id=people[0].pk)
    browser = Client()
    assert "Unsubscribe" in browser.get(f"/attendee/{token}/unsubscribe").content.decode()
    assert attendees()[0].unsubscribed_at is None  # a GET changes nothing
    # when: a mail client's RFC 8058 one-click POST
    response = browser.post(f"/attendee/{token}/unsubscribe", {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200 and "no more e-mails about this event" in response.content.decode()
    assert attendees()[0].unsubscribed_at is not None
    # and: a tampered or foreign token is a 404 problem
    for bad in (token[:-2] + "xx", "garbage", attendee_token(tenant_id=tenant_a.org.pk, attendee_id=999999)):
        page = browser.get(f"/attendee/{bad}/")
        assert page.status_code == 404 and page["Content-Type"] == "application/problem+json"


def reset_link_path(event_id: int, attendee_id: int) -> str:
    return f"/api/v1/events/{event_id}/attendees/{attendee_id}/reset-link"


def link_resets() -> list[AuditLog]:
    with system_context("test: audit"):
        return list(AuditLog.objects.filter(action="attendee.link_replace").order_by("id"))


def test_the_studio_replaces_an_attendees_link_once_per_key_and_gets_the_new_links(tenant_a: Any) -> None:
    # given: an attendee and their links as the list shows them
    event, people = event_with_attendees(tenant_a.org, consenting=1)
    api = tenant_a.client()
    listing = f"/api/v1/events/{event.pk}/attendees"
    before = api.get(listing).json()["results"][0]
    # when: the studio replaces the link, and the request is retried with its key
    reset = post(api, reset_link_path(event.pk, people[0].pk), key="reset-1")
    again = post(api, reset_link_path(event.pk, people[0].pk), key="reset-1")
    # then: 200 with the attendee as the list now shows it, with new links
    assert reset.status_code == 200, reset.content
    body = reset.json()
    assert body == api.get(listing).json()["results"][0]
    assert body["inbox_url"] != before["inbox_url"] and body["dropin_url"] != before["dropin_url"]
    # and: the retry is a replay: replaced once, audited once, naming the caller
    assert (again.status_code, again["Idempotent-Replayed"], again.json()) == (200, "true", body)
    assert attendees()[0].link_generation == 1
    [audit] = link_resets()
    assert audit.actor_label.startswith("api_key:") and audit.target_id == str(people[0].pk)
    assert audit.data == {"generation": 1, "emailed": False, "event_id": event.pk}
    # and: the new links open the attendee's pages; the old ones no longer do, but still unsubscribe
    browser = Client()
    assert browser.get(urlsplit(body["inbox_url"]).path).status_code == 200
    assert browser.get(urlsplit(body["dropin_url"]).path).status_code == 200
    assert browser.get(urlsplit(before["inbox_url"]).path).status_code == 404
    assert browser.get(urlsplit(before["dropin_url"]).path).status_code == 404
    assert browser.get(urlsplit(before["inbox_url"]).path + "unsubscribe").status_code == 200
    # and: no e-mail from this path: the studio hands the new link on
    with system_context("test"):
        assert not OutboxMessage.objects.filter(topic="attendee.link_replaced").exists()


def test_resetting_the_link_of_an_attendee_of_another_event_or_studio_is_a_404_problem(
    tenant_a: Any, tenant_b: Any
) -> None:
    # given: Ann at an event of studio A, Bob at studio B, and another event of studio A
    event, [ann] = event_with_attendees(tenant_a.org, consenting=1)
    _, [bob] = event_with_attendees(tenant_b.org, consenting=1)
    other_event = an_event(tenant_a.org)
    api = tenant_a.client()
    # when: studio A resets Ann's link under its other event, Bob's, and an unknown attendee's
    for event_id, attendee_id in ((other_event.pk, ann.pk), (event.pk, bob.pk), (event.pk, 999_999)):
        response = post(api, reset_link_path(event_id, attendee_id))
        # then: a 404 problem each time
        assert response.status_code == 404, (event_id, attendee_id)
        assert response["Content-Type"] == "application/problem+json"
        assert response.json()["type"] == "/problems/attendee-not-found"
    # and: nothing changed or was audited
    assert [a.link_generation for a in attendees()] == [0, 0]
    assert link_resets() == []


def test_a_reset_needs_an_idempotency_key_and_a_managing_role(tenant_a: Any) -> None:
    event, [ann] = event_with_attendees(tenant_a.org, consenting=1)
    path = reset_link_path(event.pk, ann.pk)
    # when: the studio's API key posts without an Idempotency-Key
    missing = tenant_a.client().post(path, format="json")
    # then: the 400 problem of the protocol
    assert missing.status_code == 400 and missing.json()["type"] == "/problems/idempotency-key-missing"
    # when: a photographer of the studio asks
    photographer = UserFactory()
    MembershipFactory(tenant=tenant_a.org, user=photographer, role="photographer")
    client = Client()
    client.force_login(photographer)
    refused = client.post(
        path, {}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k", HTTP_X_TENANT=tenant_a.org.slug
    )
    # then: refused; nothing changed
    assert refused.status_code in (403, 404), refused.content
    assert attendees()[0].link_generation == 0 and link_resets() == []
