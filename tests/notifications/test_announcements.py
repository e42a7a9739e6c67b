"""Announcements: the fenced fan-out (one delivery and one notification per attendee, whatever
crashes, repeats or races), the e-mail senders (real SMTP on loopback), the derived status, and
the lost-message sweep."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import override_settings
from django.utils import timezone

from apps.core.locks import LockBusy, StaleLeaseError, fenced_lock
from apps.notifications import services
from apps.notifications.models import Announcement, AnnouncementDelivery, Attendee, Notification
from apps.notifications.selectors import announcement_status, attendee_token, delivery_stats
from apps.notifications.services import (
    TOPIC_SEND_REQUESTED,
    DeliveryInterrupted,
    announcement_emails_send,
    announcement_fanout,
    attendee_unsubscribe,
    deliveries_requeue_stale,
    fanouts_requeue_stale,
    lease_name,
)
from apps.outbox.models import OutboxMessage
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.notifications.helpers import (
    deliveries,
    email_messages,
    event_with_attendees,
    notifications_of,
    send_all_emails,
    sent_announcement,
    smtp_server,
)

pytestmark = pytest.mark.django_db(transaction=True)


def fanout(announcement: Announcement, *, chunk: int | None = None) -> services.FanoutResult:
    with tenant_context(announcement.tenant_id):
        return announcement_fanout(announcement_id=announcement.pk, chunk=chunk)


def fanned_out_announcement(org: Any, *, consenting: int) -> Announcement:
    """An announcement sent to an event's `consenting` attendees (who agreed to e-mail), its fan-out run."""
    event, _ = event_with_attendees(org, consenting=consenting)
    announcement = sent_announcement(org, event)
    fanout(announcement)
    return announcement


def status_of(announcement: Announcement) -> Any:
    with system_context("test: status"):
        return announcement_status(Announcement.objects.get(pk=announcement.pk))


def test_an_announcement_reaches_each_attendee_once_by_email_or_in_app(tenant_a: Any) -> None:
    # given: five attendees who agreed to e-mail, two who did not, one who unsubscribed
    event, attendees = event_with_attendees(tenant_a.org, consenting=6, silent=2)
    with tenant_context(tenant_a.org.pk):
        attendee_unsubscribe(tenant_id=tenant_a.org.pk, attendee_id=attendees[5].pk)
    announcement = sent_announcement(tenant_a.org, event)
    assert status_of(announcement).status == "sending"

    # when: the fan-out runs in chunks of three, then the e-mail messages are consumed
    result = fanout(announcement, chunk=3)
    assert (result.chunks, result.deliveries, result.completed) == (3, 7, True)
    assert status_of(announcement).status == "sending"  # e-mails pending
    with smtp_server() as smtp:
        results = send_all_emails(announcement)

        # then: one e-mail per consenting subscribed attendee, with its Message-ID and unsubscribe link
        assert sum(r.delivered for r in results) == 5
        assert sorted(m["to"][0] for m in smtp.messages) == [f"fan{i}@example.com" for i in range(5)]
    first = smtp.messages[0]["headers"]
    # and: each e-mail links its attendee's own page (where drop-in is registered)
    with tenant_context(tenant_a.org.pk):
        first_to = Attendee.objects.get(email=smtp.messages[0]["to"][0])
    page = f"/attendee/{attendee_token(tenant_id=tenant_a.org.pk, attendee_id=first_to.pk)}/\r\n"
    assert page in smtp.messages[0]["body"]
    assert first["Subject"] == "Photos are online"
    assert first["Message-ID"].startswith(f"<announcement.{announcement.pk}.")
    assert "/attendee/" in first["List-Unsubscribe"] and first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # and: every subscribed attendee has one delivery and one notification; the unsubscribed none
    rows = deliveries(announcement)
    assert [(d.channel, d.status) for d in rows] == [("email", "delivered")] * 5 + [("in_app", "delivered")] * 2
    assert {d.attendee_id for d in rows} == {a.pk for a in attendees} - {attendees[5].pk}
    assert [n.attendee_id for n in notifications_of(tenant_a.org)] == [d.attendee_id for d in rows]
    assert status_of(announcement) == services_status("sent", delivered=7)


def services_status(status: str, *, delivered: int = 0, failed: int = 0, pending: int = 0) -> Any:
    from apps.notifications.selectors import AnnouncementStatus

    return AnnouncementStatus(
        status=status, recipients=delivered + failed + pending, delivered=delivered, failed=failed, pending=pending
    )


def test_sending_twice_fans_out_once(tenant_a: Any) -> None:
    event, _ = event_with_attendees(tenant_a.org, consenting=2)
    announcement = sent_announcement(tenant_a.org, event)
    with tenant_context(tenant_a.org.pk):
        again = services.announcement_send(tenant_id=tenant_a.org.pk, announcement_id=announcement.pk, actor_label="x")
    assert again.send_requested_at == announcement.send_requested_at
    with system_context("test"):
        assert OutboxMessage.objects.filter(topic=TOPIC_SEND_REQUESTED).count() == 1
        assert AuditLog.objects.filter(action="announcement.send").count() == 1
    # when: the fan-out message is delivered twice
    fanout(announcement)
    second = fanout(announcement)
    # then: the second run finds it complete and writes nothing
    assert second.completed and second.deliveries == 0
    assert len(deliveries(announcement)) == 2 and len(email_messages(announcement)) == 1


def test_an_attendee_registered_after_the_send_is_not_told(tenant_a: Any) -> None:
    # given: an announcement sent to an event's two attendees, its fan-out not run yet
    event, before = event_with_attendees(tenant_a.org, consenting=2)
    announcement = sent_announcement(tenant_a.org, event)
    # when: the studio registers a third attendee, then the fan-out runs (a slow queue, a paused
    # kill switch, a resumed fan-out: whenever it reaches them)
    with tenant_context(tenant_a.org.pk):
        services.attendees_register(
            tenant=tenant_a.org,
            event_id=event.pk,
            attendees=[services.AttendeeIn(email="late@example.com", email_consent=True)],
            actor_label="test",
        )
    result = fanout(announcement)
    # then: the audience is the one of the moment it was sent
    assert result.completed and result.deliveries == 2
    assert [d.attendee_id for d in deliveries(announcement)] == [a.pk for a in before]
    assert len(notifications_of(tenant_a.org)) == 2


def test_a_fanout_that_crashed_midway_is_finished_by_the_next_run_without_doubles(
    tenant_a: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: seven attendees and a fan-out that dies writing its second chunk of three
    event, attendees = event_with_attendees(tenant_a.org, consenting=7)
    announcement = sent_announcement(tenant_a.org, event)
    real = services._fanout_chunk
    calls = {"n": 0}

    def dies_on_second(**kwargs: Any) -> int | None:
        calls["n"] += 1
        written = real(**kwargs)
        if calls["n"] == 2:
            raise RuntimeError("worker killed mid-chunk")
        return written

    monkeypatch.setattr(services, "_fanout_chunk", dies_on_second)
    with pytest.raises(RuntimeError):
        fanout(announcement, chunk=3)
    monkeypatch.setattr(services, "_fanout_chunk", real)
    assert len(deliveries(announcement)) == 3  # the second chunk rolled back with its cursor

    # when: the message is redelivered
    result = fanout(announcement, chunk=3)

    # then: it went on from the cursor; every attendee once, the e-mail ranges disjoint
    assert (result.chunks, result.deliveries) == (2, 4)
    assert [d.attendee_id for d in deliveries(announcement)] == [a.pk for a in attendees]
    ranges = [(m["after"], m["upto"]) for m in email_messages(announcement)]
    assert ranges == [(0, attendees[2].pk), (attendees[2].pk, attendees[5].pk), (attendees[5].pk, attendees[6].pk)]


def test_a_fanout_that_lost_its_lease_is_refused_by_its_epoch(tenant_a: Any) -> None:
    # given: five attendees and a fan-out that wrote one chunk, then stalled past its lease TTL
    event, attendees = event_with_attendees(tenant_a.org, consenting=5)
    announcement = sent_announcement(tenant_a.org, event)
    with tenant_context(tenant_a.org.pk), fenced_lock(lease_name(announcement.pk), ttl=0.5) as stale:
        with stale.atomic():
            services._fanout_chunk(announcement=Announcement.objects.get(pk=announcement.pk), size=2)
        time.sleep(0.7)  # the Redis key expires: the holder is paused, not dead

        # when: the redelivered message's fan-out takes over and finishes
        result = announcement_fanout(announcement_id=announcement.pk, chunk=2)

        # then: the stale holder cannot commit another chunk
        with pytest.raises(StaleLeaseError), stale.atomic():
            services._fanout_chunk(
                announcement=Announcement.objects.select_for_update().get(pk=announcement.pk), size=2
            )
    assert result.completed and result.deliveries == 3
    assert [d.attendee_id for d in deliveries(announcement)] == [a.pk for a in attendees]


def test_concurrent_fanouts_deliver_to_each_attendee_once(tenant_a: Any) -> None:
    event, attendees = event_with_attendees(tenant_a.org, consenting=20, silent=5)
    announcement = sent_announcement(tenant_a.org, event)
    barrier = threading.Barrier(3)
    outcomes: list[Any] = []

    def run() -> None:
        try:
            barrier.wait()
            outcomes.append(fanout(announcement, chunk=4))
        except Exception as exc:  # noqa: BLE001 - reported below
            outcomes.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then: whoever ran (the others found the lease busy: their task would retry), each attendee
    # has one delivery and one notification
    ran = [o for o in outcomes if not isinstance(o, LockBusy)]
    assert ran and all(not isinstance(o, Exception) for o in ran), outcomes
    assert sum(o.deliveries for o in ran) == 25
    assert sorted(d.attendee_id for d in deliveries(announcement)) == [a.pk for a in attendees]
    assert len(notifications_of(tenant_a.org)) == 25


def test_a_refused_recipient_fails_alone_and_the_announcement_is_partially_failed(tenant_a: Any) -> None:
    announcement = fanned_out_announcement(tenant_a.org, consenting=4)
    with smtp_server() as smtp:
        smtp.refuse.add("fan1@example.com")
        (result,) = send_all_emails(announcement)
    assert (result.delivered, result.failed, result.left_pending) == (3, 1, 0)
    failed = [d for d in deliveries(announcement) if d.status == "failed"]
    assert len(failed) == 1 and "SMTPRecipientsRefused" in failed[0].last_error
    assert status_of(announcement) == services_status("partially_failed", delivered=3, failed=1)


def test_a_recipient_the_server_defers_is_tried_again_not_failed(tenant_a: Any) -> None:
    # given: three e-mails, and a server that answers one recipient "450 try again later"
    announcement = fanned_out_announcement(tenant_a.org, consenting=3)
    with smtp_server() as smtp:
        smtp.defer.add("fan1@example.com")
        # when: the chunk is sent
        with pytest.raises(DeliveryInterrupted):
            send_all_emails(announcement)
        # then: the deferred e-mail is pending with one attempt, not failed for good
        rows = deliveries(announcement)
        assert [(d.status, d.attempts) for d in rows[:2]] == [("delivered", 1), ("pending", 1)]
        assert "450" in rows[1].last_error
        # when: the server takes it on the retry
        smtp.defer.clear()
        send_all_emails(announcement)
        # then: everyone got it once, and the announcement is sent
        assert sorted(m["to"][0] for m in smtp.messages) == [f"fan{i}@example.com" for i in range(3)]
    assert status_of(announcement).status == "sent"


def test_a_server_that_goes_away_counts_an_attempt_only_for_the_email_it_was_given(
    tenant_a: Any, settings: Any
) -> None:
    # given: five e-mails and a server that accepts two, then says it is shutting down
    settings.ANNOUNCEMENT_EMAIL_MAX_ATTEMPTS = 2
    announcement = fanned_out_announcement(tenant_a.org, consenting=5)

    with smtp_server() as smtp:
        smtp.accept_at_most = 2
        # when: the chunk is sent
        with pytest.raises(DeliveryInterrupted):
            send_all_emails(announcement)
        # then: two delivered; the third was tried once; the last two were never handed over
        rows = deliveries(announcement)
        assert [(d.status, d.attempts) for d in rows] == [("delivered", 1)] * 2 + [("pending", 1)] + [
            ("pending", 0)
        ] * 2
        assert all(d.claim_token is None and "SMTPDataError" in d.last_error for d in rows[2:])
        assert status_of(announcement).status == "sending"

        # when: the retry meets the same failure
        with pytest.raises(DeliveryInterrupted):
            send_all_emails(announcement)
        # then: only the e-mail that reached the attempt limit fails; nothing was sent twice
        assert [(d.status, d.attempts) for d in deliveries(announcement)][2:] == [
            ("failed", 2),
            ("pending", 0),
            ("pending", 0),
        ]
        assert smtp.count == 2


def test_a_sender_stops_handing_over_before_its_claim_lapses_so_nobody_is_emailed_twice(
    tenant_a: Any, settings: Any
) -> None:
    # given: eight e-mails, a claim of 2 s, and a slow server that takes 0.4 s per message (the
    # batch takes longer than the claim)
    settings.ANNOUNCEMENT_EMAIL_CLAIM_SECONDS = 2
    announcement = fanned_out_announcement(tenant_a.org, consenting=8)
    outcomes: list[Any] = []

    def first_sender() -> None:
        try:
            outcomes.extend(send_all_emails(announcement))
        except Exception as exc:  # noqa: BLE001 - reported below
            outcomes.append(exc)
        finally:
            connection.close()

    with smtp_server() as smtp, override_settings(EMAIL_TIMEOUT=1):
        smtp.delay_seconds = 0.4
        # when: a second sender (a redelivered message, the lost-message sweep) comes once the
        # first one's claim has lapsed
        thread = threading.Thread(target=first_sender)
        thread.start()
        time.sleep(2.3)
        with contextlib.suppress(DeliveryInterrupted):
            send_all_emails(announcement)
        thread.join(timeout=60)
        smtp.delay_seconds = 0
        send_all_emails(announcement)  # the retry finishes what is left
        # then: every attendee got the e-mail exactly once, and every delivery says so
        sent_to = sorted(m["to"][0] for m in smtp.messages)
    assert sent_to == sorted(f"fan{i}@example.com" for i in range(8))
    assert [d.status for d in deliveries(announcement)] == ["delivered"] * 8
    assert all(isinstance(o, (services.SendResult, DeliveryInterrupted)) for o in outcomes), outcomes


def test_a_message_the_server_rejects_for_good_fails_alone(tenant_a: Any) -> None:
    announcement = fanned_out_announcement(tenant_a.org, consenting=3)
    with smtp_server() as smtp:
        smtp.reject_message_to.add("fan0@example.com")
        (result,) = send_all_emails(announcement)
        assert (result.delivered, result.failed, smtp.count) == (2, 1, 2)
    assert "554" in deliveries(announcement)[0].last_error
    assert status_of(announcement).status == "partially_failed"


def test_an_attendee_who_unsubscribed_or_withdrew_consent_after_the_fanout_gets_no_email(tenant_a: Any) -> None:
    # given: deliveries written, then (racing the chunk's commit) one attendee unsubscribed and one
    # lost consent in a re-import, without their pending e-mails being changed
    event, attendees = event_with_attendees(tenant_a.org, consenting=3)
    announcement = sent_announcement(tenant_a.org, event)
    fanout(announcement)
    with system_context("test: race"):
        Attendee.objects.filter(pk=attendees[0].pk).update(unsubscribed_at=timezone.now())
        Attendee.objects.filter(pk=attendees[1].pk).update(email_consent=False)
    # when: the sender runs
    with smtp_server() as smtp:
        send_all_emails(announcement)
        # then: only the third attendee is e-mailed; the others are told in-app
        assert [m["to"][0] for m in smtp.messages] == ["fan2@example.com"]
    assert [(d.channel, d.status) for d in deliveries(announcement)] == [
        ("in_app", "delivered"),
        ("in_app", "delivered"),
        ("email", "delivered"),
    ]


def test_a_long_fanout_continues_in_a_new_task_from_its_cursor(tenant_a: Any) -> None:
    event, attendees = event_with_attendees(tenant_a.org, consenting=5)
    announcement = sent_announcement(tenant_a.org, event)
    # when: each slice ends after one chunk of two
    with tenant_context(tenant_a.org.pk):
        slices = [announcement_fanout(announcement_id=announcement.pk, chunk=2, slice_seconds=1e-9) for _ in range(4)]
    # then: three slices wrote a chunk each and queued a continuation; the fourth found the end
    assert [(r.chunks, r.continued, r.completed) for r in slices] == [(1, True, False)] * 3 + [(0, False, True)]
    with system_context("test"):
        assert OutboxMessage.objects.filter(topic=TOPIC_SEND_REQUESTED).count() == 4
    assert [d.attendee_id for d in deliveries(announcement)] == [a.pk for a in attendees]


def test_a_retry_after_the_server_came_back_sends_only_the_rest(tenant_a: Any) -> None:
    announcement = fanned_out_announcement(tenant_a.org, consenting=4)
    with smtp_server() as smtp:
        smtp.accept_at_most = 1
        with pytest.raises(DeliveryInterrupted):
            send_all_emails(announcement)
        smtp.accept_at_most = None
        (retry,) = send_all_emails(announcement)
        assert retry.delivered == 3
        assert sorted(m["to"][0] for m in smtp.messages) == [f"fan{i}@example.com" for i in range(4)]
    assert status_of(announcement).status == "sent"


def test_a_live_claim_keeps_a_second_sender_off(tenant_a: Any) -> None:
    # given: a chunk claimed by a sender that is still within its claim
    announcement = fanned_out_announcement(tenant_a.org, consenting=3)
    with system_context("test: claim"):
        AnnouncementDelivery.objects.filter(announcement=announcement).update(
            claimed_until=timezone.now() + timedelta(minutes=5)
        )
    # when: a duplicate message's sender runs
    with smtp_server() as smtp:
        (result,) = send_all_emails(announcement)
        # then: it claims and sends nothing
        assert result.claimed == 0 and smtp.count == 0


def test_no_mail_server_leaves_everything_pending(tenant_a: Any, settings: Any) -> None:
    announcement = fanned_out_announcement(tenant_a.org, consenting=2)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2  # discard: refused
    with pytest.raises(DeliveryInterrupted):
        send_all_emails(announcement)
    assert [(d.status, d.attempts, d.claim_token) for d in deliveries(announcement)] == [("pending", 0, None)] * 2


def test_unsubscribing_turns_unsent_emails_into_in_app_deliveries(tenant_a: Any) -> None:
    event, attendees = event_with_attendees(tenant_a.org, consenting=3)
    announcement = sent_announcement(tenant_a.org, event)
    fanout(announcement)
    with tenant_context(tenant_a.org.pk):
        assert attendee_unsubscribe(tenant_id=tenant_a.org.pk, attendee_id=attendees[0].pk)
        assert not attendee_unsubscribe(tenant_id=tenant_a.org.pk, attendee_id=attendees[0].pk)
    with smtp_server() as smtp:
        send_all_emails(announcement)
        assert sorted(m["to"][0] for m in smtp.messages) == ["fan1@example.com", "fan2@example.com"]
    first = deliveries(announcement)[0]
    assert (first.channel, first.status) == ("in_app", "delivered")
    assert status_of(announcement).status == "sent"


def test_an_empty_audience_is_sent_at_once(tenant_a: Any) -> None:
    event, _ = event_with_attendees(tenant_a.org, consenting=0)
    announcement = sent_announcement(tenant_a.org, event)
    assert fanout(announcement).completed
    assert status_of(announcement) == services_status("sent")
    assert email_messages(announcement) == []


def test_a_draft_is_not_fanned_out(tenant_a: Any) -> None:
    event, _ = event_with_attendees(tenant_a.org, consenting=2)
    with tenant_context(tenant_a.org.pk):
        draft = services.announcement_create(
            tenant=tenant_a.org, event_id=event.pk, title="t", body="b", actor=None, actor_label="t"
        )
    result = fanout(draft)
    assert not result.completed and deliveries(draft) == []
    assert status_of(draft).status == "draft"


def test_lost_messages_are_asked_for_again(tenant_a: Any) -> None:
    # given: an announcement whose fan-out message was lost, and one whose e-mail message was
    event, _ = event_with_attendees(tenant_a.org, consenting=3)
    lost_fanout = sent_announcement(tenant_a.org, event, title="lost fan-out")
    lost_emails = sent_announcement(tenant_a.org, event, title="lost e-mails")
    fanout(lost_emails)
    long_ago = timezone.now() - timedelta(hours=1)
    with system_context("test: age"):
        Announcement.objects.filter(pk=lost_fanout.pk).update(fanout_queued_at=long_ago)
        AnnouncementDelivery.objects.filter(announcement=lost_emails).update(queued_at=long_ago)
    # when: the sweep runs (twice)
    with system_context("test: sweep"):
        assert fanouts_requeue_stale(older_than_seconds=600) == 1
        assert deliveries_requeue_stale(older_than_seconds=600) == 3
        assert (fanouts_requeue_stale(older_than_seconds=600), deliveries_requeue_stale(older_than_seconds=600)) == (
            0,
            0,
        )
        fanout_messages = OutboxMessage.objects.filter(topic=TOPIC_SEND_REQUESTED, aggregate_id=str(lost_fanout.pk))
        assert fanout_messages.count() == 2
    # then: the e-mail message covers the stale e-mails, and consuming it sends them once
    assert len(email_messages(lost_emails)) == 2
    with smtp_server() as smtp:
        send_all_emails(lost_emails)
        assert smtp.count == 3
    assert status_of(lost_emails).status == "sent"


def test_metrics_show_pending_emails_and_unfinished_fanouts(tenant_a: Any) -> None:
    event, _ = event_with_attendees(tenant_a.org, consenting=2)
    sent_announcement(tenant_a.org, event)
    fanout(sent_announcement(tenant_a.org, event))
    with system_context("test: metrics"):
        stats = delivery_stats()
    assert (stats.pending_emails, stats.unfinished_fanouts) == (2, 1)
    with system_context("test: age"):
        AnnouncementDelivery.objects.update(created_at=timezone.now() - timedelta(minutes=5))
        assert 299 <= delivery_stats().oldest_pending_age_seconds < 400


@pytest.mark.parametrize(
    ("model", "overrides"),
    [
        ("delivery", {"channel": "in_app", "status": "pending"}),
        ("delivery", {"channel": "sms"}),
        ("delivery", {"status": "delivered", "delivered_at": None}),
        ("attendee", {"email": "Upper@Example.com"}),
        ("attendee", {"email_consent": True, "consent_recorded_at": None}),
        ("notification", {"kind": "spam"}),
    ],
)
def test_constraints_refuse_bad_rows(tenant_a: Any, model: str, overrides: dict[str, Any]) -> None:
    event, attendees = event_with_attendees(tenant_a.org, consenting=1)
    announcement = sent_announcement(tenant_a.org, event)
    fanout(announcement)
    with tenant_context(tenant_a.org.pk), pytest.raises(IntegrityError), transaction.atomic():
        if model == "delivery":
            AnnouncementDelivery.objects.filter(announcement=announcement).update(**overrides)
        elif model == "attendee":
            Attendee.objects.filter(pk=attendees[0].pk).update(**overrides)
        else:
            Notification.objects.filter(attendee=attendees[0]).update(**overrides)


def test_one_notification_per_attendee_and_key(tenant_a: Any) -> None:
    _, attendees = event_with_attendees(tenant_a.org, consenting=1)
    with tenant_context(tenant_a.org.pk):
        fields = {"tenant": tenant_a.org, "attendee": attendees[0], "kind": "announcement", "title": "t", "body": "b"}
        Notification.objects.create(dedupe_key="announcement:1", **fields)
        with pytest.raises(IntegrityError), transaction.atomic():
            Notification.objects.create(dedupe_key="announcement:1", **fields)


def test_another_studio_sees_no_attendees_or_announcements(tenant_a: Any, tenant_b: Any) -> None:
    event, _ = event_with_attendees(tenant_a.org, consenting=2)
    fanout(sent_announcement(tenant_a.org, event))
    with tenant_context(tenant_b.org.pk):
        assert not Attendee.objects.exists()
        assert not Announcement.objects.exists()
        assert not AnnouncementDelivery.objects.exists()
        assert not Notification.objects.exists()


def test_the_fanout_refuses_to_run_inside_a_transaction(tenant_a: Any) -> None:
    with transaction.atomic(), pytest.raises(transaction.TransactionManagementError):
        announcement_fanout(announcement_id=1)
    with transaction.atomic(), pytest.raises(transaction.TransactionManagementError):
        announcement_emails_send(announcement_id=1, after=0, upto=1)
