"""The attendee's drop-in page says that a selfie covers photos added from now on, and points to
the shop's "Find me" page of the event for photos already online (a protected event's asks for
its access code)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.test import Client

from apps.notifications.models import Attendee
from apps.notifications.selectors import attendee_token
from apps.tenancy.context import tenant_context
from tests.factories.catalog import EventFactory

pytestmark = pytest.mark.django_db


def dropin_page_of(org: Any, **event_fields: Any) -> tuple[Any, str]:
    """An event of `org` with one attendee, and the text of that attendee's drop-in page."""
    with tenant_context(org.pk):
        event = EventFactory(tenant=org, **event_fields)
        attendee = Attendee.objects.create(tenant=org, event=event, email="ann@example.com")
    token = attendee_token(tenant_id=org.pk, attendee_id=attendee.pk)
    response = Client().get(f"/attendee/{token}/drop-in")
    assert response.status_code == 200
    return event, re.sub(r"\s+", " ", response.content.decode())


def find_me_link(page: str) -> str:
    match = re.search(r'<a href="([^"]+)">Find me in ', page)
    assert match, "the page links to no Find me page"
    return match.group(1)


def test_the_page_says_alerts_cover_new_photos_and_links_find_me_for_those_online(tenant_a: Any) -> None:
    # given: an attendee of a public event, photos of which may be online already
    event, page = dropin_page_of(tenant_a.org, title="City Run")
    # then: they are told their selfie covers photos added from now on
    assert "Your selfie covers photos added from now on" in page
    assert "already online are not matched to it" in page
    # and: pointed to the event's Find me page in the shop, which opens for anyone
    link = find_me_link(page)
    assert link == f"/s/{tenant_a.org.slug}/{event.slug}/find-me"
    assert "Find me in City Run" in page and "access code" not in page
    assert Client().get(link).status_code == 200


def test_a_protected_events_find_me_link_warns_of_the_access_code(tenant_a: Any) -> None:
    # given: an attendee of an event protected by an access code
    event, page = dropin_page_of(tenant_a.org, visibility="access_code", access_code_hash=make_password("open-sesame"))
    # then: the link leads to its Find me page, which asks for the code first
    link = find_me_link(page)
    assert link == f"/s/{tenant_a.org.slug}/{event.slug}/find-me"
    assert "(it asks for the event's access code)" in page
    assert Client().get(link).status_code == 403  # the shop's access-code form
