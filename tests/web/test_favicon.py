"""Every page names the site's icon, and a browser asking for /favicon.ico by habit gets it: no
404 in the access log and the error metrics for each page view."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

ICON = "/static/web/favicon.svg"
LINK = f'<link rel="icon" href="{ICON}" type="image/svg+xml">'


def test_favicon_ico_is_sent_on_to_the_icon() -> None:
    response = Client().get("/favicon.ico")
    assert response.status_code == 301 and response["Location"] == ICON
    found = finders.find("web/favicon.svg")
    assert found and open(found, encoding="utf-8").read().startswith("<svg")


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/studio/login/", "/s/no-such-studio/"])
def test_every_kind_of_page_names_the_icon(path: str, tenant_a: Any) -> None:
    page = Client().get(path).content.decode()
    assert LINK in page, path


@pytest.mark.django_db
def test_the_shop_and_an_attendees_page_name_the_icon(tenant_a: Any) -> None:
    from apps.notifications.selectors import attendee_token
    from tests.notifications.helpers import event_with_attendees

    _, [ann] = event_with_attendees(tenant_a.org, consenting=1)
    inbox = f"/attendee/{attendee_token(tenant_id=tenant_a.org.pk, attendee_id=ann.pk)}/"
    for path in (f"/s/{tenant_a.org.slug}/", inbox):
        response = Client().get(path)
        assert response.status_code == 200 and LINK in response.content.decode(), path
