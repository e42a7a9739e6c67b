"""`manage.py webhooks_replay --failed | --ids ID [ID ...]`: re-run processing of webhook events.

Each replayed event gets a fresh `webhook.received` outbox message (processed by the worker) and
an audit row. Processing is idempotent, so replaying an already processed event is harmless.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from apps.core.management.replay import ReplayCommand
from apps.payments.services import webhook_events_replay


class Command(ReplayCommand):
    help = "Replay webhook events (failed ones, or by id); each replay is written to the audit log."
    all_flag = "failed"
    all_help = "replay every failed event"
    id_noun = "webhook event"
    missing_key = "unknown"
    system_reason = "webhooks replay"

    def replay(self, *, ids: list[uuid.UUID] | None, replay_all: bool, actor: str) -> Iterable[uuid.UUID]:
        return webhook_events_replay(ids=ids, failed=replay_all, actor_label=actor)
