"""`manage.py outbox_replay --dead | --ids ID [ID ...] [--include-published]`: move dead letters
(and, with `--include-published`, named messages the broker lost) back to pending (audited)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from django.core.management.base import CommandError, CommandParser

from apps.core.management.replay import ReplayCommand
from apps.outbox.services import outbox_replay


class Command(ReplayCommand):
    help = "Replay dead-lettered outbox messages (each replay is written to the audit log)."
    all_flag = "dead"
    all_help = "replay every dead letter"
    id_noun = "message"
    missing_key = "skipped"
    system_reason = "outbox replay"

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--include-published",
            action="store_true",
            help="with --ids: send again messages already published (their broker message was lost)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["include_published"] and not options["ids"]:
            raise CommandError("--include-published needs --ids: published messages are sent again only by id")
        self._include_published = bool(options["include_published"])
        super().handle(*args, **options)

    def replay(self, *, ids: list[uuid.UUID] | None, replay_all: bool, actor: str) -> Iterable[uuid.UUID]:
        return outbox_replay(
            message_ids=ids, all_dead=replay_all, include_published=self._include_published, actor_label=actor
        )
