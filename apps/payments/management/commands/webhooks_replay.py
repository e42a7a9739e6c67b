"""`manage.py webhooks_replay --failed | --ids ID [ID ...]`: re-run processing of webhook events.

Each replayed event gets a fresh `webhook.received` outbox message (processed by the worker) and
an audit row. Processing is idempotent, so replaying an already processed event is harmless. A
resolved event (`webhooks_resolve`) is never replayed: named by id, it is listed as not replayed
and said so on stderr.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from apps.core.management.replay import ReplayCommand
from apps.payments.models import WebhookEvent
from apps.payments.services import webhook_events_replay


class Command(ReplayCommand):
    help = "Replay webhook events (failed ones, or by id); each replay is written to the audit log."
    all_flag = "failed"
    all_help = "replay every failed event"
    id_noun = "webhook event"
    missing_key = "unknown"
    system_reason = "webhooks replay"

    def replay(self, *, ids: list[uuid.UUID] | None, replay_all: bool, actor: str) -> Iterable[uuid.UUID]:
        replayed = webhook_events_replay(ids=ids, failed=replay_all, actor_label=actor)
        if ids:
            resolved = WebhookEvent.objects.filter(pk__in=ids, status=WebhookEvent.Status.RESOLVED)
            for pk in sorted(str(pk) for pk in resolved.values_list("pk", flat=True)):
                self.stderr.write(f"not replayed, resolved by an operator: {pk}")
        return replayed
