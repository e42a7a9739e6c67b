"""`manage.py http_write_bench [--smoke] [--duration S] [--json-out PATH]`: the idempotent single
write over HTTP, `POST /api/v1/ledger/debits` under wrk (32 connections, 2 threads), against a
gunicorn on a free loopback port (see `apps.ledger.http_bench`). Prints progress and the figures,
writes JSON (`pass`, `summary`, figures and the books; default bench-results/http_write.json),
exits 1 when the target (>= 1,000 req/s with p99 <= 50 ms, every 2xx one debit) is missed.
Needs Debian's wrk (`make wrk`)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from apps.ledger import http_bench
from apps.ops.ratelimit import disable_for_benchmark
from apps.ops.webserver import WEB_THREADS, WEB_WORKERS
from apps.outbox.bench import write_result

logger = logging.getLogger("darkroom.ledger.http_bench")


class Command(BaseCommand):
    help = "Idempotent single write over HTTP: POST /api/v1/ledger/debits under wrk, req/s and p99."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--smoke", action="store_true", help="short profile (CI smoke), not for figures")
        parser.add_argument("--duration", type=int, default=20, help="seconds of the measured run")
        parser.add_argument("--warmup-seconds", type=int, default=2, help="seconds of the unmeasured run before it")
        parser.add_argument("--connections", type=int, default=http_bench.CONNECTIONS, help="wrk connections")
        parser.add_argument("--wrk-threads", type=int, default=http_bench.WRK_THREADS, help="wrk threads")
        parser.add_argument("--web-workers", type=int, default=WEB_WORKERS, help="gunicorn worker processes")
        parser.add_argument("--web-threads", type=int, default=WEB_THREADS, help="gunicorn threads per worker")
        parser.add_argument("--wrk", default=http_bench.WRK, help="the wrk executable")
        parser.add_argument("--json-out", default=str(Path(settings.BASE_DIR) / "bench-results" / "http_write.json"))

    def handle(self, *args: Any, **options: Any) -> None:
        disable_for_benchmark()
        profile = http_bench.Profile(
            seconds=options["duration"],
            warmup_seconds=options["warmup_seconds"],
            connections=options["connections"],
            wrk_threads=options["wrk_threads"],
            web_workers=options["web_workers"],
            web_threads=options["web_threads"],
            wrk=options["wrk"],
        )
        if options["smoke"]:
            profile = replace(profile, seconds=http_bench.SMOKE_SECONDS, warmup_seconds=http_bench.SMOKE_WARMUP_SECONDS)
        out = Path(options["json_out"])
        try:
            result = http_bench.run_bench(profile=profile, log=self.stdout.write)
        except http_bench.WrkMissing as exc:
            write_result({"pass": False, "summary": f"refused: {exc}"}, out)
            self.stderr.write(self.style.ERROR(f"FAIL refused: {exc}"))
            raise SystemExit(1) from exc
        except Exception as exc:
            # A broken run is a failed target, reported like one (`manage.py bench` goes on).
            logger.exception("http write bench failed")
            summary = f"http_write_bench failed: {type(exc).__name__}: {exc}"[:500]
            write_result({"pass": False, "summary": summary}, out)
            self.stdout.write(self.style.ERROR(summary))
            raise SystemExit(1) from exc
        for line in http_bench.render(result):
            self.stdout.write(line)
        write_result(result, out)
        self.stdout.write(f"json: {out}")
        if not result["pass"]:
            raise SystemExit(1)
