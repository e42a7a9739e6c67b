"""`manage.py webhooks_replay --failed | --ids EVENT [EVENT ...] [--json]`: queue webhook events to
be processed again.

Events are named as the admin lists them: the provider's event id (`evt_1Nq...`), as
`provider:event id` when two providers sent one id, or by row id (`apps.payments.management.
webhook_events`); a name of no event, or of several, refuses the whole command and queues
nothing. Each replayed event gets a fresh `webhook.received` outbox message (processed by the
worker) and an audit row. Processing is idempotent, so replaying an already processed event is
harmless. A resolved event (`webhooks_resolve`) is never replayed: named, it is listed as not
replayed. The command only queues: it says so, and where each event's outcome shows (its admin
page). `--json` prints {"queued": [...], "skipped": {id: status}} instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.urls import reverse

from apps.core.management.replay import ReplayCommand
from apps.payments.management.webhook_events import NAMES_HELP, event_name, webhook_events_named
from apps.payments.models import WebhookEvent
from apps.payments.services import webhook_events_replay


class Command(ReplayCommand):
    help = (
        "Queue webhook events to be processed again (failed ones, or named); each replay is written to the audit log."
    )
    all_flag = "failed"
    all_help = "replay every failed event"
    ids_help = f"replay these {NAMES_HELP}"
    system_reason = "webhooks replay"
    ids_metavar = "EVENT"
    done_key = "queued"

    def named(self, values: Sequence[str]) -> list[uuid.UUID]:
        return [event.pk for event in webhook_events_named(values, refused="Nothing was replayed.")]

    def replay(self, *, ids: list[uuid.UUID] | None, replay_all: bool, actor: str) -> list[uuid.UUID]:
        # As they were before the replay (the worker may process one as soon as it is queued).
        before = (
            WebhookEvent.objects.filter(pk__in=ids) if ids is not None else WebhookEvent.objects.filter(status="failed")
        )
        self._events = {event.pk: event for event in before.only("pk", "provider", "event_id", "status")}
        replayed = webhook_events_replay(ids=ids, failed=replay_all, actor_label=actor)
        missing = [pk for pk in replayed if pk not in self._events]  # failed since the read above
        self._events.update((event.pk, event) for event in WebhookEvent.objects.filter(pk__in=missing))
        return replayed

    def statuses(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        self._left = {event.pk: event for event in WebhookEvent.objects.filter(pk__in=ids)}
        return {pk: event.status for pk, event in self._left.items()}

    def say(self, *, done: list[uuid.UUID], skipped: dict[uuid.UUID, str], replay_all: bool) -> list[str]:
        if not done and replay_all:
            return ["No failed webhook events: nothing queued."]
        lines = []
        if done:
            one = len(done) == 1
            lines.append(
                f"Queued {len(done)} webhook {'event' if one else 'events'} to be processed again; "
                f"{'it is' if one else 'they are'} not processed yet:"
            )
            for pk in done:
                event = self._events[pk]
                page = reverse("admin:payments_webhookevent_change", args=[pk])
                lines.append(f"  {event_name(event)} (was {event.status}): {page}")
            lines.append(
                "The worker takes each within seconds. Its outcome shows on its admin page: status processed, or "
                "failed with the new error."
            )
        for pk, status in skipped.items():
            event = self._left[pk]
            if status == WebhookEvent.Status.RESOLVED:
                lines.append(f"Not replayed, resolved by an operator (final): {event_name(event)}")
            else:  # not left out by the replay; listed rather than lost
                lines.append(f"Not replayed ({status}): {event_name(event)}")
        return lines or ["Nothing queued."]
