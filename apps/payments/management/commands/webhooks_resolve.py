"""`manage.py webhooks_resolve EVENT [EVENT ...] --note "..." [--actor A] [--dry-run] [--json]`:
record that failed webhook events were dealt with outside Darkroom (the admin's "Mark the
selected failed events resolved", for operators without admin access).

Events are named as the admin lists them: the provider's event id (`evt_1Nq...`), as
`provider:event id` when two providers sent one id, or by row id (`apps.payments.management.
webhook_events`). Resolves the `failed` events among those named (`webhook_events_resolve`: one
transaction, the events locked, one audit row each); the others are left and listed with their
status. A name of no event or of several, or a blank note, refuses the whole command and writes
nothing. `--dry-run` says what would be resolved and writes nothing. Says what it did in words;
`--json` prints {"dry_run": ..., "resolved": [...], "skipped": {id: status}} instead.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.payments.management.webhook_events import NAMES_HELP, event_name, webhook_events_named
from apps.payments.resolution import WebhookResolutionRefused, resolution_note_clean, webhook_events_resolve
from apps.tenancy.context import system_context


class Command(BaseCommand):
    help = (
        "Mark failed webhook events resolved (dealt with outside Darkroom, e.g. refunded in the provider's "
        "dashboard); each resolution is written to the audit log."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="+", metavar="EVENT", help=NAMES_HELP)
        parser.add_argument(
            "--note", required=True, help='what was done, e.g. "refunded ch_123 in Stripe\'s dashboard"'
        )
        parser.add_argument("--actor", default="cli", help="who is resolving, for the event and the audit log")
        parser.add_argument("--dry-run", action="store_true", help="say what would be resolved; write nothing")
        parser.add_argument("--json", action="store_true", help="print one JSON document instead of sentences")

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = bool(options["dry_run"])
        try:
            note = resolution_note_clean(options["note"])
            with system_context("webhooks resolve"):
                events = {e.pk: e for e in webhook_events_named(options["ids"], refused="Nothing was resolved.")}
                result = webhook_events_resolve(
                    ids=list(events), note=note, actor_label=options["actor"], dry_run=dry_run
                )
        except WebhookResolutionRefused as refusal:
            raise CommandError(refusal.detail) from refusal
        if options["json"]:
            document = {
                "dry_run": dry_run,
                "resolved": [str(pk) for pk in result.resolved],
                "skipped": {str(pk): status for pk, status in result.skipped.items()},
            }
            self.stdout.write(json.dumps(document))
            return
        lines = ["Dry run: nothing was written."] if dry_run else []
        resolved, left = len(result.resolved), len(result.skipped)
        noun = "event" if resolved == 1 else "events"
        if not resolved:
            lines.append(f"{'Would resolve' if dry_run else 'Resolved'} nothing: none of the events named is failed.")
        elif dry_run:
            lines.append(f"Would resolve {resolved} failed webhook {noun}:")
        else:
            lines.append(f"Resolved {resolved} failed webhook {noun}, with the note: {note}")
        lines += [f"  {event_name(events[pk])}" for pk in result.resolved]
        if left:
            verb = "Would leave" if dry_run else "Left"
            lines.append(
                f"{verb} {left} {'event' if left == 1 else 'events'} that {'is' if left == 1 else 'are'} not failed:"
            )
            lines += [f"  {event_name(events[pk])} ({status})" for pk, status in result.skipped.items()]
        self.stdout.write("\n".join(lines))
