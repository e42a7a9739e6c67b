"""What the attendee's unsubscribe page says against what unsubscribing does: announcements stop
on their page too (not only by e-mail), new photos of them still show, and the page, which shows
their e-mail address, is never cached. An attendee who unsubscribed resubscribes from their page."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.test import Client

from apps.notifications.models import Attendee
from apps.notifications.selectors import attendee_token
from apps.notifications.services import announcement_fanout
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.notifications.helpers import (
    deliveries,
    event_with_attendees,
    notifications_of,
    send_all_emails,
    sent_announcement,
)

pytestmark = pytest.mark.django_db(transaction=True)


def subscriptions(org: Any) -> list[tuple[Any, bool, Any]]:
    """Each attendee's (unsubscribed_at, email_consent, consent_recorded_at), in id order."""
    with tenant_context(org.pk):
        return list(
            Attendee.objects.order_by("id").values_list("unsubscribed_at", "email_consent", "consent_recorded_at")
        )


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


def test_an_unsubscribed_attendee_resubscribes_from_their_page_once(tenant_a: Any) -> None:
    # given: Fan (who agreed to e-mail) and Quiet (who never did) unsubscribed; an announcement
    # e-mail to Fan was still unsent, so it became an in-app delivery
    event, [fan, quiet] = event_with_attendees(tenant_a.org, consenting=1, silent=1)
    earlier = sent_announcement(tenant_a.org, event, title="Earlier news")
    with tenant_context(tenant_a.org.pk):
        announcement_fanout(announcement_id=earlier.pk)
    tokens = {a.pk: attendee_token(tenant_id=tenant_a.org.pk, attendee_id=a.pk) for a in (fan, quiet)}
    browser = Client()
    for attendee in (fan, quiet):
        browser.post(f"/attendee/{tokens[attendee.pk]}/unsubscribe")
    assert [(d.channel, d.status) for d in deliveries(earlier)] == [("in_app", "delivered")] * 2
    # when: each asks on their page for announcements by e-mail again, twice
    inbox = browser.get(f"/attendee/{tokens[quiet.pk]}/").content.decode()
    assert "E-mail me announcements again" in inbox
    assert f'action="/attendee/{tokens[quiet.pk]}/resubscribe"' in inbox
    for attendee in (fan, quiet):
        first = browser.post(f"/attendee/{tokens[attendee.pk]}/resubscribe")
        assert (first.status_code, first["Location"]) == (303, f"/attendee/{tokens[attendee.pk]}/")
    recorded = subscriptions(tenant_a.org)
    for attendee in (fan, quiet):
        assert browser.post(f"/attendee/{tokens[attendee.pk]}/resubscribe").status_code == 303
    # then: both are subscribed with their consent recorded (once: the second POST changed nothing)
    assert all(unsubscribed is None and consent and at is not None for unsubscribed, consent, at in recorded)
    assert subscriptions(tenant_a.org) == recorded
    with system_context("test: audit"):
        assert AuditLog.objects.filter(action="attendee.resubscribe").count() == 2
    assert "Stop announcements and e-mails about" in browser.get(f"/attendee/{tokens[quiet.pk]}/").content.decode()
    # and: the earlier announcement stays in-app (no e-mail goes); the next one is e-mailed to both
    send_all_emails(earlier)
    assert [(d.channel, d.status) for d in deliveries(earlier)] == [("in_app", "delivered")] * 2
    assert mail.outbox == []
    later = sent_announcement(tenant_a.org, event, title="Later news")
    with tenant_context(tenant_a.org.pk):
        announcement_fanout(announcement_id=later.pk)
    send_all_emails(later)
    assert sorted(m.to[0] for m in mail.outbox) == sorted([fan.email, quiet.email])
