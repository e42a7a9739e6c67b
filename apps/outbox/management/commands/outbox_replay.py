"""`manage.py outbox_replay --dead | --ids ID [ID ...] [--include-published] [--json]`: move dead
letters (and, with `--include-published`, named messages the broker lost) back to pending
(audited), for the relay to send again.

An id of no message refuses the whole command ("Not found: ...", exit status 1) and replays
nothing. The output lists each message replayed (id, topic) and each named one left alone with
why: "not dead-lettered (status pending)". `--json` prints {"replayed": [...], "skipped":
{id: status}} instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.core.management.base import CommandError, CommandParser

from apps.core.management.replay import ReplayCommand
from apps.outbox.models import OutboxMessage
from apps.outbox.services import outbox_replay

GONE = "deleted"  # a message named, found, then deleted (retention) before it could be replayed


class Command(ReplayCommand):
    help = "Replay dead-lettered outbox messages (each replay is written to the audit log)."
    all_flag = "dead"
    all_help = "replay every dead letter"
    ids_help = "replay these messages (their ids, as the admin's outbox messages list them)"
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

    def named(self, values: Sequence[str]) -> list[uuid.UUID]:
        parsed: dict[str, uuid.UUID | None] = {}
        for value in values:
            try:
                parsed[value] = uuid.UUID(value.strip())
            except ValueError:
                parsed[value] = None
        ids = list(dict.fromkeys(pk for pk in parsed.values() if pk is not None))
        existing = set(OutboxMessage.objects.filter(pk__in=ids).values_list("pk", flat=True))
        unknown = [value for value, pk in parsed.items() if pk not in existing]
        if unknown:
            raise CommandError(
                f"Not found: outbox message {', '.join(unknown)}. Nothing was replayed; check the ids in the admin's "
                "outbox messages."
            )
        return ids

    def replay(self, *, ids: list[uuid.UUID] | None, replay_all: bool, actor: str) -> list[uuid.UUID]:
        self._topics = dict(
            OutboxMessage.objects.filter(**({"pk__in": ids} if ids is not None else {"status": "dead"})).values_list(
                "pk", "topic"
            )
        )
        return outbox_replay(
            message_ids=ids, all_dead=replay_all, include_published=self._include_published, actor_label=actor
        )

    def statuses(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        found = dict(OutboxMessage.objects.filter(pk__in=ids).values_list("pk", "status"))
        return {pk: found.get(pk, GONE) for pk in ids}

    def say(self, *, done: list[uuid.UUID], skipped: dict[uuid.UUID, str], replay_all: bool) -> list[str]:
        if not done and replay_all:
            return ["No dead letters: nothing replayed."]
        lines = []
        if done:
            one = len(done) == 1
            lines.append(
                f"Replayed {len(done)} outbox {'message' if one else 'messages'}: pending again, the relay sends "
                f"{'it' if one else 'them'} within seconds (see {'its' if one else 'their'} status in the admin's "
                "outbox messages)."
            )
            lines += [f"  {pk} {self._topics.get(pk, '')}".rstrip() for pk in done]
        if skipped:
            lines.append("Not replayed:")
            for pk, status in skipped.items():
                if status == GONE:
                    lines.append(f"  {pk} not found any more (deleted meanwhile)")
                    continue
                hint = "; --include-published sends it again" if status == "published" else ""
                lines.append(f"  {pk} not dead-lettered (status {status}{hint})")
        return lines or ["Nothing replayed."]
