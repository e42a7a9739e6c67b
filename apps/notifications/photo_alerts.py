"""E-mail alerts of new photos (drop-in): an attendee who asked for them (`Attendee.photo_alerts_at`)
gets an e-mail when new photos of them arrive, at most one per DROPIN_ALERT_MIN_INTERVAL_SECONDS.

1. `photo_alerts_arm` runs inside the drop-in job's fenced success transaction, which writes the
   attendees' `new_photos` notifications: each matched attendee who asked for alerts (and did not
   unsubscribe) gets their `PhotoAlert` row armed in the same transaction. An alert not yet owed
   becomes due DROPIN_ALERT_DELAY_SECONDS later (so one burst of uploads makes one e-mail), and
   never sooner than the minimum interval after the last e-mail; one already owed keeps its time.
   Every arming adds 1 to `generation`. The row is the durable intent: no broker message can be
   lost, since the beat sweep below finds what is owed.
2. `photo_alerts_send_due` (beat task `notifications.photo_alerts_send`) claims owed alerts with a
   token (SKIP LOCKED, so senders never wait on each other, and a claim lapses after
   DROPIN_ALERT_CLAIM_SECONDS), builds each e-mail from the attendee's unread `new_photos`
   notifications, sends outside any transaction through the announcements' mailer, and records
   each outcome under its token. An alert whose attendee has since turned alerts off,
   unsubscribed or seen every new photo is settled without an e-mail. An alert armed again while
   it was being sent (its `generation` moved) stays owed, no sooner than the minimum interval.
   A passing mail failure retries with backoff, up to DROPIN_ALERT_MAX_ATTEMPTS sends; a refusal
   is final for that alert (the next match arms a new one). A sender that dies between sending
   and recording leaves its claim to lapse: the next sweep sends again with the same Message-ID,
   which mail clients show once.

The e-mail counts every photo of them the attendee has not seen (unread), so a late-committing
match is never lost from the count. The drop-in kill switch pauses sending.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.template.loader import render_to_string
from django.utils import timezone

from apps.core.mail import mail_message_id
from apps.core.problems import NotFound
from apps.notifications.mailers import MailReport, OutgoingEmail, claim_deadline, get_mailer
from apps.notifications.models import Attendee, PhotoAlert
from apps.notifications.selectors import attendee_link
from apps.ops.killswitch import ensure_enabled
from apps.ops.models import Capability
from apps.tenancy.context import system_context
from apps.tenancy.services import audit_record

logger = logging.getLogger("darkroom.notifications")


class AttendeeNotFound(NotFound):
    """The request names an attendee the event does not have (another studio's attendees are
    answered the same way)."""

    slug = "attendee-not-found"
    title = "Attendee not found"
    what_to_do = "Check the attendee's id: GET /api/v1/events/{id}/attendees lists an event's attendees."


# --- the attendee's choice --------------------------------------------------------------------


@transaction.atomic
def attendee_photo_alerts_set(*, tenant_id: int, attendee_id: int, enabled: bool, actor_label: str) -> bool:
    """Turn the attendee's e-mail alerts of new photos on or off; audited when it changes
    anything. Returns True if this call changed it. Joins the caller's transaction (or opens one);
    locks the attendee's row FOR NO KEY UPDATE (a drop-in run inserting a match for them is not
    held up).
    Turning them off drops an owed alert not yet claimed (a sender already sending it may still
    deliver that one e-mail). An unsubscribed attendee gets no alerts whatever this says.
    Raises AttendeeNotFound."""
    attendee = Attendee.objects.select_for_update(no_key=True).filter(tenant_id=tenant_id, pk=attendee_id).first()
    if attendee is None:
        raise AttendeeNotFound(f"Attendee {attendee_id} does not exist.")
    if (attendee.photo_alerts_at is not None) == enabled:
        return False
    now = timezone.now()
    attendee.photo_alerts_at = now if enabled else None
    attendee.save(update_fields=["photo_alerts_at"])
    if not enabled:
        PhotoAlert.objects.filter(tenant_id=tenant_id, attendee_id=attendee_id, due_at__isnull=False).exclude(
            claimed_until__gt=now
        ).update(due_at=None, attempts=0)
    audit_record(
        action="attendee.photo_alerts_on" if enabled else "attendee.photo_alerts_off",
        tenant_id=tenant_id,
        actor_label=actor_label,
        target_type="attendee",
        target_id=str(attendee_id),
        data={},
    )
    return True


# --- arming (inside the drop-in job's transaction) ----------------------------------------------

_ARM_SQL = """
INSERT INTO notifications_photoalert AS p
       (tenant_id, attendee_id, due_at, generation, attempts, sent_count, last_error, created_at)
SELECT a.tenant_id, a.id, %(due)s, 1, 0, 0, '', %(now)s
  FROM notifications_attendee a
 WHERE a.tenant_id = %(tenant)s AND a.id = ANY(%(ids)s)
   AND a.photo_alerts_at IS NOT NULL AND a.unsubscribed_at IS NULL
 ORDER BY a.id
ON CONFLICT (tenant_id, attendee_id) DO UPDATE
   SET generation = p.generation + 1,
       due_at = COALESCE(p.due_at, GREATEST(EXCLUDED.due_at, p.last_sent_at + make_interval(secs => %(interval)s)))
"""


def photo_alerts_arm(*, tenant_id: int, attendee_ids: list[int], now: datetime) -> int:
    """Arm the alerts of the attendees just told about a new photo (those who asked for alerts
    and did not unsubscribe); returns how many rows were armed. Must run inside the transaction
    that writes their notifications. Rows are written in attendee order (no deadlock between two
    jobs arming the same attendees)."""
    if not connection.in_atomic_block:
        raise TransactionManagementError("photo_alerts_arm runs inside the notifications' transaction")
    if not attendee_ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            _ARM_SQL,
            {
                "tenant": tenant_id,
                "ids": sorted(set(attendee_ids)),
                "due": now + timedelta(seconds=settings.DROPIN_ALERT_DELAY_SECONDS),
                "now": now,
                "interval": settings.DROPIN_ALERT_MIN_INTERVAL_SECONDS,
            },
        )
        return cursor.rowcount


# --- sending ----------------------------------------------------------------------------------

# Claim up to `limit` owed, unclaimed alerts (SKIP LOCKED) and read what their e-mails need.
_CLAIM_SQL = """
WITH claimed AS (
    UPDATE notifications_photoalert p
       SET claim_token = %(token)s, claimed_until = %(until)s
     WHERE p.id IN (SELECT id FROM notifications_photoalert
                     WHERE due_at <= %(now)s AND (claimed_until IS NULL OR claimed_until < %(now)s)
                     ORDER BY due_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
    RETURNING p.id, p.tenant_id, p.attendee_id, p.generation, p.attempts, p.sent_count
)
SELECT c.id, c.tenant_id, c.attendee_id, c.generation, c.attempts, c.sent_count,
       a.email, a.name, (a.photo_alerts_at IS NOT NULL AND a.unsubscribed_at IS NULL), e.title, o.name,
       (SELECT count(*) FROM notifications_notification n
         WHERE n.attendee_id = c.attendee_id AND n.kind = 'new_photos' AND n.read_at IS NULL),
       a.link_generation
  FROM claimed c
  JOIN notifications_attendee a ON a.id = c.attendee_id
  JOIN catalog_event e ON e.id = a.event_id
  JOIN tenancy_organization o ON o.id = c.tenant_id
 ORDER BY c.id
"""

# Settle claimed alerts: `sent` ones record the e-mail; every one is owed no more unless it was
# armed again while claimed (generation moved), then no sooner than the minimum interval.
_SETTLE_SQL = """
UPDATE notifications_photoalert p
   SET due_at = CASE WHEN p.generation = s.generation THEN NULL
                     ELSE GREATEST(p.due_at, CASE WHEN s.sent THEN %(next_allowed)s END) END,
       last_sent_at = CASE WHEN s.sent THEN %(now)s ELSE p.last_sent_at END,
       sent_count = p.sent_count + CASE WHEN s.sent THEN 1 ELSE 0 END,
       attempts = 0, last_error = s.error, claim_token = NULL, claimed_until = NULL
  FROM unnest(%(ids)s::bigint[], %(generations)s::bigint[], %(sent)s::boolean[], %(errors)s::text[])
       AS s(id, generation, sent, error)
 WHERE p.id = s.id AND p.claim_token = %(token)s
"""


@dataclass(frozen=True)
class _Claimed:
    id: int
    tenant_id: int
    attendee_id: int
    generation: int
    attempts: int
    sent_count: int
    email: str
    name: str
    wanted: bool
    event_title: str
    studio_name: str
    unseen: int
    link_generation: int  # the attendee's current link, as the claim read it


@dataclass
class AlertSendResult:
    claimed: int = 0
    sent: int = 0
    settled_without_email: int = 0
    refused: int = 0
    retrying: int = 0


def photo_alerts_send_due(*, now: datetime | None = None, max_seconds: float | None = None) -> AlertSendResult:
    """Send the owed alerts, DROPIN_ALERT_BATCH at a time, until none is left or `max_seconds`
    passed. Runs outside any transaction, in the audited system context (alerts of every
    studio). `now` fixes the clock (tests). Raises CapabilityDisabled while the drop-in kill
    switch is engaged (nothing is claimed)."""
    if connection.in_atomic_block:
        raise TransactionManagementError("mail must not be sent inside a transaction")
    ensure_enabled(Capability.DROPIN)
    mailer = get_mailer()
    result = AlertSendResult()
    started = time.monotonic()
    with system_context("photo alert e-mails"):
        while max_seconds is None or time.monotonic() - started < max_seconds:
            token, moment = uuid.uuid4(), now or timezone.now()
            # Taken before the claim (the safe side): nothing is handed over once the claim is
            # about to lapse, when another sender may claim the same alerts and e-mail them too.
            deadline = claim_deadline(settings.DROPIN_ALERT_CLAIM_SECONDS)
            claimed = _claim(token=token, now=moment)
            if not claimed:
                break
            result.claimed += len(claimed)
            to_send = [c for c in claimed if c.wanted and c.unseen > 0]
            quiet = [c for c in claimed if c not in to_send]
            report = mailer.send(
                [_email(c) for c in to_send], from_email=settings.DROPIN_ALERT_FROM_EMAIL, deadline=deadline
            )
            _record(token=token, now=moment, to_send=to_send, quiet=quiet, report=report, result=result)
            if report.interrupted:
                break
    if result.claimed:
        logger.info("photo alerts sent", extra=result.__dict__)
    return result


def _claim(*, token: uuid.UUID, now: datetime) -> list[_Claimed]:
    until = now + timedelta(seconds=settings.DROPIN_ALERT_CLAIM_SECONDS)
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, {"token": token, "until": until, "now": now, "limit": settings.DROPIN_ALERT_BATCH})
        return [_Claimed(*row) for row in cursor.fetchall()]


def _email(alert: _Claimed) -> OutgoingEmail:
    def link(page: str) -> str:
        return attendee_link(
            tenant_id=alert.tenant_id, attendee_id=alert.attendee_id, generation=alert.link_generation, page=page
        )

    unsubscribe = link("unsubscribe")
    context: dict[str, Any] = {
        "name": alert.name,
        "unseen": alert.unseen,
        "event_title": alert.event_title,
        "studio_name": alert.studio_name,
        "inbox_url": link("inbox"),
        "alerts_url": link("dropin"),
        "unsubscribe_url": unsubscribe,
    }
    return OutgoingEmail(
        key=alert.id,
        to=alert.email,
        subject=" ".join(render_to_string("attendee/photo_alert_subject.txt", context).split()),
        body=render_to_string("attendee/photo_alert_email.txt", context),
        headers={
            # The same e-mail sent again (its sender died before recording it) keeps its id.
            "Message-ID": mail_message_id(f"photo-alert.{alert.id}.{alert.sent_count + 1}"),
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",  # RFC 8058
        },
    )


def _record(
    *,
    token: uuid.UUID,
    now: datetime,
    to_send: list[_Claimed],
    quiet: list[_Claimed],
    report: MailReport,
    result: AlertSendResult,
) -> None:
    """Record a batch's outcomes under the claim token, in one transaction (system context)."""
    sent, refused, tried = set(report.sent), report.refused, set(report.tried) - set(report.sent)
    settled: list[tuple[_Claimed, bool, str]] = [(c, False, "") for c in quiet]
    settled += [(c, True, "") for c in to_send if c.id in sent]
    settled += [(c, False, refused[c.id]) for c in to_send if c.id in refused]
    reason = report.interrupted or "not sent"
    exhausted = [c for c in to_send if c.id in tried and c.attempts + 1 >= settings.DROPIN_ALERT_MAX_ATTEMPTS]
    settled += [(c, False, reason) for c in exhausted]
    retried = [c for c in to_send if c.id in tried and c not in exhausted]
    untried = [c for c in to_send if c.id not in sent and c.id not in refused and c.id not in tried]
    with transaction.atomic(durable=True):
        if settled:
            with connection.cursor() as cursor:
                cursor.execute(
                    _SETTLE_SQL,
                    {
                        "token": token,
                        "now": now,
                        "next_allowed": now + timedelta(seconds=settings.DROPIN_ALERT_MIN_INTERVAL_SECONDS),
                        "ids": [c.id for c, _, _ in settled],
                        "generations": [c.generation for c, _, _ in settled],
                        "sent": [was_sent for _, was_sent, _ in settled],
                        "errors": [error for _, _, error in settled],
                    },
                )
        mine = PhotoAlert.objects.filter(claim_token=token)
        for alert in retried:
            backoff = min(settings.DROPIN_ALERT_MIN_INTERVAL_SECONDS, 60 * 2**alert.attempts)
            mine.filter(pk=alert.id).update(
                attempts=alert.attempts + 1,
                last_error=reason,
                due_at=now + timedelta(seconds=backoff),
                claim_token=None,
                claimed_until=None,
            )
        mine.filter(pk__in=[c.id for c in untried]).update(claim_token=None, claimed_until=None)
    result.sent += len([c for c in to_send if c.id in sent])
    result.settled_without_email += len(quiet)
    result.refused += len([c for c in to_send if c.id in refused]) + len(exhausted)
    result.retrying += len(retried) + len(untried)
