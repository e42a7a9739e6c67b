"""`make bench`: run every benchmark in one go and write one report that names the machine.

Each benchmark is its own management command that prints its figures, writes JSON under
bench-results/ and ends with PASS/FAIL against its targets. This command runs them in
sequence (never in parallel: they share the two cores), collects the JSON, and writes
bench-results/report.json and bench-results/report.md. Exit status 1 if any target failed.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import redis
from django.conf import settings
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand, CommandParser

from apps.ops.ratelimit import disable_for_benchmark
from apps.ops.vacuum import autovacuum_enabled

RESULTS = Path(settings.BASE_DIR) / "bench-results"

# (title, command, full-profile args, smoke-profile args); the command writes --json-out.
BENCHMARKS: list[tuple[str, str, list[str], list[str]]] = [
    ("outbox commit → task start", "outbox_bench", ["--rate", "1000", "--duration", "20"], ["--smoke"]),
    (
        "ledger projection lag: 1,000 debits/s sustained, then a 10 s burst at 10,000/s",
        "ledger_slo",
        ["--rate", "1000", "--duration", "30", "--burst-rate", "10000", "--burst-seconds", "10"],
        ["--smoke"],
    ),
    ("hot SKU: batched writer vs per-request row lock", "inventory_bench", [], ["--smoke"]),
    (
        "idempotent single write over HTTP: POST /api/v1/ledger/debits, wrk 32 connections",
        "http_write_bench",
        [],
        ["--smoke"],
    ),
    (
        "announcement fan-out: 100,000 recipients, Postmark batch API",
        "announcement_bench",
        ["--mailer", "postmark"],
        ["--smoke", "--mailer", "postmark"],
    ),
    (
        "announcement fan-out: 100,000 recipients, one SMTP message at a time",
        "announcement_bench",
        ["--mailer", "smtp"],
        ["--smoke", "--mailer", "smtp"],
    ),
]


def verdict_of(result: dict[str, Any]) -> tuple[bool, str]:
    """(passed, one-line summary) from a benchmark's JSON, whichever convention it uses."""
    if "pass" in result:
        return bool(result["pass"]), str(result.get("summary", ""))
    passed = result.get("verdict") == "PASS"
    lag = result.get("lag", {})
    parts = [
        f"{phase}: lag p50 {v.get('p50')} s, p99 {v.get('p99')} s, max {v.get('max')} s"
        for phase, v in lag.items()
        if isinstance(v, dict)
    ]
    rates = [
        f"{p['name']} {p.get('achieved_rate')}/{p.get('offered_rate')} per s"
        for p in result.get("phases", [])
        if p.get("name") in {"sustained", "burst"}
    ]
    return passed, "; ".join(parts + rates)


def _where(url: str | None) -> str:
    """host:port/db of a Redis URL, without its credentials; "off" for none."""
    if not url:
        return "off"
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"


def stores_in_use() -> str:
    """The database and every Redis DB this process and the subprocesses it starts (which inherit
    its environment) use: `make bench` and `make loadtest` give them their own (Makefile BENCH_ENV)."""
    db = settings.DATABASES["default"]
    return (
        f"database {db['NAME']} on {db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432};"
        f" Redis: REDIS_URL {_where(settings.REDIS_URL)},"
        f" cache (locks, rate limits, counters) {_where(settings.CACHES['default']['LOCATION'])},"
        f" Celery broker {_where(settings.CELERY_BROKER_URL)}, results {_where(settings.CELERY_RESULT_BACKEND)}"
    )


def machine_facts() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    with psycopg.connect(settings.DATABASE_ADMIN_URL) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    redis_version = redis.Redis.from_url(settings.REDIS_URL).info("server")["redis_version"]
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model,
        "memory_gib": mem_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": pg_version,
        "redis": redis_version,
        "django_debug": bool(settings.DEBUG),
        "autovacuum": autovacuum_enabled(),
    }


class Command(BaseCommand):
    help = "Run all benchmarks (or --only NAME) and write bench-results/report.{json,md}."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--smoke", action="store_true", help="short profiles (CI smoke), not for figures")
        parser.add_argument("--only", action="append", default=[], help="command name(s) to run")
        parser.add_argument("--results-dir", default=str(RESULTS), help="where the JSON and the report go")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"running in: {stores_in_use()}")
        disable_for_benchmark()
        results = Path(options["results_dir"])
        results.mkdir(parents=True, exist_ok=True)
        available = get_commands()
        machine = machine_facts()
        self.stdout.write(f"machine: {json.dumps(machine)}")
        if settings.DEBUG:
            self.stdout.write(
                self.style.WARNING(
                    "DEBUG is on: every query is recorded, so figures are not representative"
                    " (`make bench` turns it off)"
                )
            )
        report: dict[str, Any] = {"machine": machine, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ"), "runs": []}
        failed = False
        for index, (title, command, full_args, smoke_args) in enumerate(BENCHMARKS):
            if options["only"] and command not in options["only"]:
                continue
            if command not in available:
                self.stdout.write(self.style.WARNING(f"== {title}: `{command}` is not part of this build; skipped"))
                report["runs"].append({"title": title, "command": command, "skipped": True})
                continue
            out = results / f"{index:02d}-{command}.json"
            argv = [*(smoke_args if options["smoke"] else full_args), "--json-out", str(out)]
            self.stdout.write(self.style.MIGRATE_HEADING(f"== {title}: manage.py {command} {' '.join(argv)}"))
            ok = True
            try:
                call_command(command, *argv, stdout=self.stdout, stderr=self.stderr)
            except SystemExit as exc:
                ok = exc.code in (0, None)
            result = json.loads(out.read_text()) if out.exists() else {}
            passed, summary = verdict_of(result) if result else (False, "no result written")
            passed = passed and ok
            failed |= not passed
            self.stdout.write(f"   {'PASS' if passed else 'FAIL'}: {summary}")
            report["runs"].append(
                {"title": title, "command": command, "args": argv, "pass": passed, "summary": summary, "result": result}
            )
        (results / "report.json").write_text(json.dumps(report, indent=2, default=str))
        lines = [f"# Benchmark report ({report['started']})", "", f"Machine: `{json.dumps(machine)}`", ""]
        for run in report["runs"]:
            status = "skipped" if run.get("skipped") else ("PASS" if run["pass"] else "FAIL")
            lines.append(f"- **{run['title']}** (`{run['command']}`): {status}")
            if run.get("summary"):
                lines.append(f"  - {run['summary']}")
        (results / "report.md").write_text("\n".join(lines) + "\n")
        self.stdout.write(f"report: {results / 'report.md'}")
        if failed:
            raise SystemExit(1)
