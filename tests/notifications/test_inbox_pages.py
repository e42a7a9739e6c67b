"""The attendee's inbox shows 50 notifications a page, newest first, and pages back by keyset
(`?older_than=<id>`) through all of them; the unread count covers every page."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from apps.notifications.models import Notification
from apps.notifications.selectors import attendee_token
from apps.tenancy.context import tenant_context
from tests.notifications.helpers import event_with_attendees

pytestmark = pytest.mark.django_db


def titles(body: str) -> list[str]:
    return re.findall(r"<h2>(Note \d+)</h2>", body)


def test_the_inbox_pages_back_through_every_notification(tenant_a: Any) -> None:
    # given: 120 notifications, 12 of them read, two of them sharing one instant
    _, [ann] = event_with_attendees(tenant_a.org, consenting=1)
    start = timezone.now() - timedelta(days=1)
    with tenant_context(tenant_a.org.pk):
        Notification.objects.bulk_create(
            Notification(
                tenant=tenant_a.org,
                attendee=ann,
                kind=Notification.Kind.ANNOUNCEMENT,
                dedupe_key=f"n{i}",
                title=f"Note {i}",
                body="…",
                created_at=start + timedelta(seconds=min(i, 118)),  # notes 118 and 119 at one instant
                read_at=start + timedelta(hours=2) if i % 10 == 0 else None,
            )
            for i in range(120)
        )
    inbox = f"/attendee/{attendee_token(tenant_id=tenant_a.org.pk, attendee_id=ann.pk)}/"
    browser = Client()
    # when: the attendee follows "Older notifications" to the end
    seen: list[str] = []
    url = inbox
    for _ in range(5):
        body = browser.get(url).content.decode()
        assert "108 unread." in body
        seen += titles(body)
        older = re.search(r'href="(\?older_than=\d+)" rel="next"', body)
        if older is None:
            break
        url = inbox + older.group(1)
    # then: every notification once, newest first, in pages of 50
    assert seen == [f"Note {i}" for i in (119, 118, *range(117, -1, -1))]
    assert len(titles(browser.get(inbox).content.decode())) == 50
    # and: a cursor that is not this attendee's starts from the newest
    assert titles(browser.get(inbox + "?older_than=999999999").content.decode())[0] == "Note 119"


def test_mark_all_read_leaves_unread_what_arrived_after_the_page_was_shown(tenant_a: Any) -> None:
    # given: the attendee's inbox shows one unread notification
    _, [ann] = event_with_attendees(tenant_a.org, consenting=1)

    def note(key: str) -> Notification:
        with tenant_context(tenant_a.org.pk):
            return Notification.objects.create(
                tenant=tenant_a.org,
                attendee=ann,
                kind=Notification.Kind.NEW_PHOTOS,
                dedupe_key=key,
                title=key,
                body="…",
            )

    shown = note("shown")
    inbox = f"/attendee/{attendee_token(tenant_id=tenant_a.org.pk, attendee_id=ann.pk)}/"
    browser = Client()
    page = browser.get(inbox).content.decode()
    mark_all = re.search(r'<form method="post" action="([^"]+)">(.*?)Mark all read', page, re.S)
    assert mark_all is not None
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="(\d+)">', mark_all.group(2)))
    # when: a new photo of them arrives, then they press "Mark all read" on the page they saw
    later = note("later")
    assert browser.post(mark_all.group(1), fields).status_code == 303
    # then: what they saw is read; what they never saw stays unread (it still counts for alerts)
    with tenant_context(tenant_a.org.pk):
        shown.refresh_from_db()
        later.refresh_from_db()
    assert shown.read_at is not None and later.read_at is None
    assert "1 unread." in browser.get(inbox).content.decode()
    # and: a bad bound is a 400 that marks nothing
    assert browser.post(mark_all.group(1), {"upto": "-1"}).status_code == 400
    with tenant_context(tenant_a.org.pk):
        later.refresh_from_db()
    assert later.read_at is None
