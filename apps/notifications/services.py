"""Writes for attendees, notifications and announcements.

Announcement flow (DESIGN.md "Announcements and notifications"):
0. A draft (`announcement_create`) can be changed (`announcement_update`) or deleted
   (`announcement_delete`) until it is sent: both lock its row as the send does, so a send and
   an edit or delete serialise and nothing changes an announcement once it was sent.
1. `announcement_send` marks the announcement requested and writes `announcement.send_requested`
   to the outbox, in one transaction (a second call changes nothing).
2. `announcement_fanout` (its consumer) holds the fenced lease `announcements:fanout:<id>` and
   walks the audience in attendee-id order. Each chunk is ONE transaction, fenced by the lease
   epoch: its notifications, its deliveries, the advanced `fanout_cursor` and, when it holds
   e-mail deliveries, one `announcement.emails` outbox message naming the chunk's id range. A
   fan-out that dies resumes at the cursor; a stale one cannot commit a chunk, so no chunk is
   written twice (the unique constraints would refuse it anyway).
3. `announcement_emails_send` (its consumer) claims the chunk's pending e-mails with a token,
   sends them over one mail connection outside any transaction, and records each as delivered
   or failed. A refused recipient fails at once; a passing error (the server went away) leaves
   the rest pending for the task's retry, failing an e-mail after ANNOUNCEMENT_EMAIL_MAX_ATTEMPTS.
   A sender that dies after sending and before recording leaves its claim to lapse: the retry
   sends again with the same Message-ID, which mail clients show once.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max
from django.db.models.functions import Greatest, Now
from django.db.transaction import TransactionManagementError
from django.utils import dateformat, timezone

from apps.catalog.errors import EventNotFound
from apps.catalog.models import Event
from apps.core.locks import LockBusy, try_fenced_lock
from apps.core.mail import mail_message_id
from apps.core.problems import DomainError, InvalidInput, NotFound
from apps.core.text import multiline_text_problem, title_problem
from apps.notifications.mailers import MailReport, OutgoingEmail, claim_deadline, get_mailer
from apps.notifications.models import Announcement, AnnouncementDelivery, Attendee, Notification
from apps.notifications.selectors import LINK_INVALID_DETAIL, AttendeeLinkInvalid, attendee_link
from apps.ops.killswitch import ensure_enabled
from apps.ops.models import Capability
from apps.outbox.requeue import count_requeued, requeue_stale
from apps.outbox.services import outbox_publish
from apps.tenancy.models import Organization, User
from apps.tenancy.services import audit_record

logger = logging.getLogger("darkroom.notifications")

TOPIC_SEND_REQUESTED = "announcement.send_requested"
TOPIC_EMAILS = "announcement.emails"


class UnknownEvent(InvalidInput):
    """A request body names an event the studio does not have (400: the input is wrong)."""

    slug = "unknown-event"
    title = "No such event in this studio"
    when_it_happens = (
        "An announcement names an event this studio does not have (another studio's events are answered the "
        "same way). Nothing was written."
    )
    what_to_do = "Check the event's id: GET /api/v1/events lists the studio's events."


class AnnouncementNotFound(NotFound):
    """The path names an announcement this studio does not have: never made, deleted, or
    another studio's (answered the same way)."""

    slug = "announcement-not-found"
    title = "No such announcement in this studio"
    what_to_do = "Check the announcement's id: GET /api/v1/announcements lists the studio's announcements."


class AnnouncementNotDraft(DomainError):
    """A change or delete of an announcement that is sending or was sent (including one whose send
    committed while the change waited for it): only a draft can be changed or deleted."""

    status_code = 409
    slug = "announcement-already-sent"
    title = "Announcement already sent"
    when_it_happens = (
        "A change or delete of an announcement that is being sent or was sent, also one whose sending "
        "began while the change waited for it: only a draft can be changed or deleted."
    )
    what_to_do = (
        "Nothing was changed, and the announcement went out as it was. To correct it, write a new "
        "announcement (POST /api/v1/announcements) and send that."
    )


class DeliveryInterrupted(DomainError):
    """The mail server failed for a passing reason mid-chunk; the unsent e-mails stay pending."""

    status_code = 503
    slug = "delivery-interrupted"
    title = "E-mail delivery was interrupted"
    when_it_happens = (
        "The mail service failed for a moment while Darkroom was sending an announcement's e-mails. Those "
        "already sent stay sent; the rest wait to be sent."
    )
    what_to_do = (
        "Nothing is asked of you: Darkroom sends the rest by itself shortly, each e-mail once. The "
        "announcement's page in the studio follows its deliveries."
    )


def lease_name(announcement_id: int) -> str:
    return f"announcements:fanout:{announcement_id}"


# --- attendees ------------------------------------------------------------------------------


# At most this many attendees per registration call (one statement; the API and the studio page).
MAX_ATTENDEES_PER_REGISTRATION = 1000


ATTENDEE_NAME_MAX_LENGTH = 200  # Attendee.name


def attendee_name_problem(name: str) -> str:
    """What is wrong with an attendee's (stripped) name, as a sentence for the user; "" when
    nothing is. A name may be empty; one given follows the rule of titles (`title_problem`): it
    greets the attendee in e-mails ("Hello …"), so no control characters (a line break would
    start a new line of the e-mail) and no text-direction overrides (they reorder the text
    around the name)."""
    return title_problem(name, max_length=ATTENDEE_NAME_MAX_LENGTH) if name else ""


@dataclass(frozen=True)
class AttendeeIn:
    """One attendee to register. `email_consent` None: a known attendee's recorded consent stays
    as it is (a new one has none); True records it now; False withdraws it."""

    email: str
    name: str = ""
    email_consent: bool | None = None


@dataclass(frozen=True)
class RegisterResult:
    created: int
    updated: int


_REGISTER_SQL = """
INSERT INTO notifications_attendee AS a
       (tenant_id, event_id, email, name, email_consent, consent_recorded_at, unsubscribed_at, created_at)
SELECT %(tenant)s, %(event)s, r.email, r.name, r.consent, CASE WHEN r.consent THEN %(now)s END, NULL, %(now)s
  FROM unnest(%(emails)s::text[], %(names)s::text[], %(consents)s::boolean[]) AS r(email, name, consent)
ON CONFLICT (tenant_id, event_id, email) DO UPDATE
   SET name = CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name ELSE a.name END,
       email_consent = EXCLUDED.email_consent OR (%(keep_consent)s AND a.email_consent),
       consent_recorded_at = CASE
           WHEN EXCLUDED.email_consent AND NOT a.email_consent THEN %(now)s
           WHEN EXCLUDED.email_consent OR %(keep_consent)s THEN a.consent_recorded_at
       END
RETURNING (xmax = 0) AS inserted
"""


@transaction.atomic
def attendees_register(
    *,
    tenant: Organization,
    event_id: int,
    attendees: list[AttendeeIn],
    actor_label: str,
    keep_consent: bool = False,
) -> RegisterResult:
    """Register (or update) an event's attendees by e-mail, with their e-mail consent as the
    studio recorded it; audited. Joins the caller's transaction or opens one. An attendee's
    `email_consent` None keeps a known attendee's consent as recorded; with `keep_consent`, False
    does too (a known attendee's recorded consent is never withdrawn; False only registers new
    attendees without it).

    An attendee who unsubscribed stays unsubscribed: only they can undo that. E-mails are
    lower-cased; the caller passes each e-mail once. Raises InvalidInput (a name with control
    characters or text-direction overrides, `attendee_name_problem`; nothing is written, and
    `errors` names each such attendee as `attendees[<index>].name`), EventNotFound.
    """
    problems = {
        f"attendees[{index}].name": [problem]
        for index, attendee in enumerate(attendees)
        if (problem := attendee_name_problem(attendee.name.strip()))
    }
    if problems:
        field, [problem] = next(iter(problems.items()))
        more = f" (and {len(problems) - 1} more name(s))" if len(problems) > 1 else ""
        raise InvalidInput(f"{field}: {problem}{more}", extra={"errors": problems})
    if not Event.objects.filter(tenant=tenant, pk=event_id).exists():
        raise EventNotFound(f"Event {event_id} does not exist in this studio.")
    now = timezone.now()
    inserted: list[bool] = []
    # One statement for the rows that set consent, one for those that keep a known attendee's.
    keeps = [a.email_consent is None or (keep_consent and not a.email_consent) for a in attendees]
    for keep in (False, True):
        rows = [a for a, row_keeps in zip(attendees, keeps, strict=True) if row_keeps == keep]
        if not rows:
            continue
        params: dict[str, Any] = {
            "tenant": tenant.pk,
            "event": event_id,
            "now": now,
            "emails": [a.email.strip().lower() for a in rows],
            "names": [a.name.strip() for a in rows],
            "consents": [bool(a.email_consent) for a in rows],
            "keep_consent": keep,
        }
        with connection.cursor() as cursor:
            cursor.execute(_REGISTER_SQL, params)
            inserted += [row[0] for row in cursor.fetchall()]
    result = RegisterResult(created=sum(inserted), updated=len(inserted) - sum(inserted))
    audit_record(
        action="attendees.register",
        tenant_id=tenant.pk,
        actor_label=actor_label,
        target_type="event",
        target_id=str(event_id),
        data={"created": result.created, "updated": result.updated},
    )
    return result


@transaction.atomic(durable=True)
def attendee_unsubscribe(*, tenant_id: int, attendee_id: int) -> bool:
    """The attendee stops all announcements (their own request; a second call changes nothing).

    E-mails to them not yet claimed by a sender are not sent: those deliveries become in-app
    ones. Returns True if this call unsubscribed them. Raises Attendee.DoesNotExist.
    """
    now = timezone.now()
    attendee = Attendee.objects.select_for_update().get(tenant_id=tenant_id, pk=attendee_id)
    if attendee.unsubscribed_at is not None:
        return False
    attendee.unsubscribed_at = now
    attendee.save(update_fields=["unsubscribed_at"])
    AnnouncementDelivery.objects.filter(attendee=attendee, status=AnnouncementDelivery.Status.PENDING).exclude(
        claimed_until__gt=now
    ).update(
        channel=AnnouncementDelivery.Channel.IN_APP,
        status=AnnouncementDelivery.Status.DELIVERED,
        delivered_at=now,
        claim_token=None,
        claimed_until=None,
        last_error="unsubscribed before the e-mail was sent",
    )
    audit_record(
        action="attendee.unsubscribe",
        tenant_id=tenant_id,
        actor_label="attendee (signed link)",
        target_type="attendee",
        target_id=str(attendee_id),
        data={},
    )
    return True


def _link_still_of(attendee: Attendee | None, link_generation: int) -> Attendee:
    """The attendee, read under the caller's lock on their row, if their link is still of the
    generation the request was admitted with; else raises AttendeeLinkInvalid (the 404 of any
    invalid link): a link replaced, or an attendee deleted, while the request was in flight
    writes nothing."""
    if attendee is None or attendee.link_generation != link_generation:
        raise AttendeeLinkInvalid(LINK_INVALID_DETAIL)
    return attendee


@transaction.atomic(durable=True)
def attendee_resubscribe(*, tenant_id: int, attendee_id: int, link_generation: int) -> bool:
    """The attendee who unsubscribed asks for announcements by e-mail again (their own request,
    through their link of `link_generation`): `unsubscribed_at` is cleared and their e-mail
    consent recorded now. Returns True if this call resubscribed them; for an attendee who is
    subscribed it changes nothing (a second POST). Announcements already turned into in-app
    deliveries stay as they are. Audited.

    Locks the attendee's row before it checks the link's generation, so a replacement either
    committed before (refused) or waits for this transaction.
    Raises AttendeeLinkInvalid (the link was replaced, or the attendee is gone).
    """
    locked = Attendee.objects.select_for_update().filter(tenant_id=tenant_id, pk=attendee_id).first()
    attendee = _link_still_of(locked, link_generation)
    if attendee.unsubscribed_at is None:
        return False
    attendee.unsubscribed_at = None
    attendee.email_consent = True
    attendee.consent_recorded_at = timezone.now()
    attendee.save(update_fields=["unsubscribed_at", "email_consent", "consent_recorded_at"])
    audit_record(
        action="attendee.resubscribe",
        tenant_id=tenant_id,
        actor_label="attendee (signed link)",
        target_type="attendee",
        target_id=str(attendee_id),
        data={},
    )
    return True


# --- notifications --------------------------------------------------------------------------


@transaction.atomic(durable=True)
def notifications_mark_read(
    *,
    tenant_id: int,
    attendee_id: int,
    link_generation: int,
    notification_ids: list[int] | None = None,
    upto: int | None = None,
) -> int:
    """Mark the attendee's notifications read (the given ones, or all), through their link of
    `link_generation`: `read_at` is set once and never moves. Returns how many this call marked.
    `upto` bounds "all" to the notifications the attendee's page showed (ids up to the newest it
    knew of): one that arrived after the page was rendered stays unread, so it is neither hidden
    from them nor taken off their photo alert.

    Locks the attendee's row (FOR NO KEY UPDATE) before it checks the link's generation, so a
    replacement either committed before (refused) or waits for this transaction.
    Raises AttendeeLinkInvalid (the link was replaced, or the attendee is gone).
    """
    locked = Attendee.objects.select_for_update(no_key=True).filter(tenant_id=tenant_id, pk=attendee_id).first()
    _link_still_of(locked, link_generation)
    unread = Notification.objects.filter(tenant_id=tenant_id, attendee_id=attendee_id, read_at__isnull=True)
    if notification_ids is not None:
        unread = unread.filter(pk__in=notification_ids)
    if upto is not None:
        unread = unread.filter(pk__lte=upto)
    # Greatest: a web host whose clock lags the worker's never writes a read time before creation.
    return unread.update(read_at=Greatest(Now(), F("created_at")))


# --- announcements --------------------------------------------------------------------------


ANNOUNCEMENT_TITLE_MAX_LENGTH = 200  # Announcement.title
ANNOUNCEMENT_BODY_MAX_LENGTH = 20_000


def _body_with_line_feeds(body: str | None) -> str | None:
    """The body with its line breaks as "\n": a browser's textarea sends "\r\n", and an API
    client may send "\r\n" or "\r"; kept one way, the API, the e-mail and the attendee's page
    read the same text, and an edit that only changes line breaks changes nothing."""
    return None if body is None else body.replace("\r\n", "\n").replace("\r", "\n")


def _check_announcement_text(*, title: str | None, body: str | None) -> None:
    """Raises InvalidInput naming the field (`errors`) for a title or body the rules refuse (None:
    not checked): a title is the e-mail's subject (`title_problem`); a body keeps line breaks and
    tabs only (`multiline_text_problem`)."""
    if title is not None and (problem := title_problem(title, max_length=ANNOUNCEMENT_TITLE_MAX_LENGTH)):
        raise InvalidInput(f"Title: {problem}", extra={"errors": {"title": [problem]}})
    if body is not None and (problem := multiline_text_problem(body, max_length=ANNOUNCEMENT_BODY_MAX_LENGTH)):
        raise InvalidInput(f"Body: {problem}", extra={"errors": {"body": [problem]}})


@transaction.atomic
def announcement_create(
    *, tenant: Organization, event_id: int, title: str, body: str, actor: User | None, actor_label: str
) -> Announcement:
    """A draft announcement to the attendees of one of the studio's events. Raises UnknownEvent,
    InvalidInput (a title with control characters or direction overrides: it is the e-mail's
    subject; a body with control characters other than line breaks and tabs, or direction
    overrides: `multiline_text_problem`). Line breaks are kept as "\n" (`_body_with_line_feeds`)."""
    body = _body_with_line_feeds(body) or ""
    _check_announcement_text(title=title, body=body)
    if not Event.objects.filter(tenant=tenant, pk=event_id).exists():
        raise UnknownEvent(f"Event {event_id} does not exist in this studio.")
    return Announcement.objects.create(
        tenant=tenant,
        event_id=event_id,
        title=title,
        body=body,
        created_by=actor,
        created_by_label=actor_label[:200],
    )


def _announcement_locked(*, tenant_id: int, announcement_id: int) -> Announcement:
    """The announcement, its row locked FOR UPDATE (as `announcement_send` locks it), so an edit or
    a delete and a send serialise: whichever locks second reads what the first committed. Runs in
    the caller's transaction. Raises AnnouncementNotFound."""
    announcement = Announcement.objects.select_for_update().filter(tenant_id=tenant_id, pk=announcement_id).first()
    if announcement is None:
        raise AnnouncementNotFound(f"Announcement {announcement_id} does not exist in this studio.")
    return announcement


def _ensure_draft(announcement: Announcement) -> None:
    """Raises AnnouncementNotDraft when the (locked) announcement was sent."""
    if announcement.send_requested_at is not None:
        when = dateformat.format(timezone.localtime(announcement.send_requested_at), "j M Y, H:i T")
        raise AnnouncementNotDraft(
            f"It was sent on {when}; only a draft can be changed or deleted. Nothing was changed."
        )


@transaction.atomic
def announcement_update(
    *,
    tenant_id: int,
    announcement_id: int,
    actor_label: str,
    event_id: int | None = None,
    title: str | None = None,
    body: str | None = None,
) -> Announcement:
    """Change a draft's event, title or body (None: leave it), by the rules of
    `announcement_create`. Joins the caller's transaction and locks the announcement's row first
    (`_announcement_locked`): a send committed before is seen (refused), a send asked for
    meanwhile waits and sends the changed text. One audit row (`announcement.update`) names the
    fields that really changed; a call that changes nothing writes nothing. Raises InvalidInput
    (nothing given; a title or body the rules refuse), AnnouncementNotFound, AnnouncementNotDraft
    (sending or sent: 409), UnknownEvent; each writes nothing.
    """
    if event_id is None and title is None and body is None:
        raise InvalidInput(
            "Nothing to change: give at least one of event_id, title, body.",
            extra={"errors": {"non_field_errors": ["Give at least one field to change."]}},
        )
    body = _body_with_line_feeds(body)
    _check_announcement_text(title=title, body=body)
    announcement = _announcement_locked(tenant_id=tenant_id, announcement_id=announcement_id)
    _ensure_draft(announcement)
    if event_id is not None and event_id != announcement.event_id:
        if not Event.objects.filter(tenant_id=tenant_id, pk=event_id).exists():
            raise UnknownEvent(f"Event {event_id} does not exist in this studio.")
    wanted = {"event_id": event_id, "title": title, "body": body}
    changed = [name for name, value in wanted.items() if value is not None and value != getattr(announcement, name)]
    if not changed:
        return announcement
    for name in changed:
        setattr(announcement, name, wanted[name])
    announcement.save(update_fields=[name.removesuffix("_id") for name in changed])
    audit_record(
        action="announcement.update",
        tenant_id=tenant_id,
        actor_label=actor_label,
        target_type="announcement",
        target_id=str(announcement.pk),
        data={"fields": [name.removesuffix("_id") for name in changed], "event_id": announcement.event_id},
    )
    return announcement


@transaction.atomic
def announcement_delete(*, tenant_id: int, announcement_id: int, actor_label: str) -> None:
    """Delete a draft (it has no deliveries, notifications or outbox messages yet: nothing else
    refers to it). Joins the caller's transaction and locks the row first, as
    `announcement_update`: a send committed before is refused; one asked for meanwhile waits and
    then finds no announcement. Audited (`announcement.delete`, with its event and title).
    Raises AnnouncementNotFound, AnnouncementNotDraft (sending or sent: 409); each writes nothing.
    """
    announcement = _announcement_locked(tenant_id=tenant_id, announcement_id=announcement_id)
    _ensure_draft(announcement)
    audit_record(
        action="announcement.delete",
        tenant_id=tenant_id,
        actor_label=actor_label,
        target_type="announcement",
        target_id=str(announcement.pk),
        data={"event_id": announcement.event_id, "title": announcement.title},
    )
    announcement.delete()


@transaction.atomic
def announcement_send(*, tenant_id: int, announcement_id: int, actor_label: str) -> Announcement:
    """Ask for the announcement to be sent: the first call stamps `send_requested_at`, fixes the
    audience (`audience_upto`: the event's attendees registered by now) and writes the fan-out's
    outbox message with it; later calls change nothing. Audited once.
    Raises AnnouncementNotFound.
    """
    announcement = Announcement.objects.select_for_update().filter(tenant_id=tenant_id, pk=announcement_id).first()
    if announcement is None:
        raise AnnouncementNotFound(f"Announcement {announcement_id} does not exist in this studio.")
    if announcement.send_requested_at is not None:
        return announcement
    announcement.send_requested_at = announcement.fanout_queued_at = timezone.now()
    newest = Attendee.objects.filter(tenant_id=tenant_id, event_id=announcement.event_id).aggregate(n=Max("id"))
    announcement.audience_upto = newest["n"] or 0
    announcement.save(update_fields=["send_requested_at", "fanout_queued_at", "audience_upto"])
    _publish_send_requested(announcement)
    audit_record(
        action="announcement.send",
        tenant_id=tenant_id,
        actor_label=actor_label,
        target_type="announcement",
        target_id=str(announcement.pk),
        data={"event_id": announcement.event_id},
    )
    return announcement


def _publish_send_requested(announcement: Announcement) -> None:
    outbox_publish(
        topic=TOPIC_SEND_REQUESTED,
        tenant_id=announcement.tenant_id,
        aggregate_type="announcement",
        aggregate_id=announcement.pk,
        payload={"announcement_id": announcement.pk},
    )


@dataclass
class FanoutResult:
    announcement_id: int
    chunks: int = 0
    deliveries: int = 0
    completed: bool = False
    continued: bool = False  # the slice ended; a continuation message goes on from the cursor


_AUDIENCE_SQL = """
SELECT id, email_consent FROM notifications_attendee
 WHERE tenant_id = %(tenant)s AND event_id = %(event)s AND id > %(after)s AND unsubscribed_at IS NULL
   AND (%(upto)s::bigint IS NULL OR id <= %(upto)s::bigint)
 ORDER BY id LIMIT %(chunk)s
"""
# One statement writes the chunk's notifications and their deliveries: each delivery is joined to
# the notification row its insert returned (no lookup the planner could get wrong as the table
# grows). A notification that already exists (same attendee and key) returns nothing and gets no
# second delivery; both are written in one transaction, so that cannot leave one without the other.
_WRITE_CHUNK_SQL = """
WITH audience AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(consents)s::boolean[]) AS t(attendee_id, consent)
), notes AS (
    INSERT INTO notifications_notification (tenant_id, attendee_id, kind, dedupe_key, title, body, link, created_at)
    SELECT %(tenant)s, attendee_id, 'announcement', %(dedupe)s, %(title)s, %(body)s, '', %(now)s FROM audience
    ON CONFLICT (tenant_id, attendee_id, dedupe_key) DO NOTHING
    RETURNING id, attendee_id
)
INSERT INTO notifications_announcementdelivery
       (tenant_id, announcement_id, attendee_id, notification_id, channel, status, attempts,
        last_error, created_at, queued_at, delivered_at)
SELECT %(tenant)s, %(announcement)s, n.attendee_id, n.id,
       CASE WHEN a.consent THEN 'email' ELSE 'in_app' END,
       CASE WHEN a.consent THEN 'pending' ELSE 'delivered' END,
       0, '', %(now)s, %(now)s, CASE WHEN a.consent THEN NULL ELSE %(now)s::timestamptz END
  FROM notes n JOIN audience a ON a.attendee_id = n.attendee_id
ON CONFLICT (announcement_id, attendee_id) DO NOTHING
RETURNING channel
"""


def announcement_fanout(
    *, announcement_id: int, chunk: int | None = None, slice_seconds: float | None = None
) -> FanoutResult:
    """Fan the announcement out to its event's subscribed attendees, chunk by chunk from
    `fanout_cursor`, for at most `slice_seconds` (ANNOUNCEMENT_FANOUT_SLICE_SECONDS): a longer
    fan-out ends its slice by writing a continuation message (fenced, in its own transaction),
    so no task outlives the Celery time limit however large the audience. Returns what this
    call did.

    Must run outside any transaction, in the announcement's tenant context (the consumer task's).
    The audience is the event's subscribed attendees registered when it was sent (`audience_upto`):
    one registered later is not told, however late the fan-out runs. Raises LockBusy when
    another fan-out holds the lease (the task retries: a dead holder's key lapses), StaleLeaseError
    / LockLost if the lease is lost midway (what committed stays; the next run goes on from the
    cursor), Announcement.DoesNotExist.
    """
    if connection.in_atomic_block:
        raise TransactionManagementError("announcement_fanout commits one transaction per chunk; call it outside one")
    ensure_enabled(Capability.FANOUT)
    size = chunk or settings.ANNOUNCEMENT_FANOUT_CHUNK
    deadline = time.monotonic() + (slice_seconds or settings.ANNOUNCEMENT_FANOUT_SLICE_SECONDS)
    result = FanoutResult(announcement_id=announcement_id)
    with try_fenced_lock(lease_name(announcement_id), ttl=settings.ANNOUNCEMENT_LEASE_TTL_SECONDS) as lease:
        if lease is None:
            raise LockBusy(f"another fan-out of announcement {announcement_id} holds its lease")
        while True:
            lease.extend()
            with transaction.atomic(durable=True):
                lease.check()
                announcement = Announcement.objects.select_for_update().get(pk=announcement_id)
                if announcement.fanout_completed_at is not None:
                    result.completed = True
                    break
                if announcement.send_requested_at is None:
                    break  # a draft: nothing asked for it (a stray or replayed message)
                if result.chunks and time.monotonic() >= deadline:  # each slice moves the cursor
                    announcement.fanout_queued_at = timezone.now()
                    announcement.save(update_fields=["fanout_queued_at"])
                    _publish_send_requested(announcement)
                    result.continued = True
                    break
                written = _fanout_chunk(announcement=announcement, size=size)
                if written is None:
                    announcement.fanout_completed_at = timezone.now()
                    announcement.save(update_fields=["fanout_completed_at"])
                    result.completed = True
                    break
                result.chunks += 1
                result.deliveries += written
    logger.info("announcement fan-out", extra=result.__dict__)
    return result


def _fanout_chunk(*, announcement: Announcement, size: int) -> int | None:
    """Write the next chunk of the audience after the cursor: notifications, deliveries, the new
    cursor and, for e-mail deliveries, their outbox message. None when the audience is done.

    Runs inside the fenced transaction that locked `announcement`.
    """
    now = timezone.now()
    params: dict[str, Any] = {
        "tenant": announcement.tenant_id,
        "event": announcement.event_id,
        "announcement": announcement.pk,
        "after": announcement.fanout_cursor,
        "upto": announcement.audience_upto,
        "chunk": size,
        "dedupe": f"announcement:{announcement.pk}",
        "title": announcement.title,
        "body": announcement.body,
        "now": now,
    }
    with connection.cursor() as cursor:
        cursor.execute(_AUDIENCE_SQL, params)
        audience = cursor.fetchall()
        if not audience:
            return None
        ids = [row[0] for row in audience]
        params["ids"], params["consents"] = ids, [row[1] for row in audience]
        cursor.execute(_WRITE_CHUNK_SQL, params)
        channels = [row[0] for row in cursor.fetchall()]
    emails = channels.count(AnnouncementDelivery.Channel.EMAIL)
    after, upto = announcement.fanout_cursor, ids[-1]
    announcement.fanout_cursor = upto
    announcement.recipients += len(channels)
    announcement.save(update_fields=["fanout_cursor", "recipients"])
    if emails:
        _publish_emails(announcement=announcement, after=after, upto=upto)
    return len(channels)


def _publish_emails(*, announcement: Announcement, after: int, upto: int) -> None:
    outbox_publish(
        topic=TOPIC_EMAILS,
        tenant_id=announcement.tenant_id,
        aggregate_type="announcement",
        aggregate_id=announcement.pk,
        payload={"announcement_id": announcement.pk, "after": after, "upto": upto},
    )


# --- e-mail ---------------------------------------------------------------------------------


@dataclass
class SendResult:
    claimed: int = 0
    delivered: int = 0
    failed: int = 0
    left_pending: int = 0


# E-mails whose attendee unsubscribed or withdrew consent after the fan-out wrote them (their
# change could not see the chunk's uncommitted rows) become in-app deliveries before a claim.
_WITHDRAWN_SQL = """
UPDATE notifications_announcementdelivery d
   SET channel = 'in_app', status = 'delivered', delivered_at = %(now)s, claim_token = NULL,
       claimed_until = NULL, last_error = 'unsubscribed or withdrew consent before the e-mail was sent'
  FROM notifications_attendee a
 WHERE a.id = d.attendee_id AND (a.unsubscribed_at IS NOT NULL OR NOT a.email_consent)
   AND d.announcement_id = %(announcement)s AND d.attendee_id > %(after)s AND d.attendee_id <= %(upto)s
   AND d.status = 'pending' AND (d.claimed_until IS NULL OR d.claimed_until < %(now)s)
"""
# A claim takes at most `limit` unclaimed pending e-mails of the range (SKIP LOCKED: two senders
# never wait on each other), so a claim always outlives the sending of what it holds.
_CLAIM_SQL = """
UPDATE notifications_announcementdelivery d
   SET claim_token = %(token)s, claimed_until = %(until)s
  FROM notifications_attendee a
 WHERE a.id = d.attendee_id
   AND d.id IN (SELECT id FROM notifications_announcementdelivery
                 WHERE announcement_id = %(announcement)s AND attendee_id > %(after)s AND attendee_id <= %(upto)s
                   AND status = 'pending' AND (claimed_until IS NULL OR claimed_until < %(now)s)
                 ORDER BY attendee_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING d.id, d.attendee_id, d.attempts, a.email, a.link_generation
"""


def announcement_emails_send(*, announcement_id: int, after: int, upto: int) -> SendResult:
    """Send the pending e-mails of one fan-out chunk (attendee ids in (after, upto]) once.

    Runs outside any transaction, in the announcement's tenant context. Works in batches of
    ANNOUNCEMENT_EMAIL_BATCH: claim with a fresh token (another sender's live claim is left
    alone), send outside any transaction (nothing handed over once the claim is about to lapse:
    another sender may then claim it), record every outcome in one transaction. An attempt
    counts only for an e-mail handed to the mail service without a final answer. Raises
    DeliveryInterrupted, after recording what was sent, when the mail service failed for a
    passing reason: the task retries the rest; CapabilityDisabled while the fan-out kill switch is
    engaged (nothing is sent).
    """
    if connection.in_atomic_block:
        raise TransactionManagementError("mail must not be sent inside a transaction")
    ensure_enabled(Capability.FANOUT)
    announcement = Announcement.objects.select_related("tenant", "event").get(pk=announcement_id)
    mailer = get_mailer()
    result = SendResult()
    span = {"announcement": announcement_id, "after": after, "upto": upto}
    while True:
        token, now = uuid.uuid4(), timezone.now()
        deadline = claim_deadline(settings.ANNOUNCEMENT_EMAIL_CLAIM_SECONDS)  # before the claim: the safe side
        with transaction.atomic(durable=True), connection.cursor() as cursor:
            cursor.execute(_WITHDRAWN_SQL, {**span, "now": now})
            cursor.execute(
                _CLAIM_SQL,
                {
                    **span,
                    "token": token,
                    "until": now + timedelta(seconds=settings.ANNOUNCEMENT_EMAIL_CLAIM_SECONDS),
                    "now": now,
                    "limit": settings.ANNOUNCEMENT_EMAIL_BATCH,
                },
            )
            claimed = cursor.fetchall()
        if not claimed:
            break
        result.claimed += len(claimed)
        outgoing = [
            _email(announcement, key=row[0], attendee_id=row[1], to=row[3], generation=row[4]) for row in claimed
        ]
        report = mailer.send(outgoing, from_email=settings.ANNOUNCEMENT_FROM_EMAIL, deadline=deadline)
        _record(token=token, report=report, claimed=claimed, result=result)
        if report.interrupted:
            break
    logger.info("announcement e-mails sent", extra={**span, **result.__dict__})
    if result.left_pending:
        raise DeliveryInterrupted(f"{result.left_pending} e-mail(s) left for a retry")
    return result


def _email(announcement: Announcement, *, key: int, attendee_id: int, to: str, generation: int) -> OutgoingEmail:
    """The e-mail to one attendee, with the links of their link generation read by the claim."""
    unsubscribe = attendee_link(
        tenant_id=announcement.tenant_id, attendee_id=attendee_id, generation=generation, page="unsubscribe"
    )
    page = attendee_link(tenant_id=announcement.tenant_id, attendee_id=attendee_id, generation=generation)
    footer = (
        f"\n\n--\nYour page for {announcement.event.title} (every announcement, and new photos of you once "
        f"you register a selfie there): {page}\n"
        f"You receive this because you registered for {announcement.event.title} with "
        f"{announcement.tenant.name}.\nStop these messages: {unsubscribe}\n"
    )
    return OutgoingEmail(
        key=key,
        to=to,
        subject=announcement.title,
        body=announcement.body + footer,
        headers={
            "Message-ID": mail_message_id(f"announcement.{announcement.pk}.{attendee_id}"),
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",  # RFC 8058
        },
    )


def _record(*, token: uuid.UUID, report: MailReport, claimed: list[tuple[Any, ...]], result: SendResult) -> None:
    """Record a batch's outcomes under the sender's claim token (one transaction). `attempts`
    counts the times an e-mail was handed to the mail service: sent and refused ones are final;
    one tried without a final answer fails at ANNOUNCEMENT_EMAIL_MAX_ATTEMPTS; an untried one is
    only released."""
    now = timezone.now()
    mine = AnnouncementDelivery.objects.filter(claim_token=token, status=AnnouncementDelivery.Status.PENDING)
    released = {"claim_token": None, "claimed_until": None}
    reason = report.interrupted or "not sent"
    done = set(report.sent) | set(report.refused)
    tried = set(report.tried) - done
    exhausted = [
        row[0] for row in claimed if row[0] in tried and row[2] + 1 >= settings.ANNOUNCEMENT_EMAIL_MAX_ATTEMPTS
    ]
    retried = [row[0] for row in claimed if row[0] in tried and row[0] not in exhausted]
    untried = [row[0] for row in claimed if row[0] not in done and row[0] not in tried]
    with transaction.atomic(durable=True):
        result.delivered += mine.filter(pk__in=report.sent).update(
            status=AnnouncementDelivery.Status.DELIVERED,
            delivered_at=now,
            last_error="",
            attempts=F("attempts") + 1,
            **released,
        )
        for delivery_id, refusal in report.refused.items():
            result.failed += mine.filter(pk=delivery_id).update(
                status=AnnouncementDelivery.Status.FAILED, last_error=refusal, attempts=F("attempts") + 1, **released
            )
        result.failed += mine.filter(pk__in=exhausted).update(
            status=AnnouncementDelivery.Status.FAILED, last_error=reason, attempts=F("attempts") + 1, **released
        )
        result.left_pending += mine.filter(pk__in=retried).update(
            last_error=reason, attempts=F("attempts") + 1, **released
        )
        result.left_pending += mine.filter(pk__in=untried).update(last_error=reason, **released)


# --- lost messages --------------------------------------------------------------------------

_STALE_SQL = """
SELECT d.tenant_id, d.announcement_id, min(d.attendee_id) - 1, max(d.attendee_id), array_agg(d.id)
  FROM (SELECT id, tenant_id, announcement_id, attendee_id
          FROM notifications_announcementdelivery
         WHERE status = 'pending' AND queued_at < %(cutoff)s AND (claimed_until IS NULL OR claimed_until < %(now)s)
         ORDER BY announcement_id, attendee_id
         LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED) d
 GROUP BY d.tenant_id, d.announcement_id
"""


@transaction.atomic(durable=True)
def fanouts_requeue_stale(*, older_than_seconds: float, limit: int = 100) -> int:
    """Ask again for the fan-outs still unfinished `older_than_seconds` after their message was
    queued (`apps.outbox.requeue`). Harmless when one is only slow or running: the new message
    finds the lease busy or goes on from the cursor. Outermost transaction, system context."""
    rows = requeue_stale(
        Announcement.objects.filter(send_requested_at__isnull=False, fanout_completed_at__isnull=True),
        queued_field="fanout_queued_at",
        fallback_field="send_requested_at",
        older_than_seconds=older_than_seconds,
        limit=limit,
        requeue=_publish_send_requested,
        flow="announcement_fanouts",
    )
    return len(rows)


@transaction.atomic(durable=True)
def deliveries_requeue_stale(*, older_than_seconds: float, limit: int = 10_000) -> int:
    """Ask again for the pending e-mails whose message the broker lost (or whose sender gave up
    retrying) `older_than_seconds` after they were queued: one `announcement.emails` message per
    announcement, over the id range of its stale e-mails. Returns how many e-mails were asked for
    again. Outermost transaction, system context (the beat task's). Harmless when the first
    message was only slow: a sender claims before it sends.
    """
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_STALE_SQL, {"cutoff": now - timedelta(seconds=older_than_seconds), "now": now, "limit": limit})
        groups = cursor.fetchall()
    requeued = 0
    for tenant_id, announcement_id, after, upto, ids in groups:
        outbox_publish(
            topic=TOPIC_EMAILS,
            tenant_id=tenant_id,
            aggregate_type="announcement",
            aggregate_id=announcement_id,
            payload={"announcement_id": announcement_id, "after": after, "upto": upto},
        )
        AnnouncementDelivery.objects.filter(pk__in=ids).update(queued_at=now)
        requeued += len(ids)
    if requeued:
        logger.warning("lost announcement e-mails asked for again", extra={"count": requeued})
        transaction.on_commit(lambda: count_requeued("announcement_emails", requeued))
    return requeued
