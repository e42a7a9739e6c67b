"""`manage.py ledger_drain`: move degraded-mode buffered debits into the ledger at a set rate.

Duplicates (same account and idempotency key, buffered twice or already in the ledger) are
removed by the ledger's key guard. `--follow` keeps draining until interrupted.
"""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.ledger.services import DrainResult, ledger_buffer_drain


class Command(BaseCommand):
    help = "Drain the ledger's degraded-mode buffer into the ledger (rate-limited)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rate", type=float, default=None, help="events per second (default LEDGER_DRAIN_RATE)")
        parser.add_argument("--batch", type=int, default=None, help="events per transaction")
        parser.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
        parser.add_argument("--follow", action="store_true", help="keep draining until SIGTERM/SIGINT")
        parser.add_argument("--idle-seconds", type=float, default=1.0, help="wait when empty (with --follow)")

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        total = DrainResult()
        while not stop.is_set():
            one = ledger_buffer_drain(rate=options["rate"], batch=options["batch"], max_seconds=options["max_seconds"])
            total.read += one.read
            total.created += one.created
            total.duplicates += one.duplicates
            total.batches += one.batches
            if not options["follow"]:
                break
            if one.read == 0:
                stop.wait(options["idle_seconds"])
        self.stdout.write(json.dumps({"read": total.read, "created": total.created, "duplicates": total.duplicates}))
