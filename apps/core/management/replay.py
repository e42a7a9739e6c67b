"""Base for audited replay commands: `--<all-flag> | --ids ID ...`, `--actor`, `--json`.

A name of no row refuses the whole command before anything is written (a typo must not pass
unnoticed while the others are replayed). The output says what was done in words, row by row;
with `--json`, one document for scripts: {"<done_key>": [ids], "skipped": {id: status}}, the
rows named but left alone, with their status.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.tenancy.context import system_context


class ReplayCommand(BaseCommand):
    """Subclasses name the bulk flag, the system-context reason and the JSON key of what was
    done, and implement `named()`, `replay()`, `statuses()` and `say()`."""

    all_flag: str
    all_help: str
    ids_help: str
    system_reason: str
    ids_metavar = "ID"
    done_key = "replayed"

    def named(self, values: Sequence[str]) -> list[uuid.UUID]:
        """The ids `values` name. Raises CommandError naming those that name nothing (or more
        than one row), before anything is written."""
        raise NotImplementedError

    def replay(self, *, ids: list[uuid.UUID] | None, replay_all: bool, actor: str) -> list[uuid.UUID]:
        raise NotImplementedError

    def statuses(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The status of each of `ids` now (the rows named and not replayed)."""
        raise NotImplementedError

    def say(self, *, done: list[uuid.UUID], skipped: dict[uuid.UUID, str], replay_all: bool) -> list[str]:
        """The output in words, one line each."""
        raise NotImplementedError

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument(f"--{self.all_flag}", action="store_true", help=self.all_help)
        which.add_argument("--ids", nargs="+", metavar=self.ids_metavar, help=self.ids_help)
        parser.add_argument("--actor", default="cli", help="who is replaying, for the audit log")
        parser.add_argument("--json", action="store_true", help="print one JSON document instead of sentences")

    def handle(self, *args: Any, **options: Any) -> None:
        replay_all = bool(options[self.all_flag])
        with system_context(self.system_reason):
            ids = self.named(options["ids"]) if options["ids"] else None
            done = self.replay(ids=ids, replay_all=replay_all, actor=options["actor"])
            left = [pk for pk in ids or [] if pk not in set(done)]
            skipped = self.statuses(left) if left else {}
        if options["json"]:
            document = {self.done_key: [str(pk) for pk in done], "skipped": {str(k): v for k, v in skipped.items()}}
            self.stdout.write(json.dumps(document))
        else:
            self.stdout.write("\n".join(self.say(done=done, skipped=skipped, replay_all=replay_all)))
