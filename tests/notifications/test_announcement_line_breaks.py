"""An announcement's body keeps its line breaks as "\\n" whoever wrote it: a browser's textarea
sends "\\r\\n", an API client may send either, and the API answers, the e-mail and the attendee's
page then all read the same text."""

from __future__ import annotations

import pytest

from apps.notifications.models import Announcement
from apps.notifications.services import announcement_create, announcement_update
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.notifications.helpers import event_with_attendees

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("typed", ["Line one\r\nline two\r\n\r\nBye", "Line one\rline two\r\rBye"])
def test_a_body_written_with_carriage_returns_is_kept_with_line_feeds(tenant_a, typed: str) -> None:
    # given: an event with an attendee
    org = tenant_a.org
    event, _ = event_with_attendees(org, consenting=1)
    with tenant_context(org.pk):
        # when: a draft is made with CR LF (or bare CR) line breaks, then changed the same way
        draft = announcement_create(
            tenant=org, event_id=event.pk, title="Soon", body=typed, actor=None, actor_label="t"
        )
        # then: it is kept with "\n" line breaks
        assert Announcement.objects.get(pk=draft.pk).body == "Line one\nline two\n\nBye"
        announcement_update(tenant_id=org.pk, announcement_id=draft.pk, actor_label="t", body=typed + "\r\nPS")
    with system_context("test"):
        assert Announcement.objects.get(pk=draft.pk).body == "Line one\nline two\n\nBye\nPS"


def test_an_edit_that_only_changes_line_breaks_changes_nothing(tenant_a) -> None:
    # given: a draft kept with "\n" line breaks
    org = tenant_a.org
    event, _ = event_with_attendees(org, consenting=1)
    with tenant_context(org.pk):
        draft = announcement_create(
            tenant=org, event_id=event.pk, title="Soon", body="a\nb", actor=None, actor_label="t"
        )
        # when: the same text comes back from a browser's textarea, with "\r\n"
        announcement_update(tenant_id=org.pk, announcement_id=draft.pk, actor_label="t", body="a\r\nb")
    # then: no edit is recorded (nothing changed)
    with system_context("test"):
        assert not AuditLog.objects.filter(action="announcement.update", target_id=str(draft.pk)).exists()
