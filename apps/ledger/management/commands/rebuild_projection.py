"""`manage.py rebuild_projection`: recompute every balance from the events (and archived totals).

Safe while projectors run: the rebuild fences them out with new epochs for its duration and
they resume from the rebuilt checkpoints. Prints a JSON summary.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.ledger.projection import projection_rebuild


class Command(BaseCommand):
    help = "Replay all ledger events from zero into balances (deterministic)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=50_000)

    def handle(self, *args: Any, **options: Any) -> None:
        result = projection_rebuild(batch_size=options["batch_size"])
        self.stdout.write(json.dumps({"partitions": result.partitions, "events_replayed": result.events}))
