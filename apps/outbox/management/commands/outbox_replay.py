"""`manage.py outbox_replay --dead | --ids ID [ID ...]`: move dead letters back to pending (audited)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from apps.core.management.replay import ReplayCommand
from apps.outbox.services import outbox_replay


class Command(ReplayCommand):
    help = "Replay dead-lettered outbox messages (each replay is written to the audit log)."
    all_flag = "dead"
    all_help = "replay every dead letter"
    id_noun = "message"
    missing_key = "skipped"
    system_reason = "outbox replay"

    def replay(self, *, ids: list[uuid.UUID] | None, replay_all: bool, actor: str) -> Iterable[uuid.UUID]:
        return outbox_replay(message_ids=ids, all_dead=replay_all, actor_label=actor)
