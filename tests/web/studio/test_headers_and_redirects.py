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
