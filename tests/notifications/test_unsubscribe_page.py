"""What the attendee's unsubscribe page says against what unsubscribing does: announcements stop
on their page too (not only by e-mail), new photos of them still show, and the page, which shows
their e-mail address, is never cached."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.notifications.selectors import attendee_token
from apps.notifications.services import announcement_fanout
from apps.tenancy.context import tenant_context
from tests.notifications.helpers import event_with_attendees, notifications_of, sent_announcement

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_unsubscribe_page_says_announcements_stop_on_the_page_too(tenant_a: Any) -> None:
    # given: an attendee who never agreed to e-mail (told in-app only)
    event, [quiet] = event_with_attendees(tenant_a.org, consenting=0, silent=1)
    token = attendee_token(tenant_id=tenant_a.org.pk, attendee_id=quiet.pk)
    browser = Client()
    inbox = browser.get(f"/attendee/{token}/").content.decode()
    assert f"Stop announcements and e-mails about {event.title}" in inbox
    # when: they open the unsubscribe page
    page = browser.get(f"/attendee/{token}/unsubscribe")
    # then: it says that announcements stop on their page as well, and is not cached
    assert page["Cache-Control"] == "private, no-store"
    assert "by e-mail and on your page" in page.content.decode()
    # when: they unsubscribe, and the studio then sends an announcement
    done = browser.post(f"/attendee/{token}/unsubscribe")
    assert done["Cache-Control"] == "private, no-store"
    assert "no longer reach your page" in done.content.decode()
    announcement = sent_announcement(tenant_a.org, event)
    with tenant_context(tenant_a.org.pk):
        announcement_fanout(announcement_id=announcement.pk)
    # then: as the page said, nothing reaches their page
    assert notifications_of(tenant_a.org) == []
