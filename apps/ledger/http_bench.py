"""Idempotent single write over HTTP under wrk, behind `manage.py http_write_bench`.

DESIGN target on the 2-core box: `POST /api/v1/ledger/debits` from wrk with 32 connections
answers >= 1,000 requests/s with p99 <= 50 ms (seed bound: warn when p99 > 100 ms). Every request
is a new debit: its own Idempotency-Key, so the server runs the whole protocol (advisory lock,
key lookup, debit append, key row) and commits once per request.

What it does, in order:
1. a fresh bench studio (`bench-http-write-<tag>`), an API key and one EUR usage account,
   through the ordinary services (one studio: one logical ledger partition, as one integrator
   posting single debits gets);
2. VACUUM (ANALYZE) of the partition-head table, the one row every debit updates (this box runs
   with autovacuum off, and earlier runs leave its dead versions behind);
3. a gunicorn as `inventory_bench` starts it (`apps.ops.webserver`: free loopback port, DEBUG
   off, rate limits off, 2 workers x 8 threads by default);
4. wrk (Debian's, /usr/bin/wrk) with `WRK_SCRIPT`: each request carries the key
   `<run prefix><wrk thread>-<n>` and the same valid JSON body; the script counts each thread's
   requests, and its `done()` prints one JSON line (wrk's own counts, latency percentiles).
   No `response()` callback: defining one makes wrk parse every response's headers and body in
   Lua, which costs the client throughput; a non-2xx answer shows in wrk's `errors.status`
   (status > 399) instead. First a short warm-up run, then the measured run, with CPU per
   process group (web, postgres, wrk, redis) over its steady middle;
5. once the server is quiet and stopped, the books of each run in PostgreSQL.

The books. When its clock runs out wrk stops its threads, abandoning the requests then in
flight (at most one per connection): sent, but neither answered nor counted. The server usually
completes them all the same. So a run is correct when: no non-2xx answer and no socket error;
every debit of the run has its Idempotency-Key row (status 201) and its ledger key row, and no
key is debited twice; every debit's key is one wrk sent; and 2xx answers <= debits <= requests
sent, that is, every 2xx answer is one debit and the only other debits are requests wrk left in
flight. The studio has no debit outside the runs.

The bench's debits stay in the ledger (it is append-only); a projector started later
(`make run`, `ledger_slo`) applies them like any others.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apps.idempotency.models import IdempotencyKey
from apps.ledger.models import LedgerEvent, LedgerEventKey
from apps.ledger.services import ledger_account_create
from apps.ops.cpu import CpuWindow, per_unit_ms
from apps.ops.vacuum import vacuum_analyze
from apps.ops.webserver import WEB_THREADS, WEB_WORKERS, gunicorn, web_env
from apps.tenancy.context import tenant_context
from apps.tenancy.services import api_key_issue, organization_create

TARGET_REQUESTS_PER_SECOND = 1000.0
TARGET_P99_MS = 50.0
SEED_P99_WARN_MS = 100.0
PATH = "/api/v1/ledger/debits"
WRK = "/usr/bin/wrk"
CONNECTIONS = 32
WRK_THREADS = 2
# A request slower than this is a socket timeout for wrk (and lost from its latency figures).
WRK_TIMEOUT_SECONDS = 30
CHURNED_TABLES = ("ledger_ledgerpartitionhead",)
# wrk calls the first thread's request() once before the run, to check the request it builds
# (`script_verify_request` in wrk.c): that key, thread 1's first, is counted but never sent.
WRK_VERIFY_CALLS = 1
RESULT_MARK = "DARKROOM_WRK_RESULT "
API_KEY_ENV = "DARKROOM_WRK_API_KEY"
# The server is taken to be done with what wrk left in flight once the run's debit count holds
# still this long.
SETTLE_QUIET_SECONDS = 1.0
SETTLE_TIMEOUT_SECONDS = 30.0

WRK_SCRIPT = r"""
-- Darkroom http_write_bench: POST one debit per request, each with its own Idempotency-Key
-- "<prefix><thread>-<n>", n counting the thread's request() calls. Arguments (after "--"): key
-- prefix, account id. API key: env var.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  prefix = args[1]
  built = 0
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("DARKROOM_WRK_API_KEY")
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = string.format(
    '{"account_id": %d, "amount_minor": 1, "currency": "EUR", "reference": "http write bench"}',
    tonumber(args[2])
  )
end

function request()
  built = built + 1
  wrk.headers["Idempotency-Key"] = prefix .. id .. "-" .. built
  return wrk.format()
end

function done(summary, latency, requests)
  local per_thread = {}
  for i, thread in ipairs(threads) do
    per_thread[i] = string.format("%d", thread:get("built"))
  end
  local e = summary.errors
  io.write("DARKROOM_WRK_RESULT ", string.format(
    '{"duration_us": %d, "requests": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}, '
      .. '"built_per_thread": [%s]}',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    table.concat(per_thread, ", ")
  ), "\n")
end
"""


class WrkMissing(RuntimeError):
    """wrk is not installed where the bench looks for it."""


@dataclass(frozen=True)
class Profile:
    seconds: int = 20
    warmup_seconds: int = 2
    connections: int = CONNECTIONS
    wrk_threads: int = WRK_THREADS
    web_workers: int = WEB_WORKERS
    web_threads: int = WEB_THREADS
    wrk: str = WRK


# --smoke: long enough to exercise the whole path, too short for figures.
SMOKE_SECONDS, SMOKE_WARMUP_SECONDS = 5, 1


@dataclass(frozen=True)
class BenchStudio:
    tenant_id: int
    account_id: int
    api_key: str


def make_bench_studio() -> BenchStudio:
    """A fresh studio with an API key (the debit endpoint takes owner or API-key callers) and
    one EUR usage account to debit."""
    tag = uuid.uuid4().hex[:10]
    org = organization_create(slug=f"bench-http-write-{tag}", name=f"HTTP write bench {tag}")
    key = api_key_issue(tenant=org, name="http write bench")
    with tenant_context(org.pk):
        account = ledger_account_create(tenant=org, kind="usage", currency="EUR", client_id=f"bench-{tag}")
    return BenchStudio(tenant_id=org.pk, account_id=account.pk, api_key=key.raw_key)


# --- wrk ------------------------------------------------------------------------------------


def check_wrk(path: str) -> None:
    if not os.access(path, os.X_OK):
        raise WrkMissing(f"wrk is not installed ({path} not found): run `make wrk` or `apt-get install wrk`")


def parse_wrk_output(stdout: str) -> dict[str, Any]:
    """The `done()` line of `WRK_SCRIPT`, with the figures the report uses added."""
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_MARK)]
    if not lines:
        raise RuntimeError(f"wrk printed no result line; its output: {stdout[-2000:]}")
    raw = json.loads(lines[-1][len(RESULT_MARK) :])
    errors = raw["errors"]
    seconds = raw["duration_us"] / 1e6
    sent = sum(raw["built_per_thread"]) - WRK_VERIFY_CALLS
    return {
        "requests": raw["requests"],
        "requests_per_second": round(raw["requests"] / seconds, 1) if seconds else 0.0,
        "duration_seconds": round(seconds, 3),
        # wrk counts a status > 399 as an error; nothing here answers 1xx or 3xx.
        "responses_2xx": raw["requests"] - errors["status"],
        "non_2xx": errors["status"],
        "socket_errors": {name: errors[name] for name in ("connect", "read", "write", "timeout")},
        "requests_sent": sent,
        "unanswered_at_stop": sent - raw["requests"],
        "built_per_thread": raw["built_per_thread"],
        "latency_ms": {name: round(value / 1000, 3) for name, value in raw["latency_us"].items()},
    }


def run_wrk(
    *,
    profile: Profile,
    url: str,
    seconds: int,
    script: Path,
    key_prefix: str,
    studio: BenchStudio,
    cpu_roots: dict[int, str] | None = None,
) -> dict[str, Any]:
    """One wrk run of `seconds`. With `cpu_roots`, CPU per process group over its steady middle."""
    argv = [
        profile.wrk,
        *f"--threads {profile.wrk_threads} --connections {profile.connections}".split(),
        *f"--duration {seconds}s --timeout {WRK_TIMEOUT_SECONDS}s".split(),
        *["--script", str(script), f"{url}{PATH}", "--", key_prefix, str(studio.account_id)],
    ]
    wrk = subprocess.Popen(  # noqa: S603 - Debian's wrk, fixed arguments, loopback only
        argv, env={**os.environ, API_KEY_ENV: studio.api_key}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    cpu = cpu_thread = None
    if cpu_roots is not None:
        # The steady middle: after the connections are up, before wrk winds down.
        cpu = CpuWindow(roots={**cpu_roots, wrk.pid: "wrk"})
        now = time.time()
        margin = min(2.0, seconds / 4)
        cpu_thread = cpu.during(now + margin, now + seconds - margin / 2)
    try:
        stdout, stderr = wrk.communicate(timeout=seconds + WRK_TIMEOUT_SECONDS + 30)
    except subprocess.TimeoutExpired:
        wrk.kill()
        wrk.communicate()
        raise
    if wrk.returncode != 0:
        raise RuntimeError(f"wrk exited with {wrk.returncode}: {stderr.decode(errors='replace')[-2000:]}")
    result = parse_wrk_output(stdout.decode(errors="replace"))
    result["key_prefix"] = key_prefix
    if cpu is not None and cpu_thread is not None:
        cpu_thread.join(timeout=10)
        window = cpu.result.get("window_seconds") or 0.0
        result["cpu"] = {
            **cpu.result,
            "ms_per_request": per_unit_ms(cpu.result, result["requests_per_second"] * window),
        }
    return result


# --- the books ------------------------------------------------------------------------------


def _run_debit_count(studio: BenchStudio, key_prefix: str) -> int:
    with tenant_context(studio.tenant_id):
        return LedgerEvent.objects.filter(
            tenant_id=studio.tenant_id, account_id=studio.account_id, idempotency_key__startswith=key_prefix
        ).count()


def wait_until_settled(studio: BenchStudio, key_prefix: str) -> dict[str, Any]:
    """Wait until the server has finished the requests wrk left in flight: the run's debit
    count holds still for SETTLE_QUIET_SECONDS (gunicorn's graceful stop then finishes any it is
    still serving)."""
    started = time.monotonic()
    last, quiet_since = _run_debit_count(studio, key_prefix), time.monotonic()
    while time.monotonic() - started < SETTLE_TIMEOUT_SECONDS:
        time.sleep(0.2)
        now_count = _run_debit_count(studio, key_prefix)
        if now_count != last:
            last, quiet_since = now_count, time.monotonic()
        elif time.monotonic() - quiet_since >= SETTLE_QUIET_SECONDS:
            return {"settled": True, "seconds": round(time.monotonic() - started, 2)}
    return {"settled": False, "seconds": round(time.monotonic() - started, 2)}


def studio_books(studio: BenchStudio, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each run's debits against what wrk sent and answered (see the module docstring), from
    the ledger, its key guard and the Idempotency-Key store of the bench studio."""
    with tenant_context(studio.tenant_id):
        events = list(LedgerEvent.objects.filter(tenant_id=studio.tenant_id).values_list("id", "idempotency_key"))
        event_keys = dict(
            LedgerEventKey.objects.filter(tenant_id=studio.tenant_id).values_list("idempotency_key", "event_id")
        )
        request_keys = list(
            IdempotencyKey.objects.filter(tenant_id=studio.tenant_id).values_list("key", "response_status")
        )
    books: dict[str, Any] = {}
    counted = 0
    for name, run in runs.items():
        prefix = run["key_prefix"]
        debits = [(event_id, key) for event_id, key in events if key.startswith(prefix)]
        keys = {key for _, key in debits}
        statuses: dict[str, int] = {}
        for key, status in request_keys:
            if key.startswith(prefix):
                statuses[str(status)] = statuses.get(str(status), 0) + 1
        stored_201 = {key for key, status in request_keys if key.startswith(prefix) and status == 201}
        sent = {
            f"{prefix}{thread}-{n}"
            for thread, count in enumerate(run["built_per_thread"], start=1)
            for n in range(1 + (WRK_VERIFY_CALLS if thread == 1 else 0), count + 1)
        }
        socket_errors = sum(run["socket_errors"].values())
        facts: dict[str, Any] = {
            "requests_sent": run["requests_sent"],
            "responses_2xx": run["responses_2xx"],
            "non_2xx": run["non_2xx"],
            "socket_errors": socket_errors,
            "unanswered_at_stop": run["unanswered_at_stop"],
            "debits": len(debits),
            "idempotency_keys": sum(statuses.values()),
            "idempotency_key_statuses": statuses,
            "ledger_event_keys": sum(1 for key in event_keys if key.startswith(prefix)),
            "duplicate_debits": len(debits) - len(keys),
            "debits_without_key_rows": sum(
                1 for event_id, key in debits if event_keys.get(key) != event_id or key not in stored_201
            ),
            "unexpected_keys": len(keys - sent),
            "sent_without_debit": len(sent - keys),
            "debits_beyond_2xx": len(debits) - run["responses_2xx"],
        }
        facts["ok"] = (
            facts["non_2xx"] == 0
            and socket_errors == 0
            and facts["duplicate_debits"] == 0
            and facts["debits_without_key_rows"] == 0
            and facts["idempotency_keys"] == facts["ledger_event_keys"] == len(debits)
            and facts["unexpected_keys"] == 0
            and run["responses_2xx"] <= len(debits) <= run["requests_sent"]
        )
        books[name] = facts
        counted += len(debits)
    books["studio_debits"] = len(events)
    books["debits_outside_runs"] = len(events) - counted
    books["ok"] = books["debits_outside_runs"] == 0 and all(books[name]["ok"] for name in runs)
    return books


# --- the run --------------------------------------------------------------------------------


def run_bench(*, profile: Profile, log: Callable[[str], None]) -> dict[str, Any]:
    """Set up, warm up, measure, check the books; return the result (see the module docstring).
    Raises WrkMissing before touching anything when wrk is not installed."""
    check_wrk(profile.wrk)
    load_before = os.getloadavg()
    studio = make_bench_studio()
    log(f"bench studio {studio.tenant_id}, usage account {studio.account_id}; load {load_before}")
    vacuum_analyze(CHURNED_TABLES, log=log)
    tag = uuid.uuid4().hex[:8]
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "debit.lua"
        script.write_text(WRK_SCRIPT)
        with gunicorn(env=web_env(), workers=profile.web_workers, threads=profile.web_threads) as web:
            log(f"gunicorn at {web.url} ({profile.web_workers} workers x {profile.web_threads} threads)")
            shape = f"wrk {profile.connections} connections, {profile.wrk_threads} threads"
            if profile.warmup_seconds > 0:
                log(f"warm-up: {shape}, {profile.warmup_seconds} s")
                runs["warmup"] = run_wrk(
                    profile=profile,
                    url=web.url,
                    seconds=profile.warmup_seconds,
                    script=script,
                    key_prefix=f"hwb-{tag}-warmup-",
                    studio=studio,
                )
                log(f"warm-up: {_line(runs['warmup'])}")
            log(f"measuring: {shape}, {profile.seconds} s, POST {PATH}")
            runs["measured"] = measured = run_wrk(
                profile=profile,
                url=web.url,
                seconds=profile.seconds,
                script=script,
                key_prefix=f"hwb-{tag}-measured-",
                studio=studio,
                cpu_roots={web.process.pid: "web", os.getpid(): "bench"},
            )
            log(f"measured: {_line(measured)}")
            settle = wait_until_settled(studio, measured["key_prefix"])
            log(f"server quiet after {settle['seconds']} s; stopping gunicorn")
    books = studio_books(studio, runs)
    log(f"books: {_books_line(books['measured'])}")
    return evaluate(
        profile=profile, runs=runs, books=books, settle=settle, load=(load_before, os.getloadavg()), studio=studio
    )


def _line(run: dict[str, Any]) -> str:
    latency = run["latency_ms"]
    return (
        f"{run['requests']:,} requests, {run['requests_per_second']:,.0f} req/s, "
        f"p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms, non-2xx {run['non_2xx']}, "
        f"socket errors {sum(run['socket_errors'].values())}"
    )


def _books_line(facts: dict[str, Any]) -> str:
    return (
        f"{facts['debits']:,} debits = {facts['responses_2xx']:,} 2xx answers + {facts['debits_beyond_2xx']} of the "
        f"{facts['unanswered_at_stop']} requests wrk left in flight; idempotency keys {facts['idempotency_keys']:,}, "
        f"ledger keys {facts['ledger_event_keys']:,}, duplicates {facts['duplicate_debits']}, "
        f"non-2xx {facts['non_2xx']}, socket errors {facts['socket_errors']}"
    )


def evaluate(
    *,
    profile: Profile,
    runs: dict[str, dict[str, Any]],
    books: dict[str, Any],
    settle: dict[str, Any],
    load: tuple[Any, Any],
    studio: BenchStudio,
) -> dict[str, Any]:
    measured = runs["measured"]
    rate, p50, p99 = measured["requests_per_second"], measured["latency_ms"]["p50"], measured["latency_ms"]["p99"]
    targets = {
        "throughput": {
            "target": f">= {TARGET_REQUESTS_PER_SECOND:,.0f} req/s",
            "value": rate,
            "pass": rate >= TARGET_REQUESTS_PER_SECOND,
        },
        "p99_ms": {"target": f"<= {TARGET_P99_MS:.0f} ms", "value": p99, "pass": p99 <= TARGET_P99_MS},
        "correct": {
            "target": "every 2xx one debit with its key rows; no non-2xx, no socket error",
            "value": books["ok"],
            "pass": bool(books["ok"]),
        },
    }
    passed = all(target["pass"] for target in targets.values())
    summary = (
        f"{rate:,.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms "
        f"(target >= {TARGET_REQUESTS_PER_SECOND:,.0f} req/s with p99 <= {TARGET_P99_MS:.0f} ms; "
        f"wrk {profile.connections} connections, {profile.seconds} s); "
        f"{books['measured']['debits']:,} debits, "
        f"{'every 2xx one debit' if books['ok'] else 'BOOKS WRONG'}"
    )
    return {
        "pass": passed,
        "summary": summary,
        "targets": targets,
        "seed_bound": {"p99_warn_ms": SEED_P99_WARN_MS, "warn": p99 > SEED_P99_WARN_MS},
        "measured": measured,
        "warmup": runs.get("warmup"),
        "cpu": measured.get("cpu", {}),
        "correctness": books,
        "settle": settle,
        "profile": {
            "seconds": profile.seconds,
            "warmup_seconds": profile.warmup_seconds,
            "connections": profile.connections,
            "wrk_threads": profile.wrk_threads,
            "web_workers": profile.web_workers,
            "web_threads": profile.web_threads,
            "endpoint": f"POST {PATH}",
        },
        "studio": {"tenant_id": studio.tenant_id, "account_id": studio.account_id},
        "machine": {"cores": os.cpu_count(), "loadavg_before": load[0], "loadavg_after": load[1]},
    }


def render(result: dict[str, Any]) -> list[str]:
    """The readable report: one row per run, CPU per request, the books, PASS/FAIL per target."""
    profile = result["profile"]
    lines = [
        "",
        f"{profile['endpoint']}: wrk {profile['connections']} connections x {profile['wrk_threads']} threads, "
        f"gunicorn {profile['web_workers']} workers x {profile['web_threads']} threads",
        f"{'run':<10} {'seconds':>7} {'requests':>9} {'req/s':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'non-2xx':>8} {'sock err':>9}",
    ]
    for name in ("warmup", "measured"):
        run = result.get(name)
        if not run:
            continue
        latency = run["latency_ms"]
        lines.append(
            f"{name:<10} {run['duration_seconds']:>7.1f} {run['requests']:>9} {run['requests_per_second']:>8.0f} "
            f"{latency['p50']:>7.1f} {latency['p90']:>7.1f} {latency['p99']:>7.1f} {latency['max']:>7.1f} "
            f"{run['non_2xx']:>8} {sum(run['socket_errors'].values()):>9}"
        )
    cpu = result.get("cpu", {})
    shares = ", ".join(f"{name} {value:.3f}" for name, value in cpu.get("ms_per_request", {}).items())
    lines.append(
        f"CPU ms per request, measured run's steady window ({cpu.get('busy_cores', '?')} cores busy): "
        f"{shares or cpu.get('unavailable', 'n/a')}"
    )
    books = result["correctness"]
    for name in ("warmup", "measured"):
        if name in books:
            lines.append(f"books, {name}: {_books_line(books[name])}")
    lines.append(f"studio debits {books['studio_debits']:,}, outside the runs {books['debits_outside_runs']}")
    if result["seed_bound"]["warn"]:
        lines.append(f"WARN p99 above the seed bound of {SEED_P99_WARN_MS:.0f} ms")
    for name, target in result["targets"].items():
        value = target["value"]
        shown = f"{value:,.1f}" if isinstance(value, float) else str(value)
        lines.append(f"{'PASS' if target['pass'] else 'FAIL'} {name}: {shown} (target {target['target']})")
    lines.append(result["summary"])
    return lines
