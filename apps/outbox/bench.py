"""Outbox benchmark: commit → consumer task start latency at a target message rate.

The whole real path runs: producer processes commit one `outbox_publish` per transaction (tenant
context, RLS, NOTIFY trigger) at a paced rate; a relay subprocess (`manage.py outbox_relay`)
claims and publishes to Redis; a Celery worker subprocess (prefork) runs `outbox.bench_probe`,
which records its start time in Redis first thing and then writes its inbox row like any
consumer. Latency = task start minus the moment the producer's COMMIT returned, per message (one
clock: everything runs on this machine). The probe topic has its own queue (`outbox.bench`),
consumed only by the bench's worker.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django_redis import get_redis_connection
from kombu import Queue

from apps.core.polling import wait_until
from apps.ops.cpu import CpuWindow, per_unit_ms
from apps.ops.vacuum import vacuum_analyze
from apps.outbox.models import InboxEntry, OutboxMessage
from apps.outbox.selectors import outbox_stats
from apps.outbox.services import outbox_publish
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import Organization
from apps.tenancy.services import organization_create

TARGET_P99_MS = 250.0
BENCH_TENANT_SLUG = "bench-outbox"


@dataclass(frozen=True)
class BenchConfig:
    rate: float
    duration: float
    producers: int
    worker_concurrency: int
    batch_size: int
    profile: str
    prefetch_multiplier: int = 1
    pool: str = "prefork"
    workers: int = 1
    drain_timeout: float = 60.0
    warmup_messages: int = 20
    max_backlog: int = 1000


class BacklogError(RuntimeError):
    """Too many outbox messages were pending before the run for its figures to mean anything."""


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[index]


def _bench_tenant_id() -> int:
    existing = Organization.objects.filter(slug=BENCH_TENANT_SLUG).first()
    if existing is not None:
        return existing.pk
    return organization_create(slug=BENCH_TENANT_SLUG, name="Outbox benchmark").pk


def _publish_one(tenant_id: int, key: str, seq: int) -> str:
    with transaction.atomic():
        message = outbox_publish(
            topic="outbox.bench",
            tenant_id=tenant_id,
            aggregate_type="bench",
            aggregate_id=seq,
            payload={"key": key, "seq": seq},
        )
    return str(message.id)


def _producer(
    index: int, producers: int, rate: float, duration: float, tenant_id: int, key: str, start_at: float, out: Any
) -> None:
    """Child process: publish messages index, index+producers, ... on the shared schedule
    (message n is due at start_at + n/rate); when behind, publish without sleeping."""
    commits: list[tuple[str, float]] = []
    errors = 0
    total = int(rate * duration)
    try:
        with tenant_context(tenant_id):
            for seq in range(index, total, producers):
                due = start_at + seq / rate
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                try:
                    message_id = _publish_one(tenant_id, key, seq)
                except Exception:  # noqa: BLE001 - counted and reported, the run goes on
                    errors += 1
                    continue
                commits.append((message_id, time.time()))
    finally:
        connections.close_all()
        out.put({"commits": commits, "errors": errors})


def spawn(argv: list[str], log_path: Path, **env: str) -> subprocess.Popen[bytes]:
    """Start this interpreter with fixed arguments (no shell, no outside input), with `env` added
    to this process's environment; output to `log_path`."""
    with log_path.open("wb") as log:
        return subprocess.Popen(  # noqa: S603 - argv is sys.executable plus literals
            argv, cwd=settings.BASE_DIR, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _starts(key: str) -> dict[str, float]:
    raw = get_redis_connection("default").lrange(key, 0, -1)
    starts: dict[str, float] = {}
    for item in raw:
        message_id, ts = item.decode().split()
        starts.setdefault(message_id, float(ts))  # a redelivery keeps the first start
    return starts


def _remove_bench_rows() -> dict[str, int]:
    """Delete this and earlier runs' probe rows: the published `outbox.bench` messages and the
    probe's inbox entries. Left in place, every run would start with bigger tables than the one
    before (the retention cleanups keep them for a day and a week)."""
    from tasks.outbox import BENCH_TASK, BENCH_TOPIC

    with system_context("outbox bench: remove probe rows"), transaction.atomic():
        messages, _ = OutboxMessage.objects.filter(topic=BENCH_TOPIC, status=OutboxMessage.Status.PUBLISHED).delete()
        inbox, _ = InboxEntry.objects.filter(consumer=BENCH_TASK).delete()
    return {"outbox_messages": messages, "inbox_entries": inbox}


def run_bench(config: BenchConfig, *, log: Callable[[str], None]) -> dict[str, Any]:
    """Run one benchmark and return its result dict (see the module docstring)."""
    from config.celery_app import app as celery_app
    from tasks.outbox import BENCH_QUEUE

    with system_context("outbox bench: backlog before the run"):
        backlog_before = outbox_stats().pending
    if backlog_before > config.max_backlog:
        raise BacklogError(
            f"{backlog_before} outbox messages are pending in database {settings.DATABASES['default']['NAME']}, "
            f"more than --max-backlog {config.max_backlog}: the bench's relay would publish them too and the "
            "figures would measure that backlog. Under `make bench`, whose database and Redis DBs only the "
            "benchmarks and load tests use, a stopped run left them: `make bench-reset` empties both. Elsewhere "
            "start a relay and a worker on this database to drain them, or raise --max-backlog."
        )
    if backlog_before:
        log(
            f"warning: {backlog_before} outbox messages were pending before the run; the bench's relay "
            "publishes them too, which skews the figures"
        )

    run_id = uuid.uuid4().hex[:12]
    redis = get_redis_connection("default")
    key = f"{settings.CACHES['default'].get('KEY_PREFIX', 'darkroom')}:outbox:bench:{run_id}"
    warm_key = f"{key}:warmup"
    tenant_id = _bench_tenant_id()
    with celery_app.connection_for_write() as conn:
        Queue(BENCH_QUEUE).bind(conn.default_channel).purge()
    vacuum_analyze(["outbox_outboxmessage", "outbox_inboxentry"], log=log)

    logdir = Path(tempfile.mkdtemp(prefix="outbox-bench-"))
    python = sys.executable
    workers: list[subprocess.Popen[bytes]] = []
    relay: subprocess.Popen[bytes] | None = None
    load_before = os.getloadavg()
    try:
        workers = [
            spawn(
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "config.celery_app",
                    "worker",
                    f"--pool={config.pool}",
                    f"--concurrency={config.worker_concurrency}",
                    f"--prefetch-multiplier={config.prefetch_multiplier}",
                    f"--queues={BENCH_QUEUE}",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "--loglevel=WARNING",
                    f"--hostname=outbox-bench-{run_id}-{n}@%h",
                ],
                logdir / f"worker-{n}.log",
            )
            for n in range(config.workers)
        ]
        relay = spawn(
            [python, "manage.py", "outbox_relay", f"--batch-size={config.batch_size}", "--log-interval=5"],
            logdir / "relay.log",
        )
        # Warm-up through the real path: proves relay and worker are up before measuring.
        with tenant_context(tenant_id):
            warm_ids = {_publish_one(tenant_id, warm_key, -i - 1) for i in range(config.warmup_messages)}
        if not wait_until(lambda: warm_ids <= set(_starts(warm_key)), timeout=90):
            raise RuntimeError(f"relay/worker did not start; logs in {logdir}")
        log(f"warm-up done; {config.rate:g} msg/s for {config.duration:g} s from {config.producers} producers")

        # Producers are forked processes (one GIL each); the parent's connections must not be shared.
        connections.close_all()
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        start_at = time.time() + 0.5
        children = [
            context.Process(
                target=_producer,
                args=(i, config.producers, config.rate, config.duration, tenant_id, key, start_at, queue),
            )
            for i in range(config.producers)
        ]
        for child in children:
            child.start()
        # Where the CPU goes while the producers run (the middle of the production window).
        margin = min(1.0, config.duration / 4)
        cpu = CpuWindow(
            roots={
                os.getpid(): "bench",
                relay.pid: "relay",
                **{w.pid: "worker" for w in workers},
                **{c.pid: "producers" for c in children if c.pid is not None},
            }
        )
        cpu_window = (start_at + margin, start_at + config.duration - margin)
        cpu_thread = cpu.during(*cpu_window)
        outcomes = [queue.get(timeout=config.duration + 600) for _ in children]
        cpu_thread.join(timeout=5)
        for child in children:
            child.join(timeout=30)
        produce_seconds = time.time() - start_at
        commits = dict(pair for outcome in outcomes for pair in outcome["commits"])
        errors = sum(outcome["errors"] for outcome in outcomes)
        log(f"committed {len(commits)} messages in {produce_seconds:.1f} s ({errors} errors); draining")
        wait_until(lambda: len(set(commits) & set(_starts(key))) >= len(commits), timeout=config.drain_timeout)
        starts = _starts(key)
    finally:
        stop(relay)
        for worker in workers:
            stop(worker)
    load_after = os.getloadavg()

    latencies = sorted((starts[m] - t) * 1000 for m, t in commits.items() if m in starts)
    delivered = len(latencies)
    missing = len(commits) - delivered
    commit_times = sorted(commits.values())
    start_times = sorted(starts[m] for m in commits if m in starts)
    achieved = len(commits) / max(commit_times[-1] - commit_times[0], 1e-9) if len(commit_times) > 1 else 0.0
    consumed = delivered / max(start_times[-1] - start_times[0], 1e-9) if len(start_times) > 1 else 0.0
    p50, p90, p99 = (_percentile(latencies, p) for p in (50, 90, 99))
    max_ms = latencies[-1] if latencies else float("nan")
    rate_ok = achieved >= 0.95 * config.rate
    passed = bool(latencies) and missing == 0 and errors == 0 and p99 <= TARGET_P99_MS and rate_ok
    expected = int(config.rate * config.duration)
    summary = (
        f"commit→task start p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max_ms:.1f} ms at "
        f"{achieved:.0f} msg/s committed ({config.rate:g} offered), tasks started at {consumed:.0f}/s; "
        f"{delivered}/{expected} delivered; "
        f"target p99 ≤ {TARGET_P99_MS:g} ms → {'PASS' if passed else 'FAIL'}"
    )
    in_window = sum(1 for t in commit_times if cpu_window[0] <= t <= cpu_window[1])
    started_in_window = sum(1 for t in start_times if cpu_window[0] <= t <= cpu_window[1])
    cpu_result = {
        **cpu.result,
        "messages_committed_in_window": in_window,
        "tasks_started_in_window": started_in_window,
        "ms_per_committed_message": per_unit_ms(cpu.result, in_window),
    }
    if "cpu_seconds" in cpu.result:
        shares = ", ".join(f"{k} {v:.2f}" for k, v in cpu_result["ms_per_committed_message"].items())
        log(f"CPU while producing: {cpu.result['busy_cores']} of {os.cpu_count()} cores busy; ms per message: {shares}")
    redis.delete(key, warm_key)
    removed = _remove_bench_rows()
    return {
        "benchmark": "outbox_commit_to_task_start",
        "profile": config.profile,
        "pass": passed,
        "summary": summary,
        "config": asdict(config),
        "target": {"p99_ms": TARGET_P99_MS, "rate_per_s": config.rate, "min_achieved_fraction": 0.95},
        "results": {
            "backlog_before": backlog_before,
            "bench_rows_removed": removed,
            "messages_offered": expected,
            "messages_committed": len(commits),
            "messages_delivered": delivered,
            "messages_missing": missing,
            "producer_errors": errors,
            "offered_rate_per_s": config.rate,
            "achieved_commit_rate_per_s": round(achieved, 1),
            "consumed_rate_per_s": round(consumed, 1),
            "cpu": cpu_result,
            "latency_ms": {
                "min": round(latencies[0], 2) if latencies else None,
                "p50": round(p50, 2),
                "p90": round(p90, 2),
                "p99": round(p99, 2),
                "max": round(max_ms, 2),
            },
        },
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after],
        },
        "logs": str(logdir),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_result(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
