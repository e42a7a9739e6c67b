"""`manage.py outbox_replay --dead | --ids ID [ID ...]`: move dead letters back to pending (audited)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.outbox.services import outbox_replay
from apps.tenancy.context import system_context


class Command(BaseCommand):
    help = "Replay dead-lettered outbox messages (each replay is written to the audit log)."

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--dead", action="store_true", help="replay every dead letter")
        which.add_argument("--ids", nargs="+", metavar="ID", help="replay these message ids (dead letters only)")
        parser.add_argument("--actor", default="cli", help="who is replaying, for the audit log")

    def handle(self, *args: Any, **options: Any) -> None:
        ids: list[uuid.UUID] | None = None
        if options["ids"]:
            try:
                ids = [uuid.UUID(value) for value in options["ids"]]
            except ValueError as exc:
                raise CommandError(f"not a message id: {exc}") from exc
        with system_context("outbox replay"):
            replayed = outbox_replay(message_ids=ids, all_dead=bool(options["dead"]), actor_label=options["actor"])
        result: dict[str, Any] = {"replayed": [str(i) for i in replayed]}
        if ids is not None:
            result["skipped"] = sorted({str(i) for i in ids} - set(result["replayed"]))
        self.stdout.write(json.dumps(result))
