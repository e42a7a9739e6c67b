"""`manage.py run_projector`: apply ledger events to balances, one leader per partition.

Run any number of these (Procfile `projector`); each leads a fair share of the logical
partitions through session advisory locks and takes over partitions whose leader died.
SIGTERM/SIGINT finish the current batch, release the locks and exit.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.ledger.projection import Projector

logger = logging.getLogger("darkroom.ledger.projector")


class Command(BaseCommand):
    help = "Run a ledger projector process (leader election per partition, fenced batch apply)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=None, help="events per apply transaction")
        parser.add_argument("--poll-seconds", type=float, default=None, help="idle wait between passes")
        parser.add_argument("--max-partitions", type=int, default=None, help="lead at most this many partitions")
        parser.add_argument("--name", default=None, help="leader name shown in checkpoints and metrics")

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()

        def _stop(signum: int, _frame: Any) -> None:
            logger.info("projector stopping (signal %s)", signum)
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        projector = Projector(
            name=options["name"],
            batch_size=options["batch_size"],
            poll_seconds=options["poll_seconds"],
            max_partitions=options["max_partitions"],
        )
        logger.info("projector %s starting", projector.name)
        projector.run(stop=stop)
        logger.info("projector %s stopped after applying %d events", projector.name, projector.applied_total)
