"""`manage.py webhooks_replay --failed | --ids ID [ID ...]`: re-run processing of webhook events.

Each replayed event gets a fresh `webhook.received` outbox message (processed by the worker) and
an audit row. Processing is idempotent, so replaying an already processed event is harmless.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.payments.services import webhook_events_replay
from apps.tenancy.context import system_context


class Command(BaseCommand):
    help = "Replay webhook events (failed ones, or by id); each replay is written to the audit log."

    def add_arguments(self, parser: CommandParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--failed", action="store_true", help="replay every failed event")
        which.add_argument("--ids", nargs="+", metavar="ID", help="replay these webhook event ids")
        parser.add_argument("--actor", default="cli", help="who is replaying, for the audit log")

    def handle(self, *args: Any, **options: Any) -> None:
        ids: list[uuid.UUID] | None = None
        if options["ids"]:
            try:
                ids = [uuid.UUID(value) for value in options["ids"]]
            except ValueError as exc:
                raise CommandError(f"not a webhook event id: {exc}") from exc
        with system_context("webhooks replay"):
            replayed = webhook_events_replay(ids=ids, failed=bool(options["failed"]), actor_label=options["actor"])
        result: dict[str, Any] = {"replayed": [str(i) for i in replayed]}
        if ids is not None:
            result["unknown"] = sorted({str(i) for i in ids} - set(result["replayed"]))
        self.stdout.write(json.dumps(result))
