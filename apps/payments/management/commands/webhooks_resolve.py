"""`manage.py webhooks_resolve EVENT_ID [EVENT_ID ...] --note "..." [--actor A] [--dry-run]`: record
that failed webhook events were dealt with outside Darkroom (the admin's "Mark the selected
failed events resolved", for operators without admin access).

Resolves the `failed` events among those named (`webhook_events_resolve`: one transaction, the
events locked, one audit row each); the others are skipped and listed with their status. An id
of no event, or a blank note, refuses the whole command and writes nothing. `--dry-run` says
what would be resolved and writes nothing. Prints
{"dry_run": ..., "resolved": [...], "skipped": {id: status}}.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.payments.resolution import WebhookResolutionRefused, webhook_events_resolve
from apps.tenancy.context import system_context


class Command(BaseCommand):
    help = (
        "Mark failed webhook events resolved (dealt with outside Darkroom, e.g. refunded in the provider's "
        "dashboard); each resolution is written to the audit log."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="+", metavar="EVENT_ID", help="webhook event ids (the admin's id column)")
        parser.add_argument(
            "--note", required=True, help='what was done, e.g. "refunded ch_123 in Stripe\'s dashboard"'
        )
        parser.add_argument("--actor", default="cli", help="who is resolving, for the event and the audit log")
        parser.add_argument("--dry-run", action="store_true", help="say what would be resolved; write nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        ids: list[uuid.UUID] = []
        for value in options["ids"]:
            try:
                ids.append(uuid.UUID(value))
            except ValueError as exc:
                raise CommandError(f"not a webhook event id: {value!r}") from exc
        try:
            with system_context("webhooks resolve"):
                result = webhook_events_resolve(
                    ids=ids, note=options["note"], actor_label=options["actor"], dry_run=options["dry_run"]
                )
        except WebhookResolutionRefused as refusal:
            raise CommandError(refusal.detail) from refusal
        self.stdout.write(
            json.dumps(
                {
                    "dry_run": options["dry_run"],
                    "resolved": [str(pk) for pk in result.resolved],
                    "skipped": {str(pk): status for pk, status in result.skipped.items()},
                }
            )
        )
