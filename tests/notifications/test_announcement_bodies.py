"""An announcement's body is multi-line text shown on attendee pages and sent as the e-mail's
text: it keeps line breaks (LF or a form's CR LF) and tabs, and refuses every other control
character (C0, DEL, C1, NUL) and the text-direction overrides that would reorder what attendees
read: the API answers a 400 problem naming `body` and writes nothing (the studio's form:
`tests/web/studio/test_announcements.py`)."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest

from apps.catalog.models import Event
from apps.core.text import multiline_text_problem
from apps.notifications.models import Announcement
from apps.tenancy.context import tenant_context
from tests.factories.catalog import EventFactory

pytestmark = pytest.mark.django_db

REFUSED = "Control characters (including text-direction overrides) are not allowed; line breaks and tabs are."


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("Photos are up.\nFind yours:\n\tgallery", ""),
        ("Photos are up.\r\nFind yours.", ""),
        ("Family day \U0001f468\u200d\U0001f469\u200d\U0001f467, soft\u00adhyphen", ""),
        ("Photos\x11 are up", REFUSED),
        ("Photos\x00 are up", REFUSED),
        ("Photos\x7f are up", REFUSED),
        ("Photos\x85 are up", REFUSED),  # C1 NEXT LINE
        ("Photos\r are up", REFUSED),  # a lone CR is no line break
        ("Photos \u202egnp.exe", REFUSED),
        ("Photos \u2067isolate\u2069", REFUSED),
        ("Photos \ud800", "Not Unicode text (a lone surrogate)."),
        (" \n\t ", "This field is required."),
        ("x" * 21, "At most 20 characters."),
    ],
)
def test_multiline_text_problem(body: str, problem: str) -> None:
    assert multiline_text_problem(body, max_length=20 if problem.startswith("At most") else 20_000) == problem


def post_announcement(client: Any, body: dict[str, Any]) -> Any:
    return client.post("/api/v1/announcements", body, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))


@pytest.mark.parametrize("bad", ["Photos\x11 are up", "Photos\x1b[31m are up", "Photos \u202egnp.exe", "Photos\x9b"])
def test_the_api_refuses_control_characters_in_a_body_and_writes_nothing(tenant_a: Any, bad: str) -> None:
    # given: an event of the studio
    event = cast(Event, EventFactory(tenant=tenant_a.org))
    # when: an announcement's body holds a control character or a direction override
    response = post_announcement(tenant_a.client(), {"event_id": event.pk, "title": "News", "body": bad})
    # then: a 400 problem naming the body, and no announcement
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    assert response.json()["errors"] == {"body": [REFUSED]}
    with tenant_context(tenant_a.org.pk):
        assert not Announcement.objects.exists()


def test_the_api_keeps_line_breaks_and_tabs_of_a_body(tenant_a: Any) -> None:
    event = cast(Event, EventFactory(tenant=tenant_a.org))
    body = "Photos are up.\r\n\tFind yours.\nThanks"
    response = post_announcement(tenant_a.client(), {"event_id": event.pk, "title": "News", "body": body})
    # then: kept, its line breaks as "\n" (test_announcement_line_breaks.py)
    kept = "Photos are up.\n\tFind yours.\nThanks"
    assert response.status_code == 201, response.content
    assert response.json()["body"] == kept
    with tenant_context(tenant_a.org.pk):
        assert list(Announcement.objects.values_list("body", flat=True)) == [kept]
