"""What a browser keeps and where it is sent: studio pages are never cached, and signing in from
the studio picker comes back to the picker with its destination."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from tests.web.studio.conftest import StudioPeople, signed_in

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/studio/", "/studio/wallet/", "/studio/sales/", "/studio/choose/"])
def test_studio_pages_tell_every_cache_not_to_keep_them(studio: StudioPeople, path: str) -> None:
    # given: an owner signed in
    client = signed_in(studio.owner)
    # when: a page with the studio's money or people is read
    response = client.get(path)
    # then: no cache may store it (a shared proxy, or the browser's back button after sign-out)
    assert response.status_code == 200
    directives = {d.strip() for d in response["Cache-Control"].split(",")}
    assert {"no-store", "private"} <= directives


def test_signing_in_from_the_picker_returns_to_it_with_its_destination() -> None:
    # when: an anonymous visitor opens the picker on its way to the sales page
    response = Client().get("/studio/choose/?next=/studio/sales/")
    # then: the login page is told to come back to the picker, destination included
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == "/studio/login/"
    assert parse_qs(location.query)["next"] == ["/studio/choose/?next=/studio/sales/"]


def test_a_form_sent_after_signing_out_elsewhere_returns_to_its_page_after_signing_in(studio: StudioPeople) -> None:
    # given: a wallet page's payout form, sent after its browser signed out in another tab
    client = Client()
    sent = client.post(
        "/studio/wallet/payout-request", {"account": "1"}, HTTP_REFERER="http://testserver/studio/wallet/"
    )
    # when: they sign in from the page it sends them to
    assert sent.status_code == 302
    signed = client.post(sent["Location"], {"username": studio.owner.username, "password": "pw"})
    # then: they are back on the page the form was on, not on the form's address (GET: 405)
    assert signed.status_code == 302 and signed["Location"] == "/studio/wallet/"
    assert client.get(signed["Location"]).status_code == 200


def test_a_form_sent_without_a_page_to_return_to_returns_to_the_overview(studio: StudioPeople) -> None:
    # given: a form sent signed out, from a page of another site (or none)
    for referer in ("http://evil.test/studio/wallet/", None):
        headers = {"HTTP_REFERER": referer} if referer else {}
        sent = Client().post("/studio/wallet/payout-request", {"account": "1"}, **headers)
        # then: the sign-in leads to the studio overview
        assert sent.status_code == 302
        assert parse_qs(urlsplit(sent["Location"]).query)["next"] == ["/studio/"]
