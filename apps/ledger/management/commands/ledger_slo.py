"""`manage.py ledger_slo`: measure projection lag under debit load against live projectors.

    manage.py ledger_slo                    # = --rate 1000 --duration 30 --burst-rate 10000 --burst-seconds 10
    manage.py ledger_slo --burst-seconds 0  # sustained load only
    manage.py ledger_slo --smoke            # ~15 s of load, for CI and quick checks

Debits go through `ledger_debits_append` (the service behind POST /api/v1/ledger/debits and
/debits/batch) from `--ingest-procs` forked processes, across many studios and one whale, to
`--projectors` real `run_projector` subprocesses. Lag is sampled every 100 ms. Prints the
figures with PASS/FAIL against the seed bounds (<= 5 s at 1,000/s sustained, <= 30 s during
and after a 10,000/s burst) and our targets (p99 <= 1 s sustained, max <= 5 s for a 10 s
burst), and writes them as JSON (default bench-results/ledger_slo.json). A phase counts as run
"at" its rate when the generators achieved at least 95% of the offered rate; otherwise its
checks FAIL whatever the lag. Exit status 1 on FAIL when `--strict` is given. Run it against a
development database (it creates studios; their events stay, as events do).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.ledger import slo


class Command(BaseCommand):
    help = "Projection-lag SLO harness: debit load through the ingest service, live projectors, lag p50/p99/max."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rate", type=float, default=1000.0, help="sustained debits per second")
        parser.add_argument("--duration", type=float, default=30.0, help="seconds of sustained load")
        parser.add_argument("--burst-rate", type=float, default=10000.0, help="debits per second during the burst")
        parser.add_argument("--burst-seconds", type=float, default=10.0, help="length of the burst (0: no burst)")
        parser.add_argument("--recovery-seconds", type=float, default=15.0, help="sustained load after the burst")
        parser.add_argument("--warmup-seconds", type=float, default=2.0, help="unmeasured load before sustained")
        parser.add_argument("--projectors", type=int, default=2, help="run_projector subprocesses")
        parser.add_argument("--ingest-procs", type=int, default=2, help="generator processes")
        parser.add_argument("--tenants", type=int, default=20, help="studios besides the whale")
        parser.add_argument(
            "--tick-seconds", type=float, default=0.25, help="each generator posts what fell due every tick, per studio"
        )
        parser.add_argument("--json-out", default=None, help="report path (default bench-results/ledger_slo.json)")
        parser.add_argument("--smoke", action="store_true", help="short profile: 300/s for 5 s, 3,000/s burst for 3 s")
        parser.add_argument("--strict", action="store_true", help="exit with status 1 when the verdict is FAIL")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["smoke"]:
            profile = slo.Profile(
                rate=300,
                duration=5,
                burst_rate=3000,
                burst_seconds=3,
                warmup_seconds=1,
                recovery_seconds=4,
                projectors=options["projectors"],
                ingest_processes=options["ingest_procs"],
                tenants=min(options["tenants"], 10),
                name="smoke",
            )
        else:
            if options["rate"] <= 0 or options["duration"] <= 0:
                raise CommandError("--rate and --duration must be positive")
            profile = slo.Profile(
                rate=options["rate"],
                duration=options["duration"],
                burst_rate=options["burst_rate"],
                burst_seconds=options["burst_seconds"],
                warmup_seconds=options["warmup_seconds"],
                recovery_seconds=options["recovery_seconds"],
                projectors=options["projectors"],
                ingest_processes=options["ingest_procs"],
                tenants=options["tenants"],
                tick_seconds=options["tick_seconds"],
            )
        json_out = Path(options["json_out"] or Path(settings.BASE_DIR) / "bench-results" / "ledger_slo.json")
        report = slo.run(profile, json_out=json_out, log=lambda line: self.stdout.write(line))
        self.stdout.write(slo.render(report))
        self.stdout.write(f"report: {json_out}")
        if options["strict"] and report.verdict != "PASS":
            raise CommandError("ledger SLO verdict: FAIL")
