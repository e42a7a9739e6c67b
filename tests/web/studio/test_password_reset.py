"""A studio member who forgot their password gets a one-time link by e-mail, sets a new password
and signs in with it; unknown addresses get the same answer and no e-mail; the request does the
same work for both (one outbox message, no e-mail: a worker sends it); requests are limited per
e-mail and client address."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client
from django.utils import timezone

from apps.outbox.models import OutboxMessage
from apps.outbox.unconsumed import outbox_requeue_unconsumed
from apps.tenancy.context import system_context
from apps.tenancy.password_reset import TOPIC_PASSWORD_RESET_REQUESTED
from config.celery_app import app as celery_app
from tests.commerce.helpers import drain_outbox
from tests.web.studio.conftest import StudioPeople, signed_in

# The e-mail is sent by the outbox consumer, outside any transaction (it refuses inside one).
pytestmark = pytest.mark.django_db(transaction=True)

NEW_PASSWORD = "a-long-new-passphrase-42"


def deliver() -> list[str]:
    """What the relay and a worker do: run the queued reset messages through their consumer."""
    return drain_outbox(topics={TOPIC_PASSWORD_RESET_REQUESTED})


def reset_messages() -> list[OutboxMessage]:
    with system_context("test outbox read"):
        return list(OutboxMessage.objects.filter(topic=TOPIC_PASSWORD_RESET_REQUESTED).order_by("created_at", "id"))


def reset_link() -> str:
    """The path of the link in the one e-mail sent, which is on the public address."""
    [message] = mail.outbox
    base = re.escape(settings.DARKROOM_PUBLIC_BASE_URL.rstrip("/"))
    match = re.search(rf"{base}(/studio/reset/[^/\s]+/[^/\s]+/)", message.body)
    assert match, message.body
    return match[1]


def test_the_link_sets_a_new_password_once_and_the_member_signs_in_with_it(studio: StudioPeople) -> None:
    client = Client()
    assert "Forgot your password?" in client.get("/studio/login/").content.decode()
    # when: the owner asks for a link
    sent = client.post("/studio/password-reset/", {"email": studio.owner.email})
    # then: the "check your e-mail" page, and one e-mail from the studio address with the link
    assert sent.status_code == 302 and sent["Location"] == "/studio/password-reset/sent/"
    deliver()
    assert mail.outbox[0].to == [studio.owner.email] and mail.outbox[0].from_email == "studio@darkroom.localhost"
    link = reset_link()
    # when: the link is opened and a new password chosen
    form_page = client.get(link, follow=True)
    assert "Choose a new password" in form_page.content.decode()
    set_url = form_page.redirect_chain[-1][0]
    done = client.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/studio/reset/done/"
    # then: the page after names the account's username and links to signing in with it
    done_page = client.get(done["Location"]).content.decode()
    assert "Your password is set" in done_page
    assert f"Your username is <strong>{studio.owner.username}</strong>" in done_page
    assert f'href="/studio/login/?username={studio.owner.username}"' in done_page
    # and: the new password signs in, and the link is spent
    signed_in = Client().post("/studio/login/", {"username": studio.owner.username, "password": NEW_PASSWORD})
    assert signed_in.status_code == 302
    again = Client().get(link, follow=True)
    assert "This link does not work" in again.content.decode()


def test_an_unknown_address_gets_the_same_answer_and_no_email() -> None:
    response = Client().post("/studio/password-reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302 and response["Location"] == "/studio/password-reset/sent/"
    deliver()
    assert mail.outbox == []


def test_a_tampered_link_does_not_work(studio: StudioPeople) -> None:
    client = Client()
    client.post("/studio/password-reset/", {"email": studio.owner.email})
    deliver()
    link = reset_link()
    page = client.get(link[:-3] + "xx/", follow=True)
    assert "This link does not work" in page.content.decode()


def test_requests_per_email_are_limited_with_a_429_and_no_email(studio: StudioPeople, settings: Any) -> None:
    settings.RATE_LIMIT_ENABLED = True
    settings.STUDIO_PASSWORD_RESET_EMAIL_RATE = "2/hour"
    client = Client(REMOTE_ADDR="203.0.113.40")
    for _ in range(2):
        assert client.post("/studio/password-reset/", {"email": studio.owner.email}).status_code == 302
    refused = client.post("/studio/password-reset/", {"email": studio.owner.email.upper()})
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "Too many reset requests" in refused.content.decode()
    assert len(reset_messages()) == 2  # the refused request recorded nothing
    deliver()
    assert len(mail.outbox) == 2


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("a", "too short"),
        ("password123", "too common"),
        ("84736251904", "entirely numeric"),
    ],
)
def test_a_weak_password_is_refused_and_the_old_one_still_works(studio: StudioPeople, password: str, why: str) -> None:
    # given: the owner has a password and follows a reset link
    studio.owner.set_password(NEW_PASSWORD)
    studio.owner.save(update_fields=["password"])
    client = Client()
    client.post("/studio/password-reset/", {"email": studio.owner.email})
    deliver()
    form_page = client.get(reset_link(), follow=True)
    set_url = form_page.redirect_chain[-1][0]
    # when: they choose a weak password
    refused = client.post(set_url, {"new_password1": password, "new_password2": password})
    # then: the form again, saying why; the weak password does not sign in, the old one does
    assert refused.status_code == 200 and why in refused.content.decode()
    weak = Client().post("/studio/login/", {"username": studio.owner.username, "password": password})
    assert weak.status_code == 200
    assert Client().login(username=studio.owner.username, password=NEW_PASSWORD)


def test_the_link_is_on_the_public_address_whatever_host_the_request_named(studio: StudioPeople) -> None:
    # when: the request names another allowed host than the public one
    Client().post("/studio/password-reset/", {"email": studio.owner.email}, HTTP_HOST="localhost")
    deliver()
    # then: the link is on DARKROOM_PUBLIC_BASE_URL (reset_link finds it there), not on that host
    assert reset_link().startswith("/studio/reset/")
    assert "://localhost" not in mail.outbox[0].body


def test_known_and_unknown_addresses_do_the_same_work_in_the_request(studio: StudioPeople) -> None:
    # given: an address with an account and one without
    known, unknown = studio.owner.email, "nobody@example.com"
    # when: a link is asked for each
    answers = [Client().post("/studio/password-reset/", {"email": email}) for email in (known, unknown)]
    # then: the same answer; neither request sent an e-mail; each wrote one outbox message, naming
    # the account to e-mail (or none) and carrying no token or link
    assert [(a.status_code, a["Location"]) for a in answers] == [(302, "/studio/password-reset/sent/")] * 2
    assert mail.outbox == []
    assert [m.payload for m in reset_messages()] == [{"user_ids": [studio.owner.pk]}, {"user_ids": []}]
    # when: the worker consumes them
    assert deliver() == [TOPIC_PASSWORD_RESET_REQUESTED] * 2
    # then: one e-mail, to the account, whose link sets a password the account signs in with
    assert [m.to for m in mail.outbox] == [[known]]
    client = Client()
    form_page = client.get(reset_link(), follow=True)
    done = client.post(form_page.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/studio/reset/done/"
    assert Client().login(username=studio.owner.username, password=NEW_PASSWORD)


def test_a_redelivered_message_sends_no_second_email(studio: StudioPeople) -> None:
    # given: one queued reset message, consumed once
    Client().post("/studio/password-reset/", {"email": studio.owner.email})
    [message] = reset_messages()
    deliver()
    # when: the broker delivers it again (the relay re-published it, a worker was lost)
    task = celery_app.tasks["tenancy.send_password_reset"]
    assert task(message_id=str(message.pk), payload=message.payload) == 0
    # then: still one e-mail
    assert len(mail.outbox) == 1


def test_the_link_is_made_when_the_email_is_sent(studio: StudioPeople) -> None:
    # given: a request, then a password change before the e-mail goes out (which spends any token
    # made at request time: tokens are signed over the password hash)
    Client().post("/studio/password-reset/", {"email": studio.owner.email})
    studio.owner.set_password("another-long-passphrase-7")
    studio.owner.save(update_fields=["password"])
    # when: the e-mail is sent
    deliver()
    # then: its link works
    page = Client().get(reset_link(), follow=True).content.decode()
    assert "Set the password" in page and "This link does not work" not in page


def test_an_account_deactivated_before_the_email_goes_out_gets_none(studio: StudioPeople) -> None:
    Client().post("/studio/password-reset/", {"email": studio.owner.email})
    studio.owner.is_active = False
    studio.owner.save(update_fields=["is_active"])
    deliver()
    assert mail.outbox == []


def test_a_signed_in_member_may_ask_too(studio: StudioPeople) -> None:
    # given: a session acting for the studio (a tenant context); the message is the platform's
    response = signed_in(studio.photographer).post("/studio/password-reset/", {"email": studio.photographer.email})
    assert response.status_code == 302
    deliver()
    assert [m.to for m in mail.outbox] == [[studio.photographer.email]]


def test_a_lost_reset_message_is_sent_again_and_one_naming_no_account_is_not(studio: StudioPeople) -> None:
    # given: a request for an unknown address, handled; then one for the member, whose message
    # the broker lost after the relay published it (an hour ago)
    Client().post("/studio/password-reset/", {"email": "nobody@example.com"})
    deliver()
    Client().post("/studio/password-reset/", {"email": studio.owner.email})
    handled, owed = reset_messages()
    with system_context("test: the broker lost it"):
        OutboxMessage.objects.filter(pk__in=[handled.pk, owed.pk]).update(
            status=OutboxMessage.Status.PUBLISHED, published_at=timezone.now() - timedelta(hours=1)
        )
    # when: the lost-message sweep runs
    with system_context("test sweep"):
        sent_again = outbox_requeue_unconsumed(older_than_seconds=60, max_age_seconds=86_400, max_requeues=5, limit=100)
    # then: only the member's message goes again (the unknown address's was recorded as handled),
    # and the worker sends the member one e-mail whose link works
    assert sent_again["password_reset_emails"] == 1
    assert deliver() == [TOPIC_PASSWORD_RESET_REQUESTED]
    assert [m.to for m in mail.outbox] == [[studio.owner.email]]
    assert Client().get(reset_link(), follow=True).status_code == 200
