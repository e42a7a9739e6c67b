"""`manage.py outbox_relay`: relay outbox messages to Celery until SIGTERM/SIGINT.

Safe to run several at once (SKIP LOCKED claims). `--once` relays what is due and exits.
"""

from __future__ import annotations

import json
import signal
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.outbox.relay import OutboxRelay


class Command(BaseCommand):
    help = "Relay pending outbox messages to Celery (LISTEN/NOTIFY with a polling fallback)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="relay every due message, then exit")
        parser.add_argument("--batch-size", type=int, default=None, help="messages per claim (OUTBOX_BATCH_SIZE)")
        parser.add_argument("--poll-interval", type=float, default=None, help="seconds between polls without NOTIFY")
        parser.add_argument(
            "--log-interval", type=float, default=10.0, help="seconds between progress lines (none while idle)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from config.celery_app import app

        # Consumers register their topics when their task modules are imported.
        app.loader.import_default_modules()
        relay = OutboxRelay(
            batch_size=options["batch_size"],
            poll_interval=options["poll_interval"],
            log_interval=options["log_interval"],
            app=app,
        )

        def _graceful(signum: int, frame: FrameType | None) -> None:
            relay.stop()

        previous = {sig: signal.signal(sig, _graceful) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            totals = relay.run(once=options["once"])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if options["once"]:
            self.stdout.write(json.dumps(totals.as_dict()))
