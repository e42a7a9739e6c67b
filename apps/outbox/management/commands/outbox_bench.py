"""`manage.py outbox_bench [--rate 1000 --duration 20 | --smoke]`: commit → task start latency.

Starts its own relay and Celery worker subprocesses against the configured database and Redis,
prints p50/p99/max and offered vs achieved rate, writes JSON (default
bench-results/outbox.json) and exits 1 when the target (p99 ≤ 250 ms, every message delivered,
≥ 95 % of the offered rate achieved) is missed. Refuses to run (exit 1, nothing started) when
more than --max-backlog outbox messages are already pending: its relay would publish those too.
See apps/outbox/bench.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from apps.outbox.bench import BacklogError, BenchConfig, run_bench, write_result


class Command(BaseCommand):
    help = "Benchmark the outbox: commit → Celery task start latency at a target message rate."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rate", type=float, default=1000.0, help="messages per second offered")
        parser.add_argument("--duration", type=float, default=20.0, help="seconds of production")
        parser.add_argument("--producers", type=int, default=4, help="producer processes (one commit per message)")
        parser.add_argument("--concurrency", type=int, default=4, help="worker child processes")
        parser.add_argument(
            "--prefetch-multiplier", type=int, default=None, help="worker prefetch multiplier (default: settings)"
        )
        parser.add_argument("--pool", default="prefork", choices=["prefork", "solo", "threads"], help="worker pool")
        parser.add_argument("--workers", type=int, default=1, help="worker processes")
        parser.add_argument("--batch-size", type=int, default=None, help="relay claim batch (OUTBOX_BATCH_SIZE)")
        parser.add_argument(
            "--max-backlog",
            type=int,
            default=1000,
            help="refuse to run when more outbox messages than this are already pending",
        )
        parser.add_argument(
            "--smoke",
            action="store_true",
            help="short profile (50 msg/s for 4 s): checks the path end to end, not the target rate",
        )
        parser.add_argument(
            "--json-out",
            default=str(Path(settings.BASE_DIR) / "bench-results" / "outbox.json"),
            help="where to write the JSON result",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        smoke = options["smoke"]
        config = BenchConfig(
            rate=50.0 if smoke else options["rate"],
            duration=4.0 if smoke else options["duration"],
            producers=2 if smoke else options["producers"],
            worker_concurrency=2 if smoke else options["concurrency"],
            batch_size=options["batch_size"] or int(settings.OUTBOX_BATCH_SIZE),
            prefetch_multiplier=options["prefetch_multiplier"] or int(settings.CELERY_WORKER_PREFETCH_MULTIPLIER),
            pool=options["pool"],
            workers=options["workers"],
            profile="smoke" if smoke else "full",
            drain_timeout=30.0 if smoke else 60.0,
            max_backlog=options["max_backlog"],
        )
        try:
            result = run_bench(config, log=self.stdout.write)
        except BacklogError as exc:
            # A refused run is a failed target, reported like one (`manage.py bench` goes on).
            summary = f"refused: {exc}"
            write_result({"pass": False, "summary": summary}, Path(options["json_out"]))
            self.stdout.write(self.style.ERROR(f"FAIL {summary}"))
            raise SystemExit(1) from exc
        write_result(result, Path(options["json_out"]))
        latency = result["results"]["latency_ms"]
        self.stdout.write(json.dumps(result["results"]))
        self.stdout.write(
            f"p50 {latency['p50']} ms  p99 {latency['p99']} ms  max {latency['max']} ms  "
            f"offered {config.rate:g}/s  achieved {result['results']['achieved_commit_rate_per_s']}/s"
        )
        self.stdout.write(("PASS " if result["pass"] else "FAIL ") + result["summary"])
        self.stdout.write(f"json: {options['json_out']}")
        if not result["pass"]:
            raise SystemExit(1)
