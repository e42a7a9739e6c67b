"""Reads for attendees, notifications and announcements, and the attendee's signed link.

The attendee's link (`/attendee/<token>/...`) is their credential: a `Signer` (SECRET_KEY, salt
below) over {"t": tenant, "a": attendee} and, once the link was replaced, "g": its generation
(`Attendee.link_generation`; the first links, generation 0, carry none, so every link sent
before generations existed is generation 0). It does not expire. Only the link of the current
generation opens the attendee's pages (`attendee_from_token`); replacing it (the attendee's
"send me a new one", the studio's reset) retires every earlier one, which then gets the same 404
as a tampered link. The one exception is unsubscribing (`attendee_from_unsubscribe_token`): a
one-click `List-Unsubscribe` in an old e-mail must keep working, and it only stops mail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.db.models import Count, Max, Min, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from apps.core.problems import DomainError
from apps.notifications.models import Announcement, AnnouncementDelivery, Attendee, Notification, PhotoAlert
from apps.tenancy.context import tenant_context

ATTENDEE_SALT = "darkroom.notifications.attendee"


class AttendeeLinkInvalid(DomainError):
    """An attendee's personal link (to their photo alerts, to unsubscribe, to send a selfie) that
    is not valid: mistyped, cut short, or replaced by a newer link."""

    status_code = 404
    slug = "attendee-link-invalid"
    title = "This link is not valid"
    what_to_do = (
        "Use the newest link the studio sent. If none works, ask the studio for a new one: a new link "
        "(POST /api/v1/events/{id}/attendees/{attendee}/reset-link) stops every earlier one."
    )


# One answer for every refused link (tampered, unknown, replaced): a replaced link says no more
# than a forged one. The second sentence helps the attendee who replaced it themselves.
LINK_INVALID_DETAIL = "This link is not valid. If it was replaced, use the newest link you were sent."


def attendee_token(*, tenant_id: int, attendee_id: int, generation: int = 0) -> str:
    """The signed token of the attendee's link of `generation` (0: the first one, which carries
    no "g", as every link made before generations existed)."""
    claims: dict[str, int] = {"t": tenant_id, "a": attendee_id}
    if generation:
        claims["g"] = generation
    return signing.Signer(salt=ATTENDEE_SALT).sign_object(claims)


def attendee_link(*, tenant_id: int, attendee_id: int, generation: int, page: str = "inbox") -> str:
    """Absolute URL of the attendee's inbox (`page="inbox"`), drop-in or unsubscribe page, for the
    link of `generation`: pass the attendee's current `link_generation`, read when the URL is
    shown or sent (an older one opens nothing but the unsubscribe page)."""
    token = attendee_token(tenant_id=tenant_id, attendee_id=attendee_id, generation=generation)
    path = reverse(f"attendee-{page}", kwargs={"token": token})
    return f"{settings.DARKROOM_PUBLIC_BASE_URL.rstrip('/')}{path}"


def token_claims(token: str) -> tuple[int, int, int]:
    """(tenant, attendee, generation) of a token we signed. Raises AttendeeLinkInvalid."""
    try:
        data = signing.Signer(salt=ATTENDEE_SALT).unsign_object(token)
        tenant_id, attendee_id = int(data["t"]), int(data["a"])
        generation = data.get("g", 0)
    except (signing.BadSignature, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise AttendeeLinkInvalid(LINK_INVALID_DETAIL) from exc
    if type(generation) is not int or generation < 0 or (generation == 0 and "g" in data):
        raise AttendeeLinkInvalid(LINK_INVALID_DETAIL)  # never signed: generation 0 carries no "g"
    return tenant_id, attendee_id, generation


def _attendee_of(tenant_id: int, attendee_id: int) -> Attendee:
    with tenant_context(tenant_id):
        attendee = Attendee.objects.select_related("event", "tenant").filter(pk=attendee_id).first()
    if attendee is None:
        raise AttendeeLinkInvalid(LINK_INVALID_DETAIL)
    return attendee


def attendee_from_token(*, token: str) -> Attendee:
    """The attendee a valid link of their current generation names: the credential of every
    attendee page but unsubscribing. The generation must equal `link_generation` exactly.
    Raises AttendeeLinkInvalid (tampered, malformed, replaced, or the attendee is gone)."""
    tenant_id, attendee_id, generation = token_claims(token)
    attendee = _attendee_of(tenant_id, attendee_id)
    if generation != attendee.link_generation:
        raise AttendeeLinkInvalid(LINK_INVALID_DETAIL)
    return attendee


def attendee_link_still_current(*, attendee: Attendee) -> bool:
    """Inside the caller's transaction: lock the attendee's row and say whether the generation the
    request's link was admitted with is still current. A write through an attendee's link calls
    it first, so a link replaced while the request was being read (a slow selfie upload) writes
    nothing: the replacement committed before (False) or waits for this transaction."""
    return (
        Attendee.objects.select_for_update(no_key=True)
        .filter(tenant_id=attendee.tenant_id, pk=attendee.pk, link_generation=attendee.link_generation)
        .exists()
    )


def attendee_from_unsubscribe_token(*, token: str) -> tuple[Attendee, bool]:
    """The attendee a valid link of their current or any earlier generation names, and whether
    the link is current. For unsubscribing only (an old e-mail's one-click link must work; it
    only stops mail). Raises AttendeeLinkInvalid (tampered, malformed, a generation never
    issued, or the attendee is gone)."""
    tenant_id, attendee_id, generation = token_claims(token)
    attendee = _attendee_of(tenant_id, attendee_id)
    if generation > attendee.link_generation:
        raise AttendeeLinkInvalid(LINK_INVALID_DETAIL)
    return attendee, generation == attendee.link_generation


def attendees_of_event(*, event_id: int) -> QuerySet[Attendee]:
    """An event's attendees in registration order (the caller's tenant context scopes them)."""
    return Attendee.objects.filter(event_id=event_id).order_by("id")


def notifications_of_attendee(*, tenant_id: int, attendee_id: int) -> QuerySet[Notification]:
    return Notification.objects.filter(tenant_id=tenant_id, attendee_id=attendee_id).order_by("-created_at", "-id")


def notifications_page(
    *, tenant_id: int, attendee_id: int, older_than: int | None, size: int
) -> tuple[list[Notification], bool]:
    """One page of the attendee's notifications, newest first, and whether older ones follow.
    `older_than` is the id of the last one shown (a keyset on (created_at, id), the inbox index's
    order: no OFFSET scan); an id that is not this attendee's starts from the newest."""
    rows = notifications_of_attendee(tenant_id=tenant_id, attendee_id=attendee_id)
    if older_than is not None:
        last = rows.filter(pk=older_than).values_list("created_at", flat=True).first()
        if last is not None:
            rows = rows.filter(Q(created_at__lt=last) | Q(created_at=last, id__lt=older_than))
    page = list(rows[: size + 1])
    return page[:size], len(page) > size


def newest_notification_id(*, tenant_id: int, attendee_id: int) -> int:
    """The id of the attendee's newest notification (0: none): what "mark all read" on a page
    rendered now may mark. Ids follow insertion, so a notification inserted after this read gets a
    larger one."""
    newest = Notification.objects.filter(tenant_id=tenant_id, attendee_id=attendee_id).aggregate(n=Max("id"))["n"]
    return int(newest or 0)


def unread_count(*, tenant_id: int, attendee_id: int) -> int:
    return Notification.objects.filter(tenant_id=tenant_id, attendee_id=attendee_id, read_at__isnull=True).count()


@dataclass(frozen=True)
class AnnouncementStatus:
    """What an announcement's deliveries say (DESIGN: derived, never set optimistically).

    * draft: nobody asked to send it;
    * sending: the fan-out is not done or some e-mails are pending;
    * sent: every delivery delivered (also when the audience was empty);
    * partially_failed: done, some delivered and some failed;
    * failed: done, and every delivery failed.
    """

    status: str
    recipients: int
    delivered: int
    failed: int
    pending: int

    @property
    def done(self) -> bool:
        return self.status in ("sent", "partially_failed", "failed")


def announcement_status(announcement: Announcement) -> AnnouncementStatus:
    return announcement_statuses([announcement])[announcement.pk]


def announcement_statuses(announcements: Sequence[Announcement]) -> dict[int, AnnouncementStatus]:
    """Each announcement's derived status by id, from one grouped count of its deliveries."""
    counts: dict[int, dict[str, int]] = {}
    rows = (
        AnnouncementDelivery.objects.filter(announcement_id__in=[a.pk for a in announcements])
        .values("announcement_id", "status")
        .annotate(n=Count("id"))
        .values_list("announcement_id", "status", "n")
    )
    for announcement_id, status, n in rows:
        counts.setdefault(int(announcement_id), {})[str(status)] = int(n)
    return {a.pk: _derived_status(a, counts.get(a.pk, {})) for a in announcements}


def _derived_status(announcement: Announcement, counts: dict[str, int]) -> AnnouncementStatus:
    delivered = counts.get(AnnouncementDelivery.Status.DELIVERED, 0)
    failed = counts.get(AnnouncementDelivery.Status.FAILED, 0)
    pending = counts.get(AnnouncementDelivery.Status.PENDING, 0)
    if announcement.send_requested_at is None:
        status = "draft"
    elif announcement.fanout_completed_at is None or pending:
        status = "sending"
    elif not failed:
        status = "sent"
    elif delivered:
        status = "partially_failed"
    else:
        status = "failed"
    return AnnouncementStatus(
        status=status, recipients=delivered + failed + pending, delivered=delivered, failed=failed, pending=pending
    )


def announcement_channels(announcement: Announcement) -> dict[str, int]:
    """The announcement's deliveries by channel: `email` (to attendees who agreed to e-mail) and
    `in_app` (shown on the attendee's page only: no e-mail consent, or unsubscribed before the
    e-mail left). One grouped count."""
    rows = (
        AnnouncementDelivery.objects.filter(announcement_id=announcement.pk)
        .values("channel")
        .annotate(n=Count("id"))
        .values_list("channel", "n")
    )
    counts = {str(channel): int(n) for channel, n in rows}
    return {channel: counts.get(channel, 0) for channel in AnnouncementDelivery.Channel.values}


def announcements_of_tenant() -> QuerySet[Announcement]:
    """The caller's tenant's announcements, newest first (RLS scopes them)."""
    return Announcement.objects.order_by("-created_at", "-id")


@dataclass(frozen=True)
class DeliveryStats:
    pending_emails: int
    oldest_pending_age_seconds: float
    unfinished_fanouts: int
    photo_alerts_overdue: int
    oldest_overdue_photo_alert_seconds: float


def delivery_stats() -> DeliveryStats:
    """Pending e-mails, the oldest one's age, unfinished fan-outs, and the photo alerts past their
    due time (for /metrics; the caller picks the tenant or system context). Reads only pending
    and owed rows (partial indexes), never the history."""
    pending = AnnouncementDelivery.objects.filter(status=AnnouncementDelivery.Status.PENDING).aggregate(
        n=Count("id"), oldest=Min("created_at")
    )
    oldest = pending["oldest"]
    age = max(0.0, (timezone.now() - oldest).total_seconds()) if oldest is not None else 0.0
    unfinished = Announcement.objects.filter(send_requested_at__isnull=False, fanout_completed_at__isnull=True).count()
    now = timezone.now()
    overdue = PhotoAlert.objects.filter(due_at__lte=now).aggregate(n=Count("id"), oldest=Min("due_at"))
    return DeliveryStats(
        pending_emails=pending["n"],
        oldest_pending_age_seconds=age,
        unfinished_fanouts=unfinished,
        photo_alerts_overdue=overdue["n"],
        oldest_overdue_photo_alert_seconds=(now - overdue["oldest"]).total_seconds() if overdue["oldest"] else 0.0,
    )
