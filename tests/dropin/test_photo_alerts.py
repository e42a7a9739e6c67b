"""E-mail alerts of new photos (apps/notifications/photo_alerts.py): armed by the drop-in job's
transaction for attendees who asked, sent once by the beat sweep after the delay, no more often
than the minimum interval, never to an attendee who saw the photos, turned alerts off or
unsubscribed (fake face backend, real Postgres, Django's in-memory mail outbox)."""

from __future__ import annotations

import io
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import IntegrityError, connection, transaction
from django.test import override_settings
from django.utils import timezone

from apps.dropin.faces.fake import fake_face_image
from apps.dropin.services import dropin_job_process, face_delete, selfie_register
from apps.notifications import photo_alerts
from apps.notifications.mailers import DjangoMailer, MailReport, OutgoingEmail
from apps.notifications.models import Attendee, Notification, PhotoAlert
from apps.notifications.photo_alerts import attendee_photo_alerts_set, photo_alerts_send_due
from apps.notifications.selectors import attendee_token
from apps.notifications.services import attendee_unsubscribe
from apps.ops.killswitch import CapabilityDisabled, kill_switch_engage, kill_switch_release
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.dropin.helpers import an_event, enrolled_face, photo_of

pytestmark = pytest.mark.django_db(transaction=True)

DELAY, INTERVAL = 300.0, 3600.0


@pytest.fixture(autouse=True)
def _alert_timing() -> Any:
    with override_settings(
        DROPIN_ALERT_DELAY_SECONDS=DELAY, DROPIN_ALERT_MIN_INTERVAL_SECONDS=INTERVAL, DROPIN_ALERT_MAX_ATTEMPTS=3
    ):
        yield


def alerts_on(org: Any, face: Any) -> None:
    with tenant_context(org.pk), transaction.atomic():
        attendee_photo_alerts_set(tenant_id=org.pk, attendee_id=face.attendee_id, enabled=True, actor_label="test")


def new_photo(org: Any, event: Any, identities: list[str]) -> None:
    """A new photo showing `identities`, rendered, and its drop-in job run (as the workers would)."""
    _, job_id = photo_of(org, event, identities, rendered=True)
    with tenant_context(org.pk):
        assert dropin_job_process(job_id=job_id).outcome == "succeeded"


def alert_of(face: Any) -> PhotoAlert | None:
    with system_context("test: alerts"):
        return PhotoAlert.objects.filter(attendee_id=face.attendee_id).first()


def send_at(moment: datetime) -> photo_alerts.AlertSendResult:
    return photo_alerts_send_due(now=moment)


def a_burst(tenant_a: Any) -> tuple[Any, Any, Any]:
    """Ann (alerts on) and Bob (no alerts) are in three new photos."""
    event = an_event(tenant_a.org)
    ann, bob = enrolled_face(tenant_a.org, event, "ann"), enrolled_face(tenant_a.org, event, "bob")
    alerts_on(tenant_a.org, ann)
    for _ in range(3):
        new_photo(tenant_a.org, event, ["ann", "bob"])
    return event, ann, bob


def test_one_email_for_a_burst_of_photos_after_the_delay_only_to_who_asked(tenant_a: Any) -> None:
    # given: three new photos of Ann and Bob; only Ann asked for e-mail alerts
    _, ann, bob = a_burst(tenant_a)
    armed = alert_of(ann)
    assert armed is not None and alert_of(bob) is None
    assert armed.due_at is not None and armed.generation == 3
    # when: the sweep runs before the delay is over
    assert send_at(armed.due_at - timedelta(seconds=1)).claimed == 0
    # then: nothing is sent; after it, one e-mail to Ann counts the three photos
    result = send_at(armed.due_at)
    assert (result.claimed, result.sent) == (1, 1)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ann@example.com"] and message.subject.startswith("3 new photos of you from ")
    token = attendee_token(tenant_id=tenant_a.org.pk, attendee_id=ann.attendee_id)
    assert (
        f"See them: http://127.0.0.1:8000/attendee/{token}/\n" in message.body
        and f"/attendee/{token}/drop-in" in message.body
    )
    assert message.extra_headers["List-Unsubscribe"].endswith(f"/attendee/{token}/unsubscribe>")
    assert message.extra_headers["Message-ID"].startswith(f"<photo-alert.{armed.pk}.1@")
    sent = alert_of(ann)
    assert sent is not None and (sent.due_at, sent.sent_count, sent.claim_token) == (None, 1, None)
    # and: a second sweep sends nothing more
    assert send_at(armed.due_at + timedelta(seconds=60)).claimed == 0
    assert len(mail.outbox) == 1


def test_the_next_email_waits_for_the_minimum_interval_and_counts_every_unseen_photo(tenant_a: Any) -> None:
    # given: Ann's first alert was sent
    event, ann, _ = a_burst(tenant_a)
    first = alert_of(ann)
    assert first is not None and first.due_at is not None
    send_at(first.due_at)
    sent_at = alert_of(ann).last_sent_at  # type: ignore[union-attr]
    # when: another photo of her arrives
    new_photo(tenant_a.org, event, ["ann"])
    # then: its alert is owed no sooner than the interval after the last e-mail
    owed = alert_of(ann)
    assert owed is not None and owed.due_at == sent_at + timedelta(seconds=INTERVAL)  # type: ignore[operator]
    assert send_at(owed.due_at - timedelta(seconds=1)).claimed == 0
    send_at(owed.due_at)
    # and: the e-mail counts the four photos she has not seen
    assert len(mail.outbox) == 2 and mail.outbox[1].subject.startswith("4 new photos of you")
    assert mail.outbox[1].extra_headers["Message-ID"].startswith(f"<photo-alert.{owed.pk}.2@")


def _saw_them(org: Any, face: Any) -> None:
    with tenant_context(org.pk):
        Notification.objects.filter(attendee_id=face.attendee_id).update(read_at=timezone.now())


def _turned_off(org: Any, face: Any) -> None:
    with tenant_context(org.pk), transaction.atomic():
        attendee_photo_alerts_set(tenant_id=org.pk, attendee_id=face.attendee_id, enabled=False, actor_label="t")


def _unsubscribed(org: Any, face: Any) -> None:
    with tenant_context(org.pk):
        attendee_unsubscribe(tenant_id=org.pk, attendee_id=face.attendee_id)


def _deleted_face(org: Any, face: Any) -> None:
    with tenant_context(org.pk):
        face_delete(tenant_id=org.pk, attendee_id=face.attendee_id, actor_label="t")


@pytest.mark.parametrize(
    "change",
    [_saw_them, _turned_off, _unsubscribed, _deleted_face],
    ids=["saw", "off", "unsubscribed", "deleted-face"],
)
def test_no_email_to_an_attendee_who_saw_the_photos_turned_alerts_off_unsubscribed_or_deleted_their_face(
    tenant_a: Any, change: Any
) -> None:
    # given: Ann's alert is owed
    _, ann, _ = a_burst(tenant_a)
    due = alert_of(ann).due_at  # type: ignore[union-attr]
    # when: before it is sent she reads her notifications, turns alerts off, unsubscribes or
    # deletes her face (withdrawing her consent to face matching)
    change(tenant_a.org, ann)
    send_at(due)  # type: ignore[arg-type]
    # then: no e-mail, and nothing is owed any more
    assert mail.outbox == []
    settled = alert_of(ann)
    assert settled is not None and (settled.due_at, settled.sent_count) == (None, 0)


def test_a_photo_arriving_while_the_alert_is_sent_keeps_it_owed(tenant_a: Any, monkeypatch: Any) -> None:
    # given: Ann's alert is owed, and another photo of her is matched while its e-mail is out
    event, ann, _ = a_burst(tenant_a)
    due = alert_of(ann).due_at  # type: ignore[union-attr]

    class MatchWhileSending(DjangoMailer):
        def send(self, messages: list[OutgoingEmail], *, from_email: str, deadline: float | None = None) -> MailReport:
            new_photo(tenant_a.org, event, ["ann"])
            return super().send(messages, from_email=from_email, deadline=deadline)

    monkeypatch.setattr(photo_alerts, "get_mailer", MatchWhileSending)
    # when: the sweep sends it
    send_at(due)  # type: ignore[arg-type]
    # then: that e-mail went out, and the new photo's alert is still owed after the interval
    assert len(mail.outbox) == 1
    owed = alert_of(ann)
    assert owed is not None and owed.generation == 4 and owed.sent_count == 1
    assert owed.due_at is not None and owed.due_at >= due + timedelta(seconds=INTERVAL)  # type: ignore[operator]


class FailingMailer:
    """A mail service that takes every message but gives no final answer (a passing failure), or
    refuses every recipient for good."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse

    def send(self, messages: list[OutgoingEmail], *, from_email: str, deadline: float | None = None) -> MailReport:
        if self.refuse:
            return MailReport(refused={m.key: "550 no such user" for m in messages})
        return MailReport(tried=[m.key for m in messages], interrupted="connection reset")


def test_a_passing_mail_failure_is_retried_with_backoff_then_given_up(tenant_a: Any, monkeypatch: Any) -> None:
    # given: Ann's alert is owed and the mail service keeps failing
    _, ann, _ = a_burst(tenant_a)
    moment = alert_of(ann).due_at  # type: ignore[union-attr]
    monkeypatch.setattr(photo_alerts, "get_mailer", FailingMailer)
    # when/then: each failure counts an attempt and waits longer, 60 s then 120 s
    for attempt, backoff in ((1, 60), (2, 120)):
        assert send_at(moment).retrying == 1  # type: ignore[arg-type]
        retry = alert_of(ann)
        assert retry is not None and retry.attempts == attempt and retry.claim_token is None
        assert retry.due_at == moment + timedelta(seconds=backoff)  # type: ignore[operator]
        assert send_at(retry.due_at - timedelta(seconds=1)).claimed == 0
        moment = retry.due_at
    # and: the third failure (DROPIN_ALERT_MAX_ATTEMPTS) gives the alert up
    assert send_at(moment).refused == 1  # type: ignore[arg-type]
    given_up = alert_of(ann)
    assert given_up is not None and (given_up.due_at, given_up.last_error) == (None, "connection reset")


def test_a_refused_recipient_is_final(tenant_a: Any, monkeypatch: Any) -> None:
    _, ann, _ = a_burst(tenant_a)
    due = alert_of(ann).due_at  # type: ignore[union-attr]
    monkeypatch.setattr(photo_alerts, "get_mailer", lambda: FailingMailer(refuse=True))
    assert send_at(due).refused == 1  # type: ignore[arg-type]
    refused = alert_of(ann)
    assert refused is not None and (refused.due_at, refused.last_error, refused.sent_count) == (
        None,
        "550 no such user",
        0,
    )


def test_a_sender_held_up_past_its_claim_hands_nothing_over(tenant_a: Any, monkeypatch: Any, settings: Any) -> None:
    # given: Ann's alert is owed; a claim lasts 2 s and one hand-over may take 1 s (EMAIL_TIMEOUT)
    settings.DROPIN_ALERT_CLAIM_SECONDS, settings.EMAIL_TIMEOUT = 2.0, 1
    _, ann, _ = a_burst(tenant_a)
    due = alert_of(ann).due_at  # type: ignore[union-attr]

    class HeldUp(DjangoMailer):
        def send(self, messages: list[OutgoingEmail], *, from_email: str, deadline: float | None = None) -> MailReport:
            time.sleep(1.2)  # paused between its claim and the hand-over (a GC pause, a slow host)
            return super().send(messages, from_email=from_email, deadline=deadline)

    monkeypatch.setattr(photo_alerts, "get_mailer", HeldUp)
    # when: the sweep sends it
    result = send_at(due)  # type: ignore[arg-type]
    # then: nothing went out (another sender may claim it in a moment and e-mail it): the alert is
    # released, still owed at its time, with no attempt spent
    assert len(mail.outbox) == 0 and result.retrying == 1
    owed = alert_of(ann)
    assert owed is not None and (owed.claim_token, owed.due_at, owed.attempts) == (None, due, 0)


def test_two_senders_at_once_send_each_alert_once(tenant_a: Any, monkeypatch: Any, settings: Any) -> None:
    # given: alerts owed to five attendees, and a slow mail service
    event = an_event(tenant_a.org)
    people = [f"p{i}" for i in range(5)]
    for person in people:
        alerts_on(tenant_a.org, enrolled_face(tenant_a.org, event, person))
    new_photo(tenant_a.org, event, people)
    with system_context("test"):
        due = max(a.due_at for a in PhotoAlert.objects.all())  # type: ignore[type-var]

    senders: set[str] = set()
    senders_lock, both_sending = threading.Lock(), threading.Event()

    class SlowMailer(DjangoMailer):
        def send(self, messages: list[OutgoingEmail], *, from_email: str, deadline: float | None = None) -> MailReport:
            # Each sender holds its first claimed alert until the other sender has claimed one too
            # (however late its thread starts on a loaded machine), then every send is slow.
            with senders_lock:
                senders.add(threading.current_thread().name)
                if len(senders) == 2:
                    both_sending.set()
            both_sending.wait(60)
            time.sleep(0.3)
            return super().send(messages, from_email=from_email, deadline=deadline)

    monkeypatch.setattr(photo_alerts, "get_mailer", SlowMailer)
    settings.DROPIN_ALERT_BATCH = 1  # one alert per claim: the two senders' claims interleave
    results: list[photo_alerts.AlertSendResult] = []
    barrier = threading.Barrier(2)

    def sender() -> None:
        try:
            barrier.wait()
            results.append(photo_alerts_send_due(now=due))
        finally:
            connection.close()

    # when: two sweeps run at once
    threads = [threading.Thread(target=sender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then: every attendee got exactly one e-mail
    assert sorted(m.to[0] for m in mail.outbox) == sorted(f"{p}@example.com" for p in people)
    assert sum(r.sent for r in results) == 5 and all(r.sent for r in results)  # both took a share


def test_the_drop_in_kill_switch_pauses_alerts(tenant_a: Any) -> None:
    _, ann, _ = a_burst(tenant_a)
    due = alert_of(ann).due_at  # type: ignore[union-attr]
    kill_switch_engage(capability="dropin", reason="incident", actor_label="ops", cooldown_seconds=0)
    try:
        with pytest.raises(CapabilityDisabled):
            send_at(due)  # type: ignore[arg-type]
        assert mail.outbox == [] and alert_of(ann).due_at == due  # type: ignore[union-attr]
    finally:
        kill_switch_release(capability="dropin", actor_label="ops", force=True)
    assert send_at(due).sent == 1  # type: ignore[arg-type]


def test_the_alert_row_refuses_impossible_states(tenant_a: Any) -> None:
    _, ann, _ = a_burst(tenant_a)
    with tenant_context(tenant_a.org.pk):
        for bad in ({"generation": 0}, {"attempts": -1}, {"claim_token": "6a0c9f4e-2f2c-4a8e-9a59-2b1c1f1f0c11"}):
            with pytest.raises(IntegrityError), transaction.atomic():
                PhotoAlert.objects.filter(attendee_id=ann.attendee_id).update(**bad)
        with pytest.raises(IntegrityError), transaction.atomic():
            PhotoAlert.objects.create(tenant_id=tenant_a.org.pk, attendee_id=ann.attendee_id)


def test_the_selfie_registration_can_ask_for_alerts_and_choices_are_audited(tenant_a: Any) -> None:
    # given: an event; when: Ann registers her selfie asking for alerts
    event = an_event(tenant_a.org)
    image = fake_face_image(["ann"])

    def register(**extra: Any) -> Any:
        with tenant_context(tenant_a.org.pk), transaction.atomic():
            return selfie_register(
                tenant_id=tenant_a.org.pk,
                event_id=event.pk,
                email="ann@example.com",
                consent=True,
                image=io.BytesIO(image),
                image_size=len(image),
                actor_label="test",
                **extra,
            )

    face = register(photo_alerts=True)
    # then: she is signed up; registering again without asking keeps her choice
    register()
    with tenant_context(tenant_a.org.pk):
        assert Attendee.objects.get(pk=face.attendee_id).photo_alerts_at is not None
    with system_context("test: audit"):
        actions = list(AuditLog.objects.filter(target_type="attendee").values_list("action", flat=True))
    assert actions.count("attendee.photo_alerts_on") == 1


def test_the_attendee_turns_alerts_on_and_off_on_their_drop_in_page(tenant_a: Any, client: Any) -> None:
    # given: Ann's drop-in page
    event = an_event(tenant_a.org)
    ann = enrolled_face(tenant_a.org, event, "ann")
    token = attendee_token(tenant_id=tenant_a.org.pk, attendee_id=ann.attendee_id)
    page = f"/attendee/{token}/drop-in"
    assert "Also e-mail me at ann@example.com" in client.get(page).content.decode()
    # when: she turns alerts on
    response = client.post(f"{page}/alerts", {"alerts": "on"})
    # then: they are on, and the page offers to stop them
    assert response.status_code == 303 and response["Location"] == page
    body = client.get(page).content.decode()
    assert "Stop e-mailing me" in body and "at most one e-mail an hour" in body
    # when: she turns them off, or sends nonsense
    assert client.post(f"{page}/alerts", {"alerts": "off"}).status_code == 303
    assert client.post(f"{page}/alerts", {"alerts": "maybe"}).status_code == 400
    with tenant_context(tenant_a.org.pk):
        assert Attendee.objects.get(pk=ann.attendee_id).photo_alerts_at is None


def test_alerts_owed_show_on_metrics(tenant_a: Any, client: Any) -> None:
    # given: Ann's alert is past its due time
    _, ann, _ = a_burst(tenant_a)
    with system_context("test"):
        PhotoAlert.objects.filter(attendee_id=ann.attendee_id).update(due_at=timezone.now() - timedelta(seconds=90))
    # then: /metrics reports it overdue
    text = client.get("/metrics").content.decode()
    assert "darkroom_photo_alerts_overdue 1.0" in text
    overdue = next(
        line for line in text.splitlines() if line.startswith("darkroom_photo_alerts_oldest_overdue_seconds")
    )
    assert float(overdue.split()[1]) >= 90


def test_a_job_run_arms_alerts_only_for_who_asked(tenant_a: Any) -> None:
    # given: nobody asked for alerts; when: a photo of them is processed
    event = an_event(tenant_a.org)
    enrolled_face(tenant_a.org, event, "ann")
    new_photo(tenant_a.org, event, ["ann"])
    # then: no alert row exists
    with system_context("test"):
        assert PhotoAlert.objects.count() == 0
