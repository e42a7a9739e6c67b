"""Titles shown on pages and in e-mail subjects (events, announcements) hold no control characters
and no text-direction overrides, which would reorder what shoppers and attendees read; other
format characters (an emoji's zero-width joiner) are kept."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from apps.catalog.models import Event
from apps.core.text import title_problem
from apps.notifications.models import Announcement
from apps.tenancy.context import tenant_context
from tests.factories.catalog import EventFactory

pytestmark = pytest.mark.django_db

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: "Gala 2026 \u202egnp.exe" reads as "Gala 2026 exe.png"
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one emoji: three faces joined by ZWJ


def post(client: Any, path: str, body: Any, method: str = "post") -> Any:
    return getattr(client, method)(path, body, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))


@pytest.mark.parametrize(
    ("title", "problem"),
    [
        (f"Gala 2026 {RLO}gnp.exe", "Control characters (including text-direction overrides) are not allowed."),
        ("Gala\u2066 isolate", "Control characters (including text-direction overrides) are not allowed."),
        ("Gala\x07", "Control characters (including text-direction overrides) are not allowed."),
        ("   ", "This field is required."),
        (f"Family day {FAMILY}", ""),
        ("Soft\u00adhyphen", ""),
    ],
)
def test_title_problem(title: str, problem: str) -> None:
    assert title_problem(title, max_length=200) == problem


def test_events_refuse_a_direction_override_in_their_title_and_write_nothing(tenant_a: Any) -> None:
    api = tenant_a.client()
    created = post(api, "/api/v1/events", {"title": f"Gala {RLO}gnp", "date": "2026-05-17", "slug": "gala"})
    assert created.status_code == 400, created.content
    assert "text-direction" in created.json()["errors"]["title"][0]
    event = EventFactory(tenant=tenant_a.org, title="Gala")
    changed = post(api, f"/api/v1/events/{event.pk}", {"title": f"Gala {RLO}gnp"}, method="patch")
    assert changed.status_code == 400, changed.content
    with tenant_context(tenant_a.org.pk):
        assert list(Event.objects.values_list("title", flat=True)) == ["Gala"]
    # and: an emoji title is fine
    family = post(api, "/api/v1/events", {"title": f"Family {FAMILY}", "date": "2026-05-17", "slug": "family"})
    assert family.status_code == 201, family.content


def test_announcements_refuse_a_direction_override_in_their_title(tenant_a: Any) -> None:
    event = EventFactory(tenant=tenant_a.org)
    response = post(
        tenant_a.client(), "/api/v1/announcements", {"event_id": event.pk, "title": f"News {RLO}txt", "body": "Hi"}
    )
    assert response.status_code == 400, response.content
    assert "text-direction" in response.json()["errors"]["title"][0]
    with tenant_context(tenant_a.org.pk):
        assert not Announcement.objects.exists()
