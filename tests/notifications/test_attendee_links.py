"""An attendee's signed link can be replaced: by the attendee ("Someone else has this link? Send me
a new one", e-mailed to their own address once) or by the studio (tests in test_api_and_pages.py
and tests/web/studio/test_attendees.py). Only the link of the current generation opens their
pages; a replaced one gets the 404 of a tampered link everywhere but on the unsubscribe page (an
old e-mail's one-click must keep working). Links sent before generations existed are generation 0
and keep working until replaced."""

from __future__ import annotations

import io
import threading
from datetime import timedelta
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import pytest
from django.core import mail, signing
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from apps.dropin import views as dropin_views
from apps.dropin.faces.fake import fake_face_image
from apps.dropin.models import AttendeeFace
from apps.dropin.services import dropin_job_process
from apps.notifications import attendee_links
from apps.notifications import views as notification_views
from apps.notifications.attendee_links import (
    LINK_REPLACED_CONSUMER,
    TOPIC_LINK_REPLACED,
    attendee_link_replace,
    attendee_link_reset,
)
from apps.notifications.models import Attendee, Notification, PhotoAlert
from apps.notifications.photo_alerts import attendee_photo_alerts_set, photo_alerts_send_due
from apps.notifications.selectors import ATTENDEE_SALT, attendee_token
from apps.notifications.services import announcement_fanout
from apps.outbox.models import OutboxMessage
from apps.outbox.unconsumed import outbox_requeue_unconsumed
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from config.celery_app import app as celery_app
from tests.commerce.helpers import drain_outbox
from tests.dropin.helpers import enrolled_face, photo_of
from tests.fixtures import backend_pid, wait_until_blocked
from tests.notifications.helpers import event_with_attendees, send_all_emails, sent_announcement
from tests.notifications.test_attendee_problem_pages import ATTENDEE_URLS, BROWSER

# The e-mail is sent by the outbox consumer, outside any transaction (it refuses inside one).
pytestmark = pytest.mark.django_db(transaction=True)


def token(org: Any, attendee: Attendee, generation: int = 0) -> str:
    return attendee_token(tenant_id=org.pk, attendee_id=attendee.pk, generation=generation)


def reload(attendee: Attendee) -> Attendee:
    with system_context("test: attendee"):
        return Attendee.objects.select_related("event").get(pk=attendee.pk)


def link_messages() -> list[OutboxMessage]:
    with system_context("test: outbox"):
        return list(OutboxMessage.objects.filter(topic=TOPIC_LINK_REPLACED).order_by("created_at", "id"))


def replacements(attendee: Attendee) -> list[AuditLog]:
    with system_context("test: audit"):
        return list(AuditLog.objects.filter(action="attendee.link_replace", target_id=str(attendee.pk)).order_by("id"))


def deliver() -> list[str]:
    """What the relay and a worker do: run the queued new-link messages through their consumer."""
    return drain_outbox(topics={TOPIC_LINK_REPLACED})


def ask_for_a_new_link(old: str) -> Any:
    response = Client().post(f"/attendee/{old}/new-link", **BROWSER)
    assert response.status_code == 303, response.content
    return response


def test_a_link_sent_before_links_had_generations_still_opens_every_page(tenant_a: Any) -> None:
    # given: an attendee's link as every e-mail carried it before generations existed ({"t", "a"})
    event, [ann] = event_with_attendees(tenant_a.org, consenting=1)
    old = signing.Signer(salt=ATTENDEE_SALT).sign_object({"t": tenant_a.org.pk, "a": ann.pk})
    # then: it is the generation-0 link, the one the studio still hands out
    assert token(tenant_a.org, ann) == old
    listed = tenant_a.client().get(f"/api/v1/events/{event.pk}/attendees").json()["results"][0]
    assert urlsplit(listed["inbox_url"]).path == f"/attendee/{old}/"
    # and: it opens every page
    browser = Client()
    for page in ("/", "/drop-in", "/unsubscribe"):
        assert browser.get(f"/attendee/{old}{page}").status_code == 200, page


def test_a_replaced_link_opens_nothing_but_unsubscribing(tenant_a: Any) -> None:
    # given: Ann, with a drop-in face, photo alerts on and an unread announcement, replaces her link
    event, [ann] = event_with_attendees(tenant_a.org, consenting=1)
    face = enrolled_face(tenant_a.org, event, "ann", email=ann.email)
    with tenant_context(tenant_a.org.pk), transaction.atomic():
        attendee_photo_alerts_set(tenant_id=tenant_a.org.pk, attendee_id=ann.pk, enabled=True, actor_label="test")
    with tenant_context(tenant_a.org.pk):
        announcement_fanout(announcement_id=sent_announcement(tenant_a.org, event).pk)
    old = token(tenant_a.org, ann)
    ask_for_a_new_link(old)

    # when: the old link is used on every page but unsubscribe, by a browser and by a script;
    # the selfie form also carries a real selfie (of someone else)
    def selfie() -> dict[str, Any]:
        image = SimpleUploadedFile("me.jpg", fake_face_image(["mallory"]), content_type="image/jpeg")
        return {"consent": "yes", "image": image}

    for method, page, data in [*ATTENDEE_URLS, ("post", "/drop-in", None)]:
        if page.startswith("/unsubscribe"):
            continue
        url = f"/attendee/{old}{page}"
        client = Client()
        form = (lambda: data) if data is not None else selfie
        shown = client.get(url, **BROWSER) if method == "get" else client.post(url, form() or {}, **BROWSER)
        answered = client.get(url) if method == "get" else client.post(url, form() or {})
        # then: the 404 of a tampered link, a page for the browser and the problem otherwise
        assert (shown.status_code, shown["Content-Type"]) == (404, "text/html; charset=utf-8"), url
        assert "This link is not valid." in shown.content.decode(), url
        assert answered.status_code == 404 and answered.json()["type"] == "/problems/attendee-link-invalid", url
    # and: nothing changed: her face, her alerts, her unread announcement, her link's generation
    with tenant_context(tenant_a.org.pk):
        assert list(AttendeeFace.objects.values_list("pk", "status")) == [(face.pk, "enrolled")]
        assert Notification.objects.get(attendee=ann).read_at is None
    after = reload(ann)
    assert after.photo_alerts_at is not None and after.unsubscribed_at is None
    assert after.link_generation == 1 and len(link_messages()) == 1
    # when: a mail client posts the old e-mail's one-click unsubscribe
    page = Client().get(f"/attendee/{old}/unsubscribe").content.decode()
    one_click = Client().post(f"/attendee/{old}/unsubscribe", {"List-Unsubscribe": "One-Click"})
    # then: it unsubscribes; its page masks her address and links to no page the old link cannot open
    assert one_click.status_code == 200 and reload(ann).unsubscribed_at is not None
    assert "f***@example.com" in page and ann.email not in page
    assert f'/attendee/{old}/"' not in page and "can only unsubscribe" in page
    # and: the new link opens her page
    assert Client().get(f"/attendee/{token(tenant_a.org, ann, 1)}/").status_code == 200


def test_a_link_of_a_generation_never_issued_is_refused_even_for_unsubscribing(tenant_a: Any) -> None:
    # given: links naming generation 1 (and a forged "g": 0) of an attendee still at generation 0
    _, [ann] = event_with_attendees(tenant_a.org, consenting=1)
    ahead = token(tenant_a.org, ann, 1)
    zero = signing.Signer(salt=ATTENDEE_SALT).sign_object({"t": tenant_a.org.pk, "a": ann.pk, "g": 0})
    # then: neither opens a page nor unsubscribes
    for bad in (ahead, zero):
        assert Client().get(f"/attendee/{bad}/").status_code == 404
        assert Client().post(f"/attendee/{bad}/unsubscribe").status_code == 404
    assert reload(ann).unsubscribed_at is None


def test_asking_for_a_new_link_emails_it_once_whatever_their_announcement_consent(tenant_a: Any) -> None:
    # given: Quinn, who never agreed to announcements by e-mail, on their page
    _, [quinn] = event_with_attendees(tenant_a.org, consenting=0, silent=1)
    old = token(tenant_a.org, quinn)
    inbox = Client().get(f"/attendee/{old}/").content.decode()
    assert "Someone else has this link? Send me a new one" in inbox
    assert f'action="/attendee/{old}/new-link"' in inbox
    # when: they ask for a new link
    asked = ask_for_a_new_link(old)
    # then: a page says it was e-mailed to their address, masked, and that this link stopped working
    sent_page = Client().get(asked["Location"], **BROWSER)
    body = sent_page.content.decode()
    assert sent_page.status_code == 200 and sent_page["Cache-Control"] == "private, no-store"
    assert "q***@example.com" in body and quinn.email not in body and "no longer works" in body
    assert Client().get(asked["Location"][:-3] + "xyz", **BROWSER).status_code == 404
    # and: the link moved on, one message commits with it, audited once
    assert reload(quinn).link_generation == 1
    [message] = link_messages()
    [audit] = replacements(quinn)
    assert (audit.actor_label, audit.data) == ("attendee (signed link)", {"generation": 1, "emailed": True})
    # when: a worker sends it, and the message is delivered a second time
    assert deliver() == [TOPIC_LINK_REPLACED]
    with tenant_context(tenant_a.org.pk):
        assert celery_app.tasks[LINK_REPLACED_CONSUMER](message_id=str(message.pk), payload=message.payload) is False
    # then: one e-mail, to their own address, with the new links, which open their pages
    [email] = mail.outbox
    new = token(tenant_a.org, quinn, 1)
    assert email.to == [quinn.email] and email.subject == f"Your new link for {reload(quinn).event.title}"
    assert f"/attendee/{new}/\n" in email.body and f"/attendee/{new}/drop-in\n" in email.body
    assert email.extra_headers["Message-ID"].startswith(f"<attendee-link.{message.pk}@")
    assert Client().get(f"/attendee/{new}/").status_code == 200
    assert Client().get(f"/attendee/{old}/").status_code == 404


def test_the_email_carries_the_link_current_when_it_is_sent(tenant_a: Any) -> None:
    # given: Ann asked for a new link, and before the worker sent it the studio replaced it again
    event, [ann] = event_with_attendees(tenant_a.org, consenting=1)
    ask_for_a_new_link(token(tenant_a.org, ann))
    with tenant_context(tenant_a.org.pk):
        attendee_link_reset(tenant_id=tenant_a.org.pk, event_id=event.pk, attendee_id=ann.pk, actor_label="test")
    # when: the worker sends the e-mail
    deliver()
    # then: it carries the link of generation 2, the one that works, not the one she was told of
    [email] = mail.outbox
    assert f"/attendee/{token(tenant_a.org, ann, 2)}/" in email.body
    assert f"/attendee/{token(tenant_a.org, ann, 1)}/" not in email.body


def test_a_second_click_with_the_replaced_link_replaces_nothing(tenant_a: Any) -> None:
    # given: Ann's link, replaced by her first click
    _, [ann] = event_with_attendees(tenant_a.org, consenting=1)
    old = token(tenant_a.org, ann)
    ask_for_a_new_link(old)
    # when: the second click of a double click lands after the first committed
    second = Client().post(f"/attendee/{old}/new-link", **BROWSER)
    # then: it holds a replaced link (the 404 page, which points to the newest link), and no second
    # replacement, message or e-mail follows
    assert second.status_code == 404 and "use the newest link you were sent" in second.content.decode()
    assert reload(ann).link_generation == 1
    assert len(link_messages()) == 1 and len(replacements(ann)) == 1
    deliver()
    assert len(mail.outbox) == 1


def test_two_requests_racing_with_one_link_replace_it_once(tenant_a: Any) -> None:
    # given: request A has replaced Ann's link in a transaction that has not committed yet
    _, [ann] = event_with_attendees(tenant_a.org, consenting=1)
    a_wrote, a_release = threading.Event(), threading.Event()
    b_pid: list[int] = []
    results: dict[str, bool] = {}
    errors: list[BaseException] = []
    publish = attendee_links.outbox_publish

    def publish_and_hold(**message: Any) -> Any:
        published = publish(**message)
        a_wrote.set()
        assert a_release.wait(120)
        return published

    def request(name: str) -> None:
        try:
            if name == "b":
                b_pid.append(backend_pid())
            with tenant_context(tenant_a.org.pk):
                results[name] = attendee_link_replace(tenant_id=tenant_a.org.pk, attendee_id=ann.pk, generation=0)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
            a_wrote.set()
        finally:
            connection.close()

    with mock.patch.object(attendee_links, "outbox_publish", side_effect=publish_and_hold):
        a = threading.Thread(target=request, args=("a",))
        a.start()
        assert a_wrote.wait(60)
        # when: request B, holding the same link, replaces it too and waits for A's row lock
        b = threading.Thread(target=request, args=("b",))
        b.start()
        wait_until_blocked(b_pid, b, "request B's replacement")
        a_release.set()
        a.join(60)
        b.join(60)
    # then: A replaced it; B found it replaced and wrote nothing
    assert errors == []
    assert results == {"a": True, "b": False}
    assert reload(ann).link_generation == 1
    assert len(link_messages()) == 1 and len(replacements(ann)) == 1


def test_a_lost_new_link_message_is_sent_again_and_a_sent_one_is_not(tenant_a: Any) -> None:
    # given: Ann and Bob asked for new links; Bob's e-mail went out, then the broker lost both
    # messages' copies after the relay published them (an hour ago)
    _, [ann, bob] = event_with_attendees(tenant_a.org, consenting=2)
    ask_for_a_new_link(token(tenant_a.org, bob))
    deliver()
    ask_for_a_new_link(token(tenant_a.org, ann))
    with system_context("test: the broker lost it"):
        OutboxMessage.objects.filter(topic=TOPIC_LINK_REPLACED).update(
            status=OutboxMessage.Status.PUBLISHED, published_at=timezone.now() - timedelta(hours=1)
        )
    # when: the lost-message sweep runs
    with system_context("test sweep"):
        sent_again = outbox_requeue_unconsumed(older_than_seconds=60, max_age_seconds=86_400, max_requeues=5, limit=100)
    # then: only Ann's message goes again, and the worker sends her one e-mail with her new link
    assert sent_again["attendee_link_emails"] == 1
    assert deliver() == [TOPIC_LINK_REPLACED]
    assert [m.to for m in mail.outbox] == [[bob.email], [ann.email]]
    assert f"/attendee/{token(tenant_a.org, ann, 1)}/" in mail.outbox[1].body


def test_announcements_and_photo_alerts_link_the_current_generation(tenant_a: Any) -> None:
    # given: Ann (e-mail consent, a drop-in face, photo alerts on), whose link the studio replaced
    event, [ann] = event_with_attendees(tenant_a.org, consenting=1)
    enrolled_face(tenant_a.org, event, "ann", email=ann.email)
    with tenant_context(tenant_a.org.pk), transaction.atomic():
        attendee_photo_alerts_set(tenant_id=tenant_a.org.pk, attendee_id=ann.pk, enabled=True, actor_label="test")
        attendee_link_reset(tenant_id=tenant_a.org.pk, event_id=event.pk, attendee_id=ann.pk, actor_label="test")
    current = token(tenant_a.org, ann, 1)
    # when: an announcement is e-mailed to her, and a new photo of her alerts her
    announcement = sent_announcement(tenant_a.org, event)
    with tenant_context(tenant_a.org.pk):
        announcement_fanout(announcement_id=announcement.pk)
    send_all_emails(announcement)
    _, job_id = photo_of(tenant_a.org, event, ["ann"], rendered=True)
    with tenant_context(tenant_a.org.pk):
        assert dropin_job_process(job_id=job_id).outcome == "succeeded"
    with system_context("test: alert"):
        due = PhotoAlert.objects.get(attendee_id=ann.pk).due_at
    assert due is not None and photo_alerts_send_due(now=due).sent == 1
    # then: both e-mails link her current pages, and their one-click unsubscribes too
    news, alert = mail.outbox
    for email in (news, alert):
        assert f"/attendee/{current}/" in email.body, email.subject
        assert email.extra_headers["List-Unsubscribe"].endswith(f"/attendee/{current}/unsubscribe>")
    assert f"/attendee/{current}/drop-in" in alert.body


def test_a_selfie_through_the_current_link_still_works_after_a_replacement(tenant_a: Any) -> None:
    # given: Ann replaced her link
    _, [ann] = event_with_attendees(tenant_a.org, consenting=1)
    ask_for_a_new_link(token(tenant_a.org, ann))
    # when: she registers a selfie through her new link
    image = io.BytesIO(fake_face_image(["ann"]))
    image.name = "me.jpg"
    response = Client().post(f"/attendee/{token(tenant_a.org, ann, 1)}/drop-in", {"consent": "yes", "image": image})
    # then: it is registered
    assert response.status_code == 303
    with tenant_context(tenant_a.org.pk):
        assert AttendeeFace.objects.filter(attendee_id=ann.pk).count() == 1


def studio_resets(org: Any, attendee: Attendee) -> None:
    """The studio's "Replace link", committed (injected at an exact point of a request below)."""
    with tenant_context(org.pk), transaction.atomic():
        attendee_link_reset(tenant_id=org.pk, event_id=attendee.event_id, attendee_id=attendee.pk, actor_label="studio")


def test_a_selfie_sent_through_a_link_replaced_during_its_upload_is_not_registered(tenant_a: Any) -> None:
    # given: Ann's link, held by someone else, who starts uploading their selfie through it
    _, [ann] = event_with_attendees(tenant_a.org, consenting=1)
    old = attendee_token(tenant_id=tenant_a.org.pk, attendee_id=ann.pk)
    image = io.BytesIO(fake_face_image(["mallory"]))
    image.name = "me.jpg"
    admitted = dropin_views._selfie_wait

    def reset_during_upload(attendee: Attendee) -> int:
        # when: the studio replaces the link after the page checked it, while the body still streams
        studio_resets(tenant_a.org, ann)
        return admitted(attendee)

    with mock.patch.object(dropin_views, "_selfie_wait", side_effect=reset_during_upload):
        response = Client().post(f"/attendee/{old}/drop-in", {"consent": "yes", "image": image}, **BROWSER)
    # then: the replaced link registers nothing: the write checks the generation under the row lock
    with system_context("test: faces"):
        faces = AttendeeFace.objects.filter(attendee_id=ann.pk).count()
    assert (response.status_code, faces) == (404, 0)


def test_a_new_link_click_that_loses_to_a_studio_reset_does_not_say_an_email_is_on_its_way(tenant_a: Any) -> None:
    # given: Ann clicks "Someone else has this link? Send me a new one"
    _, [ann] = event_with_attendees(tenant_a.org, consenting=1)
    old = attendee_token(tenant_id=tenant_a.org.pk, attendee_id=ann.pk)
    replace = notification_views.attendee_link_replace

    def studio_first(**kwargs: Any) -> bool:
        # when: the studio's "Replace link" commits between her link's check and the replacement
        studio_resets(tenant_a.org, ann)
        return replace(**kwargs)

    with mock.patch.object(notification_views, "attendee_link_replace", side_effect=studio_first):
        response = Client().post(f"/attendee/{old}/new-link", **BROWSER)
    with system_context("test: outbox"):
        queued = OutboxMessage.objects.filter(topic=TOPIC_LINK_REPLACED).count()
    # then: she is not told an e-mail is on its way (none was queued): her link was replaced, and
    # she gets what any replaced link gets
    assert (response.status_code, queued) == (404, 0)


def reset_after_the_links_check(org: Any, attendee: Attendee) -> Any:
    """Patch the pages' link check so that the studio's "Replace link" commits right after it
    admitted the request (the request is then in flight with a link no longer current)."""
    check = notification_views.attendee_or_problem

    def admitted_then_replaced(request: Any, token: str) -> Any:
        found = check(request, token)
        studio_resets(org, attendee)
        return found

    return mock.patch.object(notification_views, "attendee_or_problem", side_effect=admitted_then_replaced)


def test_a_mark_read_through_a_link_replaced_in_flight_marks_nothing(tenant_a: Any) -> None:
    # given: Ann's unread notification, and her link, which someone else holds
    _, [ann] = event_with_attendees(tenant_a.org, consenting=1)
    with tenant_context(tenant_a.org.pk):
        note = Notification.objects.create(
            tenant=tenant_a.org, attendee=ann, kind=Notification.Kind.NEW_PHOTOS, dedupe_key="n", title="New", body="…"
        )
    old = token(tenant_a.org, ann)
    # when: they mark it read, and the studio replaces the link while the request is in flight
    with reset_after_the_links_check(tenant_a.org, ann):
        response = Client().post(f"/attendee/{old}/read", {"notification": str(note.pk)}, **BROWSER)
    # then: the replaced link's 404, and the notification is still unread
    with system_context("test: notification"):
        read_at = Notification.objects.get(pk=note.pk).read_at
    assert (response.status_code, read_at) == (404, None)


def test_a_resubscribe_through_a_link_replaced_in_flight_changes_nothing(tenant_a: Any) -> None:
    # given: Ann unsubscribed; her link is held by someone else
    _, [ann] = event_with_attendees(tenant_a.org, consenting=1)
    old = token(tenant_a.org, ann)
    assert Client().post(f"/attendee/{old}/unsubscribe").status_code == 200
    # when: they resubscribe her, and the studio replaces the link while the request is in flight
    with reset_after_the_links_check(tenant_a.org, ann):
        response = Client().post(f"/attendee/{old}/resubscribe", **BROWSER)
    # then: the replaced link's 404, and she stays unsubscribed
    assert (response.status_code, reload(ann).unsubscribed_at is not None) == (404, True)
