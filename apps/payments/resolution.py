"""An operator's resolution of webhook events that failed for good (writes; beside services.py).

A `failed` event whose error no replay can fix (a `SessionMismatch`: a payment in a provider
session that is not its checkout's, refunded by the operator in the provider's dashboard; a
`PaidWithoutAmount`) would stay failed for ever and keep `DarkroomWebhookEventFailed` firing,
hiding the next failure. The operator deals with it outside Darkroom, then records that here
(admin action "Mark the selected failed events resolved", `manage.py webhooks_resolve`): the
event turns `resolved` (`resolved_at`, `resolved_by`, `resolution_note`) and keeps its error and
traceback for the record. A resolved event is final: `darkroom_webhook_events_open` no longer
counts it, replays skip it and the processor leaves it alone (`apps.payments.services`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from apps.core.problems import DomainError
from apps.payments.models import WebhookEvent
from apps.payments.services import webhook_event_audit
from apps.tenancy.models import User

logger = logging.getLogger("darkroom.payments.webhooks")

RESOLUTION_NOTE_MAX_CHARS = 1000


class WebhookResolutionRefused(DomainError):
    """A resolution without a note (or one too long), naming no event, or naming an event that
    does not exist: nothing is resolved."""

    status_code = 400
    slug = "webhook-resolution-refused"
    title = "The webhook events cannot be resolved"
    when_it_happens = (
        "Darkroom's support team tried to mark payment provider notifications that Darkroom could not apply "
        "as dealt with, without a note saying how (or with one too long), naming none, or naming one that "
        "does not exist. Nothing was marked."
    )
    what_to_do = (
        "Nothing is asked of an API client: only Darkroom's support team marks such notifications. They add "
        "the note or correct the notifications named, as `detail` says, and try again."
    )


@dataclass(frozen=True)
class ResolveResult:
    """What a resolution did (or, in a dry run, would do): the events resolved, in id order,
    and those left alone because they are not `failed`, with their status."""

    resolved: list[uuid.UUID] = field(default_factory=list)
    skipped: dict[uuid.UUID, str] = field(default_factory=dict)


def resolution_note_clean(note: str) -> str:
    """The note as stored (stripped). Raises WebhookResolutionRefused if it is blank or longer
    than RESOLUTION_NOTE_MAX_CHARS."""
    note = note.strip()
    if not note:
        raise WebhookResolutionRefused(
            'Say what was done about the events (e.g. "refunded ch_123 in Stripe\'s dashboard").'
        )
    if len(note) > RESOLUTION_NOTE_MAX_CHARS:
        raise WebhookResolutionRefused(f"The note is longer than {RESOLUTION_NOTE_MAX_CHARS} characters.")
    return note


@transaction.atomic(durable=True)
def webhook_events_resolve(
    *,
    ids: Iterable[uuid.UUID | str],
    note: str,
    actor_label: str,
    actor: User | None = None,
    dry_run: bool = False,
) -> ResolveResult:
    """Record that an operator dealt with the `failed` events among `ids` (`note`: what they
    did); one `webhook_event.resolve` audit row per event resolved. Returns what changed.

    Outermost transaction; the caller acts in the system context (admin, CLI). The events are
    locked in id order, so of two operators resolving one event at once the second waits and
    then finds it resolved: skipped, with no second audit row. Events that are not `failed`
    (received, processed, ignored, resolved already) are skipped, untouched. With `dry_run`,
    says what it would do and writes nothing.

    Raises WebhookResolutionRefused, writing nothing, for a blank or overlong note, no ids, or
    an id of no event (a typo must not resolve the others and pass unnoticed).
    """
    note = resolution_note_clean(note)
    wanted = sorted({uuid.UUID(str(value)) for value in ids})
    if not wanted:
        raise WebhookResolutionRefused("Name the webhook events to resolve.")
    events = list(WebhookEvent.objects.select_for_update().filter(pk__in=wanted).order_by("pk"))
    unknown = sorted(set(wanted) - {event.pk for event in events})
    if unknown:
        raise WebhookResolutionRefused(
            "No webhook event " + ", ".join(str(pk) for pk in unknown) + ": nothing was resolved."
        )
    failed = [event for event in events if event.status == WebhookEvent.Status.FAILED]
    result = ResolveResult(
        resolved=[event.pk for event in failed],
        skipped={event.pk: event.status for event in events if event.status != WebhookEvent.Status.FAILED},
    )
    if dry_run:
        return result
    now = timezone.now()
    for event in failed:
        event.status = WebhookEvent.Status.RESOLVED
        event.resolved_at = now
        event.resolved_by = actor_label[:150]
        event.resolution_note = note
        event.save(update_fields=["status", "resolved_at", "resolved_by", "resolution_note"])
        webhook_event_audit(
            event,
            action="webhook_event.resolve",
            actor=actor,
            actor_label=actor_label,
            event_type=event.event_type,
            note=note,
        )
        logger.info(
            "failed webhook event resolved by an operator",
            extra={"webhook_event_id": str(event.pk), "provider": event.provider, "event_id": event.event_id},
        )
    return result
