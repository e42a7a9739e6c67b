"""Base for audited replay commands: `--<all-flag> | --ids UUID ...`, printing JSON."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.tenancy.context import system_context


class ReplayCommand(BaseCommand):
    """Subclasses name the bulk flag, the id noun, the system-context reason and `replay()`.

    Prints {"replayed": [...], "<missing_key>": [ids asked for but not replayed]}.
    """

    all_flag: str
    all_help: str
    id_noun: str
    missing_key: str
    system_reason: str

    def replay(self, *, ids: list[uuid.UUID] | None, replay_all: bool, actor: str) -> Iterable[uuid.UUID]:
        raise NotImplementedError

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument(f"--{self.all_flag}", action="store_true", help=self.all_help)
        which.add_argument("--ids", nargs="+", metavar="ID", help=f"replay these {self.id_noun} ids")
        parser.add_argument("--actor", default="cli", help="who is replaying, for the audit log")

    def handle(self, *args: Any, **options: Any) -> None:
        ids: list[uuid.UUID] | None = None
        if options["ids"]:
            try:
                ids = [uuid.UUID(value) for value in options["ids"]]
            except ValueError as exc:
                raise CommandError(f"not a {self.id_noun} id: {exc}") from exc
        with system_context(self.system_reason):
            replayed = self.replay(ids=ids, replay_all=bool(options[self.all_flag]), actor=options["actor"])
        result: dict[str, Any] = {"replayed": [str(i) for i in replayed]}
        if ids is not None:
            result[self.missing_key] = sorted({str(i) for i in ids} - set(result["replayed"]))
        self.stdout.write(json.dumps(result))
