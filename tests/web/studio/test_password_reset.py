"""A studio member who forgot their password gets a one-time link by e-mail, sets a new password
and signs in with it; unknown addresses get the same answer and no e-mail; requests are
limited per e-mail and client address."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client

from tests.web.studio.conftest import StudioPeople

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-long-new-passphrase-42"


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
    assert mail.outbox[0].to == [studio.owner.email] and mail.outbox[0].from_email == "studio@darkroom.localhost"
    link = reset_link()
    # when: the link is opened and a new password chosen
    form_page = client.get(link, follow=True)
    assert "Choose a new password" in form_page.content.decode()
    set_url = form_page.redirect_chain[-1][0]
    done = client.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"] == "/studio/reset/done/"
    # then: the new password signs in, and the link is spent
    signed_in = Client().post("/studio/login/", {"username": studio.owner.username, "password": NEW_PASSWORD})
    assert signed_in.status_code == 302
    again = Client().get(link, follow=True)
    assert "This link does not work" in again.content.decode()


def test_an_unknown_address_gets_the_same_answer_and_no_email() -> None:
    response = Client().post("/studio/password-reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302 and response["Location"] == "/studio/password-reset/sent/"
    assert mail.outbox == []


def test_a_tampered_link_does_not_work(studio: StudioPeople) -> None:
    client = Client()
    client.post("/studio/password-reset/", {"email": studio.owner.email})
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
    # then: the link is on DARKROOM_PUBLIC_BASE_URL (reset_link finds it there), not on that host
    assert reset_link().startswith("/studio/reset/")
    assert "://localhost" not in mail.outbox[0].body
