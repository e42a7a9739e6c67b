"""The announcements list counts every row's deliveries in one query, with the statuses the
notifications app derives one announcement at a time."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.notifications.models import Announcement, AnnouncementDelivery
from apps.notifications.selectors import announcement_status
from apps.notifications.services import AttendeeIn, announcement_create, announcement_send, attendees_register
from apps.tenancy.context import tenant_context
from apps.web.studio import selectors
from tests.commerce.helpers import drain_outbox
from tests.web.studio.conftest import StudioPeople, new_event, signed_in


def _announce(studio: StudioPeople, event_id: int, title: str, *, send: bool) -> Announcement:
    with tenant_context(studio.org.pk):
        announcement = announcement_create(
            tenant=studio.org, event_id=event_id, title=title, body="b", actor=studio.owner, actor_label="test"
        )
        if send:
            announcement_send(tenant_id=studio.org.pk, announcement_id=announcement.pk, actor_label="test")
    return announcement


@pytest.mark.django_db(transaction=True)  # the fan-out commits one transaction per chunk
def test_the_list_reads_delivery_counts_in_one_query_whatever_its_length(studio: StudioPeople) -> None:
    # given: a sent announcement, one whose deliveries partly failed, and a draft
    event = new_event(studio.org, title="City Marathon")
    with tenant_context(studio.org.pk):
        attendees_register(
            tenant=studio.org,
            event_id=event.pk,
            attendees=[AttendeeIn(email=f"runner{i}@example.test", email_consent=True) for i in range(2)],
            actor_label="test",
        )
    sent = _announce(studio, event.pk, "All went out", send=True)
    half = _announce(studio, event.pk, "Half failed", send=True)
    _announce(studio, event.pk, "Draft", send=False)
    drain_outbox()
    with tenant_context(studio.org.pk):
        deliveries = AnnouncementDelivery.objects.filter(announcement__in=[sent, half]).order_by("id")
        assert deliveries.count() == 4
        deliveries.update(status=AnnouncementDelivery.Status.DELIVERED)
        failed = AnnouncementDelivery.objects.filter(announcement=half).order_by("id")[0]
        AnnouncementDelivery.objects.filter(pk=failed.pk).update(
            status=AnnouncementDelivery.Status.FAILED, last_error="mailbox full"
        )
    client = signed_in(studio.owner)
    client.get("/studio/announcements/")  # first request of the session: warms what is cached
    # when: the list is read with three rows, then with eleven
    with CaptureQueriesContext(connection) as three:
        assert client.get("/studio/announcements/").status_code == 200
    for i in range(8):
        _announce(studio, event.pk, f"Draft {i}", send=False)
    with CaptureQueriesContext(connection) as eleven:
        assert client.get("/studio/announcements/").status_code == 200
    # then: the same number of queries
    assert len(eleven.captured_queries) == len(three.captured_queries)
    # and: each row says what the notifications app says of it
    with tenant_context(studio.org.pk):
        rows = selectors.announcement_rows(selectors.announcements_of_studio(tenant_id=studio.org.pk))
        assert {r.status.status for r in rows} == {"sent", "partially_failed", "draft"}
        assert [r.status for r in rows] == [announcement_status(r.announcement) for r in rows]


@pytest.mark.django_db(transaction=True)  # the fan-out commits one transaction per chunk
def test_a_partly_failed_announcement_reads_as_words_on_its_page_and_in_the_list(studio: StudioPeople) -> None:
    # given: an announcement to two attendees, one of whose deliveries failed
    event = new_event(studio.org, title="City Marathon")
    with tenant_context(studio.org.pk):
        attendees_register(
            tenant=studio.org,
            event_id=event.pk,
            attendees=[AttendeeIn(email=f"runner{i}@example.test", email_consent=True) for i in range(2)],
            actor_label="test",
        )
    half = _announce(studio, event.pk, "Half failed", send=True)
    drain_outbox()
    with tenant_context(studio.org.pk):
        first, second = AnnouncementDelivery.objects.filter(announcement=half).order_by("id")
        AnnouncementDelivery.objects.filter(pk=first.pk).update(status=AnnouncementDelivery.Status.DELIVERED)
        AnnouncementDelivery.objects.filter(pk=second.pk).update(
            status=AnnouncementDelivery.Status.FAILED, last_error="mailbox full"
        )
    client = signed_in(studio.owner)
    # when: the owner reads its page and the list
    page = client.get(f"/studio/announcements/{half.pk}/").content.decode()
    listing = client.get("/studio/announcements/").content.decode()
    # then: both say it in words, never the status's code name
    assert 'class="status-partially_failed">partially failed<' in page
    assert 'class="status-partially_failed" data-label="Status">partially failed<' in listing
    assert ">partially_failed<" not in page + listing
