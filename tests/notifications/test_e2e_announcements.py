"""An announcement on the production path: API → outbox → relay → real Celery worker
(`notifications.fanout`, fenced) → outbox → relay → worker (`notifications.send_emails`) → a
real SMTP server on loopback; each attendee reached once, the status derived to `sent`."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import override_settings

from apps.notifications.models import Announcement
from apps.notifications.selectors import announcement_status
from apps.tenancy.context import system_context
from tests.commerce.fixtures import outbox_idle, running_relay, wait_until, worker_running
from tests.notifications.helpers import deliveries, event_with_attendees, smtp_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def status(announcement_id: int) -> str:
    with system_context("test: status"):
        return announcement_status(Announcement.objects.get(pk=announcement_id)).status


@override_settings(ANNOUNCEMENT_FANOUT_CHUNK=7)
def test_an_announcement_is_delivered_once_through_relay_worker_and_smtp(tenant_a: Any) -> None:
    # given: 30 attendees who agreed to e-mail and 5 who did not
    event, attendees = event_with_attendees(tenant_a.org, consenting=30, silent=5)
    api = tenant_a.client()
    created = api.post(
        "/api/v1/announcements",
        {"event_id": event.pk, "title": "Gallery is live", "body": "Hello!"},
        format="json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    ).json()
    with smtp_server() as smtp, worker_running(), running_relay():
        # when: the studio sends it twice
        for _ in range(2):
            sent = api.post(
                f"/api/v1/announcements/{created['id']}/send", format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4())
            )
            assert sent.status_code == 202, sent.content
        # then: the worker fans out in chunks of 7 and sends every e-mail
        wait_until(lambda: status(created["id"]) == "sent", timeout=150)
        wait_until(outbox_idle)
        assert sorted(m["to"][0] for m in smtp.messages) == sorted(f"fan{i}@example.com" for i in range(30))
    rows = deliveries(Announcement(pk=created["id"]))
    assert sorted(d.attendee_id for d in rows) == [a.pk for a in attendees]
    assert [d.attempts for d in rows if d.channel == "email"] == [1] * 30
    detail = api.get(f"/api/v1/announcements/{created['id']}").json()
    assert (detail["status"], detail["recipients"], detail["delivered"]) == ("sent", 35, 35)
