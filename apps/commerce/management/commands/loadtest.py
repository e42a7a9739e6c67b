"""`manage.py loadtest checkout|webhooks|all`: Locust load tests of checkout and of a webhook storm.

Each scenario runs against a fresh studio (a `loadtest-*` tenant made through the services:
owner and two photographers, an event, a download price, photos uploaded with `photo_upload`,
one download product per photo) and its own stack of subprocesses: gunicorn on 127.0.0.1 (a free
port, DJANGO_DEBUG=0), `manage.py outbox_relay` and a Celery worker consuming every queue. Locust
runs headless for a bounded time; then everything is stopped, and the figures and checks are
printed and written as JSON (bench-results/loadtest_<scenario>.json). Exit status 1 if any
request failed or any check did not hold.

checkout (loadtests/checkout_locustfile.py): shoppers POST /api/v1/checkouts (1-3 download
    lines, sandbox), each with a fresh Idempotency-Key; ~10 % are retried with the same key and
    body and must replay the 201 (`Idempotent-Replayed: true`, same id); each checkout is then
    read back. Checks: the studio has exactly the checkouts Locust saw created (a retry never
    makes a second one), and every one gets its sandbox payment session from the relay and
    worker within --drain-timeout.
webhooks (loadtests/webhook_storm_locustfile.py): --checkouts checkouts are created through
    `checkout_create` and get their sandbox sessions through relay and worker; the sandbox
    provider settles each as paid, and Locust POSTs the signed `payment.paid` events to
    /webhooks/sandbox, 20 % of the deliveries being re-deliveries of event ids already answered.
    Checks, in the system context: exactly one WebhookEvent per event id sent (none for ids not
    sent); once relay and worker have drained (bounded wait), every event is processed and each
    paid checkout has its effects once: status paid, entitlements = lines, one wallet credit
    per line (net of the platform fee, summed), one receipt; unsent checkouts have none.

`make loadtest` runs it in the benchmarks' own database and Redis DBs (Makefile BENCH_ENV:
darkroom_bench, Redis DBs 3-5), never the development ones `make run` uses, and prints them first.
Run by hand, give it a database and Redis DBs of your own likewise (or, for namespaced Redis keys,
the test settings)::

    DARKROOM_DB_NAME=darkroom_locust DJANGO_SETTINGS_MODULE=config.settings.test \\
        .venv/bin/python manage.py loadtest all --seconds 20

Under the test settings originals are stored in memory per process, so the worker's preview
rendering marks the load test's photos `failed`; neither scenario serves images. Under the local
settings without BENCH_ENV the Celery broker is the unprefixed one `make run` uses. Figures are
indicative: every process (Locust included) shares one machine.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections
from django.db.models import Count, Sum
from PIL import Image

from apps.catalog.models import ProductKind
from apps.catalog.services import PriceIn, event_create, photo_upload, price_list_set, product_create
from apps.commerce.models import Checkout, CheckoutLine, Entitlement, Provider, Receipt
from apps.commerce.services import LineIn, checkout_create, platform_fee_minor
from apps.core.polling import wait_until
from apps.ledger.models import LedgerEvent
from apps.ops.broker import broker_queue_depths
from apps.ops.management.commands.bench import stores_in_use
from apps.ops.ratelimit import disable_for_benchmark
from apps.ops.webserver import gunicorn_argv
from apps.outbox.selectors import outbox_stats
from apps.payments.models import WebhookEvent
from apps.payments.providers.base import PaymentStatus
from apps.payments.providers.registry import get_provider
from apps.payments.providers.sandbox import SandboxProvider
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import Membership, User
from apps.tenancy.services import api_key_issue, membership_add, organization_create

logger = logging.getLogger("darkroom.loadtest")

SCENARIOS = ("checkout", "webhooks")
LOCUSTFILES = {"checkout": "checkout_locustfile.py", "webhooks": "webhook_storm_locustfile.py"}
PRICE_MINOR = 1500
CURRENCY = "EUR"
MAX_LINES = 3
SYSTEM_REASON = "load test verification"


# --- the studio ------------------------------------------------------------------------------


@dataclass
class LoadShop:
    tenant_id: int
    api_key: str
    event_id: int
    product_ids: list[int]


def _jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (seed * 37 % 256, seed * 91 % 256, seed * 53 % 256)).save(buffer, format="JPEG")
    return buffer.getvalue()


def make_shop(*, photos: int) -> LoadShop:
    """A fresh studio selling `photos` downloads, by three photographers, through the services."""
    tag = uuid.uuid4().hex[:10]
    org = organization_create(slug=f"loadtest-{tag}", name=f"Load test {tag}")
    owner = User.objects.create_user(username=f"loadtest-{tag}-owner", email=f"owner-{tag}@example.test")
    membership_add(tenant=org, user=owner, role=Membership.Role.OWNER)
    photographers = [owner.pk]
    for n in range(2):
        user = User.objects.create_user(username=f"loadtest-{tag}-p{n}", email=f"p{n}-{tag}@example.test")
        membership_add(tenant=org, user=user, role=Membership.Role.PHOTOGRAPHER)
        photographers.append(user.pk)
    key = api_key_issue(tenant=org, name="load test")
    event = event_create(tenant_id=org.pk, title="Load test finals", date=date.today(), slug=f"finals-{tag}")
    price_list_set(
        tenant_id=org.pk,
        event_id=event.pk,
        currency=CURRENCY,
        prices=[PriceIn(kind=ProductKind.DOWNLOAD, amount_minor=PRICE_MINOR)],
    )
    product_ids = []
    for n in range(photos):
        image = _jpeg(n)
        photo = photo_upload(
            tenant_id=org.pk,
            event_id=event.pk,
            uploaded_by=owner,
            image=io.BytesIO(image),
            image_size=len(image),
            photographer_id=photographers[n % len(photographers)],
        )
        product = product_create(tenant_id=org.pk, event_id=event.pk, kind=ProductKind.DOWNLOAD, photo_id=photo.pk)
        product_ids.append(product.pk)
    return LoadShop(tenant_id=org.pk, api_key=key.raw_key, event_id=event.pk, product_ids=product_ids)


def create_checkouts(shop: LoadShop, *, count: int, rng: random.Random) -> list[uuid.UUID]:
    """`count` sandbox checkouts of 1-3 downloads each, through `checkout_create`."""
    ids = []
    with tenant_context(shop.tenant_id):
        for n in range(count):
            lines = rng.sample(shop.product_ids, rng.randint(1, min(MAX_LINES, len(shop.product_ids))))
            checkout = checkout_create(
                tenant_id=shop.tenant_id,
                email=f"buyer-{n}@example.test",
                provider=Provider.SANDBOX,
                lines=[LineIn(product_id=product_id) for product_id in lines],
            )
            ids.append(checkout.pk)
    return ids


# --- the stack: gunicorn, outbox relay, Celery worker ------------------------------------------


@dataclass
class Stack:
    base_url: str
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.log_dir / (name + '.log')}")

    def alive_and(self, check: Callable[[], bool]) -> Callable[[], bool]:
        """A probe for `_wait_until` that also fails fast when a process of the stack died."""

        def probe() -> bool:
            self.check_alive()
            return check()

        return probe


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child_env() -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings.local"),
        "DJANGO_DEBUG": "0",
        "DARKROOM_LOG_LEVEL": "WARNING",
    }


def _spawn(name: str, argv: list[str], log_dir: Path, **env: str) -> subprocess.Popen[bytes]:
    with (log_dir / f"{name}.log").open("wb") as log:
        # Own session: on a stuck shutdown the whole group (prefork children too) is killed.
        return subprocess.Popen(  # noqa: S603 - our own virtualenv's executables, fixed arguments
            argv,
            cwd=settings.BASE_DIR,
            env={**_child_env(), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextmanager
def running_stack(*, web_workers: int, web_threads: int, worker_concurrency: int) -> Iterator[Stack]:
    """gunicorn (127.0.0.1, free port), the outbox relay and a Celery worker on every queue."""
    python = sys.executable
    port = _free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="darkroom-loadtest-"))
    stack = Stack(base_url=f"http://127.0.0.1:{port}", log_dir=log_dir)
    connections.close_all()  # nothing of ours is shared with the children
    try:
        # As the Procfile's web runs (config/gunicorn_conf.py, its workers' HTTP metrics in files).
        stack.processes["gunicorn"] = _spawn(
            "gunicorn",
            gunicorn_argv(port=port, workers=web_workers, threads=web_threads),
            log_dir,
            PROMETHEUS_MULTIPROC_DIR=str(log_dir / "web-metrics"),
        )
        stack.processes["worker"] = _spawn(
            "worker",
            [
                python,
                *"-m celery -A config.celery_app worker --pool=prefork".split(),
                f"--concurrency={worker_concurrency}",
                f"--queues={','.join(settings.DARKROOM_QUEUES)}",
                *"--without-gossip --without-mingle --without-heartbeat --loglevel=WARNING".split(),
                f"--hostname=loadtest-{uuid.uuid4().hex[:8]}@%h",
            ],
            log_dir,
        )
        stack.processes["relay"] = _spawn("relay", [python, "manage.py", "outbox_relay", "--log-interval=60"], log_dir)

        def healthy() -> bool:
            stack.check_alive()
            try:
                with urllib.request.urlopen(f"{stack.base_url}/healthz", timeout=2) as response:  # noqa: S310 - loopback
                    return bool(response.status == 200)
            except OSError:
                return False

        if not wait_until(healthy, timeout=60):
            raise RuntimeError(f"gunicorn did not answer /healthz within 60 s; logs in {log_dir}")
        yield stack
    finally:
        for name in ("relay", "worker", "gunicorn"):
            if name in stack.processes:
                _stop(stack.processes[name])


def _http(method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def warm_up_http(*, stack: Stack, shop: LoadShop, scenario: str, requests: int = 12) -> int:
    """Warm every gunicorn worker (imports, URL resolver, connections) on the scenario's path
    before measuring. Checkout: real checkouts (counted as warm-up). Webhooks: deliveries with
    a wrong signature (400, nothing recorded). Returns how many checkouts were created."""
    created = 0
    for n in range(requests):
        if scenario == "checkout":
            body = {
                "email": f"warm-{n}@example.test",
                "provider": "sandbox",
                "lines": [{"product": shop.product_ids[0]}],
            }
            status = _http(
                "POST",
                f"{stack.base_url}/api/v1/checkouts",
                body=json.dumps(body).encode(),
                headers={
                    "Authorization": f"Bearer {shop.api_key}",
                    "Idempotency-Key": str(uuid.uuid4()),
                    "Content-Type": "application/json",
                },
            )
            expected = 201
            created += int(status == expected)
        else:
            status = _http(
                "POST",
                f"{stack.base_url}/webhooks/sandbox",
                body=b'{"id":"evt_warm","type":"payment.paid"}',
                headers={"Content-Type": "application/json", "Sandbox-Signature": "t=1,v1=00"},
            )
            expected = 400
        if status != expected:
            raise RuntimeError(f"warm-up request answered {status}, expected {expected}; logs in {stack.log_dir}")
    return created


def run_locust(
    *, scenario: str, stack: Stack, users: int, seconds: int, env: dict[str, str], log_dir: Path
) -> tuple[dict[str, Any], int]:
    """One headless Locust run; returns its JSON summary and exit code."""
    bin_dir = Path(sys.executable).parent
    out = log_dir / f"locust-{scenario}.json"
    argv = [
        str(bin_dir / "locust"),
        "-f",
        str(Path(settings.BASE_DIR) / "loadtests" / LOCUSTFILES[scenario]),
        "--headless",
        *f"-u {users} -r {users} -t {seconds}s --stop-timeout 5".split(),
        *f"--host {stack.base_url} --only-summary --loglevel WARNING".split(),
    ]
    prefix = "CHECKOUT_LOCUST" if scenario == "checkout" else "WEBHOOK_STORM"
    child_env = {**_child_env(), **env, f"{prefix}_OUT": str(out), f"{prefix}_USERS": str(users)}
    with (log_dir / f"locust-{scenario}.log").open("wb") as log:
        result = subprocess.run(  # noqa: S603 - our own virtualenv's locust, loopback only
            argv, cwd=settings.BASE_DIR, env=child_env, stdout=log, stderr=subprocess.STDOUT, timeout=seconds + 120
        )
    if not out.exists():
        raise RuntimeError(f"locust wrote no summary (exit {result.returncode}); see {log_dir}")
    return json.loads(out.read_text()), result.returncode


# --- measurements ------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _status_counts(tenant_id: int, ids: list[uuid.UUID] | None = None) -> dict[str, int]:
    with tenant_context(tenant_id):
        query = Checkout.objects.filter(tenant_id=tenant_id)
        if ids is not None:
            query = query.filter(pk__in=ids)
        return dict(Counter(query.values_list("status", flat=True)))


def _all_have_sessions(tenant_id: int) -> bool:
    with tenant_context(tenant_id):
        return not Checkout.objects.filter(
            tenant_id=tenant_id, status=Checkout.Status.AWAITING_PAYMENT_SESSION
        ).exists()


def _machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "note": "one shared machine: Locust, gunicorn, relay, worker, PostgreSQL and Redis (and any "
        "other job running) compete for the same cores; figures are indicative",
    }


def _endpoint_table(http: dict[str, Any]) -> list[str]:
    rows = [f"{'endpoint':<44} {'n':>6} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'fail':>5}"]
    for name, fig in http["endpoints"].items():
        rows.append(
            f"{name:<44} {fig['requests']:>6} {fig['rps']:>7} {fig['p50_ms']:>7} {fig['p99_ms']:>7} "
            f"{fig['failures']:>5}"
        )
    return rows


# --- scenario: checkout --------------------------------------------------------------------------


def scenario_checkout(*, options: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    load_before = os.getloadavg()
    shop = make_shop(photos=options["photos"])
    log(f"studio {shop.tenant_id}: {len(shop.product_ids)} download products")
    with running_stack(
        web_workers=options["web_workers"],
        web_threads=options["web_threads"],
        worker_concurrency=options["worker_concurrency"],
    ) as stack:
        # Warm-up through the durable path: proves relay and worker are consuming.
        warm = create_checkouts(shop, count=1, rng=random.Random(1))  # noqa: S311 - a load shape, not a secret
        if not wait_until(stack.alive_and(lambda: _all_have_sessions(shop.tenant_id)), timeout=90):
            raise RuntimeError(f"relay/worker did not create the warm-up session; logs in {stack.log_dir}")
        warm_http = warm_up_http(stack=stack, shop=shop, scenario="checkout")
        log(f"stack up at {stack.base_url}; Locust {options['users']} users for {options['seconds']} s")
        http, exit_code = run_locust(
            scenario="checkout",
            stack=stack,
            users=options["users"],
            seconds=options["seconds"],
            env={
                "CHECKOUT_LOCUST_API_KEY": shop.api_key,
                "CHECKOUT_LOCUST_PRODUCTS": ",".join(map(str, shop.product_ids)),
                "CHECKOUT_LOCUST_MAX_LINES": str(MAX_LINES),
                "CHECKOUT_LOCUST_RETRY_RATE": str(options["retry_rate"]),
                "CHECKOUT_LOCUST_RATE": str(options["rate"] or 0),
            },
            log_dir=stack.log_dir,
        )
        log(f"Locust done (exit {exit_code}); waiting up to {options['drain_timeout']} s for payment sessions")
        drain_started = time.monotonic()
        drained = wait_until(lambda: _all_have_sessions(shop.tenant_id), timeout=options["drain_timeout"])
        drain_seconds = time.monotonic() - drain_started
        stack.check_alive()
    created = http.pop("created_ids")
    statuses = _status_counts(shop.tenant_id)
    warmups = len(warm) + warm_http
    in_db = sum(statuses.values()) - warmups
    checks = {
        "locust_exit_0": exit_code == 0,
        "no_failed_request": http["failures"] == 0,
        "one_checkout_per_key": in_db == len(set(created)) == len(created),
        "every_replay_same_checkout": http["replays"]
        == http["endpoints"].get("POST /api/v1/checkouts (retry, same key)", {}).get("requests", 0),
        "payment_sessions_created": drained and statuses.get(Checkout.Status.AWAITING_PAYMENT, 0) == in_db + warmups,
    }
    create = http["endpoints"].get("POST /api/v1/checkouts", {})
    passed = all(checks.values())
    summary = (
        f"checkout: {http['total']['requests']} requests, {http['total']['rps']} req/s total; POST /api/v1/checkouts "
        f"{create.get('rps', 0)} req/s p50 {create.get('p50_ms', 0)} ms p99 {create.get('p99_ms', 0)} ms; "
        f"{http['replays']} replays; {http['failures']} failures; "
        f"{in_db} checkouts in DB for {len(created)} created; sessions drained in {drain_seconds:.1f} s"
    )
    return {
        "scenario": "checkout",
        "pass": passed,
        "summary": summary,
        "checks": checks,
        "http": http,
        "verification": {
            "checkouts_in_db": in_db,
            "checkouts_created_by_locust": len(created),
            "checkouts_distinct": len(set(created)),
            "status_counts": statuses,
            "session_drain_seconds": round(drain_seconds, 2),
            "warmup_checkouts": warmups,
        },
        "config": {
            key: options[key]
            for key in ("users", "seconds", "rate", "retry_rate", "photos", "web_workers", "web_threads")
        }
        | {"worker_concurrency": options["worker_concurrency"], "settings": os.environ.get("DJANGO_SETTINGS_MODULE")},
        "tenant_id": shop.tenant_id,
        "logs": str(stack.log_dir),
        "machine": _machine(load_before),
    }


# --- scenario: webhook storm ---------------------------------------------------------------------


def _settle_paid(tenant_id: int, checkout_ids: list[uuid.UUID]) -> list[dict[str, str]]:
    """The sandbox provider settles each checkout as paid; returns the events to deliver."""
    provider = get_provider(Provider.SANDBOX)
    assert isinstance(provider, SandboxProvider)
    with tenant_context(tenant_id):
        references = dict(Checkout.objects.filter(pk__in=checkout_ids).values_list("pk", "sandbox_reference"))
    events = []
    for checkout_id in checkout_ids:
        reference = references[checkout_id] or provider.reference_for(str(checkout_id))
        event = provider.settle(reference=reference, outcome=PaymentStatus.PAID)
        events.append({"event_id": event.event_id, "body": event.body.decode(), "checkout_id": str(checkout_id)})
    return events


def _webhook_status_counts(event_ids: list[str]) -> dict[str, int]:
    with system_context(SYSTEM_REASON):
        rows = WebhookEvent.objects.filter(provider=Provider.SANDBOX, event_id__in=event_ids)
        return dict(Counter(rows.values_list("status", flat=True)))


def _effects(tenant_id: int, checkout_ids: list[uuid.UUID]) -> dict[str, dict[str, int]]:
    """Per checkout id (str): confirmed lines, live entitlements, sale credits, receipts, status."""
    keys = [str(c) for c in checkout_ids]
    with tenant_context(tenant_id):

        def per_checkout(query: Any) -> dict[str, int]:
            rows = query.filter(checkout_id__in=checkout_ids).values("checkout_id").annotate(n=Count("id"))
            return {str(row["checkout_id"]): int(row["n"]) for row in rows}

        lines = per_checkout(CheckoutLine.objects.filter(state=CheckoutLine.State.CONFIRMED))
        entitlements = per_checkout(Entitlement.objects.filter(revoked_at__isnull=True))
        receipts = per_checkout(Receipt.objects.all())
        credits = {
            str(row["reference"]).removeprefix("checkout:"): int(row["n"])
            for row in LedgerEvent.objects.filter(
                tenant_id=tenant_id,
                kind=LedgerEvent.Kind.CREDIT,
                idempotency_key__startswith="sale:",
                reference__in=[f"checkout:{c}" for c in keys],
            )
            .values("reference")
            .annotate(n=Count("id"))
        }
        status = {str(pk): s for pk, s in Checkout.objects.filter(pk__in=checkout_ids).values_list("pk", "status")}
    return {
        key: {
            "lines": lines.get(key, 0),
            "entitlements": entitlements.get(key, 0),
            "credits": credits.get(key, 0),
            "receipts": receipts.get(key, 0),
            "paid": int(status.get(key) == Checkout.Status.PAID),
        }
        for key in keys
    }


def _credited_totals(tenant_id: int, checkout_ids: list[uuid.UUID]) -> tuple[int, int]:
    """(sum of sale credits, sum of line amounts net of the platform fee) over the checkouts."""
    with tenant_context(tenant_id):
        credited = LedgerEvent.objects.filter(
            tenant_id=tenant_id,
            kind=LedgerEvent.Kind.CREDIT,
            idempotency_key__startswith="sale:",
            reference__in=[f"checkout:{c}" for c in checkout_ids],
        ).aggregate(total=Sum("amount_minor"))["total"]
        amounts = CheckoutLine.objects.filter(
            checkout_id__in=checkout_ids, state=CheckoutLine.State.CONFIRMED
        ).values_list("amount_minor", flat=True)
        expected = sum(amount - platform_fee_minor(amount) for amount in amounts)
    return int(credited or 0), expected


def _processing_times(event_ids: list[str]) -> tuple[list[float], float]:
    """Receipt → processed lag (ms) of each processed event, and processed events per second
    from the first receipt to the last processing."""
    with system_context(SYSTEM_REASON):
        rows = list(
            WebhookEvent.objects.filter(
                provider=Provider.SANDBOX, event_id__in=event_ids, processed_at__isnull=False
            ).values_list("received_at", "processed_at")
        )
    pairs = [(received, processed) for received, processed in rows if processed is not None]
    if not pairs:
        return [], 0.0
    lag = [(processed - received).total_seconds() * 1000 for received, processed in pairs]
    window = (max(p for _, p in pairs) - min(r for r, _ in pairs)).total_seconds()
    return lag, len(pairs) / max(window, 1e-9)


def scenario_webhooks(*, options: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    load_before = os.getloadavg()
    shop = make_shop(photos=options["photos"])
    rng = random.Random(7)  # noqa: S311 - a load shape, not a secret
    with running_stack(
        web_workers=options["web_workers"],
        web_threads=options["web_threads"],
        worker_concurrency=options["worker_concurrency"],
    ) as stack:
        started = time.monotonic()
        checkout_ids = create_checkouts(shop, count=options["checkouts"], rng=rng)
        log(f"studio {shop.tenant_id}: {len(checkout_ids)} checkouts in {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        if not wait_until(
            stack.alive_and(lambda: _all_have_sessions(shop.tenant_id)), timeout=options["drain_timeout"]
        ):
            raise RuntimeError(
                f"sandbox sessions not all created within {options['drain_timeout']} s "
                f"({_status_counts(shop.tenant_id)}); logs in {stack.log_dir}"
            )
        log(f"sandbox sessions created through relay and worker in {time.monotonic() - started:.1f} s")
        warm_up_http(stack=stack, shop=shop, scenario="webhooks")
        events = _settle_paid(shop.tenant_id, checkout_ids)
        rng.shuffle(events)
        events_path = stack.log_dir / "events.json"
        events_path.write_text(json.dumps([{"event_id": e["event_id"], "body": e["body"]} for e in events]))
        log(f"Locust {options['users']} users, at most {options['seconds']} s, {len(events)} events")
        http, exit_code = run_locust(
            scenario="webhooks",
            stack=stack,
            users=options["users"],
            seconds=options["seconds"],
            env={
                "WEBHOOK_STORM_EVENTS": str(events_path),
                "WEBHOOK_STORM_SECRET": settings.SANDBOX_WEBHOOK_SECRET,
                "WEBHOOK_STORM_DUPLICATE_RATE": str(options["duplicate_rate"]),
                "WEBHOOK_STORM_RATE": str(options["rate"] or 0),
            },
            log_dir=stack.log_dir,
        )
        deliveries: dict[str, int] = http.pop("deliveries_per_event")
        all_ids = [e["event_id"] for e in events]
        sent_ids = [i for i in all_ids if i in deliveries]
        # Recorded once per event id: checked before processing can change anything.
        with system_context(SYSTEM_REASON):
            recorded = Counter(
                WebhookEvent.objects.filter(provider=Provider.SANDBOX, event_id__in=all_ids).values_list(
                    "event_id", flat=True
                )
            )
        log(f"Locust done (exit {exit_code}); waiting up to {options['drain_timeout']} s for processing")
        drain_started = time.monotonic()
        drained = wait_until(
            lambda: _webhook_status_counts(sent_ids).get(WebhookEvent.Status.PROCESSED, 0) == len(sent_ids),
            timeout=options["drain_timeout"],
            interval=0.5,
        )
        drain_seconds = time.monotonic() - drain_started
        stack.check_alive()
    webhook_statuses = _webhook_status_counts(all_ids)
    checkout_of = {e["event_id"]: uuid.UUID(e["checkout_id"]) for e in events}
    paid_ids = [checkout_of[i] for i in sent_ids]
    unsent_ids = [checkout_of[i] for i in all_ids if i not in deliveries]
    effects = _effects(shop.tenant_id, [checkout_of[i] for i in all_ids])
    paid_effects = [effects[str(c)] for c in paid_ids]
    unsent_effects = [effects[str(c)] for c in unsent_ids]
    credited, expected = _credited_totals(shop.tenant_id, paid_ids)
    lag, processing_rate = _processing_times(sent_ids)
    wrong_paid = [
        str(c)
        for c, e in zip(paid_ids, paid_effects, strict=True)
        if not (e["paid"] and e["entitlements"] == e["lines"] == e["credits"] and e["receipts"] == 1)
    ]
    checks = {
        "locust_exit_0": exit_code == 0,
        "no_failed_delivery": http["failures"] == 0,
        "one_webhook_event_per_sent_id": all(recorded.get(i, 0) == 1 for i in sent_ids),
        "no_webhook_event_for_unsent_id": all(recorded.get(i, 0) == 0 for i in all_ids if i not in deliveries),
        "all_processed": drained and webhook_statuses.get(WebhookEvent.Status.PROCESSED, 0) == len(sent_ids),
        "effects_once_per_paid_checkout": not wrong_paid,
        "credits_sum_net_of_fee": credited == expected,
        "no_effects_for_unsent": all(
            not (e["paid"] or e["entitlements"] or e["credits"] or e["receipts"]) for e in unsent_effects
        ),
    }
    passed = all(checks.values())
    redeliveries = sum(n - 1 for n in deliveries.values())
    summary = (
        f"webhooks: {http['total']['requests']} deliveries ({redeliveries} duplicates, share "
        f"{http['duplicate_share']:.2f}) of {len(sent_ids)} events, {http['total']['rps']} req/s, "
        f"p50 {http['total']['p50_ms']} ms p99 {http['total']['p99_ms']} ms, {http['failures']} failures; "
        f"{sum(recorded.values())} WebhookEvents for {len(sent_ids)} ids; processed in {drain_seconds:.1f} s "
        f"after the storm ({processing_rate:.0f} events/s; receipt→processed p50 {_percentile(lag, 0.5):.0f} ms, "
        f"p99 {_percentile(lag, 0.99):.0f} ms); "
        f"{len(paid_ids) - len(wrong_paid)}/{len(paid_ids)} checkouts with effects exactly once"
    )
    return {
        "scenario": "webhooks",
        "pass": passed,
        "summary": summary,
        "checks": checks,
        "http": http,
        "verification": {
            "events_available": len(all_ids),
            "events_sent": len(sent_ids),
            "deliveries": sum(deliveries.values()),
            "redeliveries": redeliveries,
            "max_deliveries_of_one_event": max(deliveries.values(), default=0),
            "webhook_events_recorded": sum(recorded.values()),
            "webhook_event_ids_recorded_more_than_once": sum(1 for n in recorded.values() if n > 1),
            "webhook_status_counts": webhook_statuses,
            "processing_drain_seconds_after_storm": round(drain_seconds, 2),
            "receipt_to_processed_p50_ms": round(_percentile(lag, 0.5), 1),
            "receipt_to_processed_p99_ms": round(_percentile(lag, 0.99), 1),
            "processed_per_second": round(processing_rate, 1),
            "paid_checkouts": len(paid_ids),
            "paid_checkouts_with_wrong_effects": wrong_paid[:20],
            "lines_of_paid_checkouts": sum(e["lines"] for e in paid_effects),
            "entitlements_of_paid_checkouts": sum(e["entitlements"] for e in paid_effects),
            "wallet_credits_of_paid_checkouts": sum(e["credits"] for e in paid_effects),
            "receipts_of_paid_checkouts": sum(e["receipts"] for e in paid_effects),
            "credited_minor": credited,
            "expected_credit_minor": expected,
            "unsent_checkouts": len(unsent_ids),
            "checkout_status_counts": _status_counts(shop.tenant_id),
        },
        "config": {
            key: options[key]
            for key in ("users", "seconds", "rate", "duplicate_rate", "checkouts", "photos", "web_workers")
        }
        | {
            "web_threads": options["web_threads"],
            "worker_concurrency": options["worker_concurrency"],
            "settings": os.environ.get("DJANGO_SETTINGS_MODULE"),
        },
        "tenant_id": shop.tenant_id,
        "logs": str(stack.log_dir),
        "machine": _machine(load_before),
    }


# --- the command -------------------------------------------------------------------------------


def check_backlog(*, limit: int, log: Callable[[str], None]) -> None:
    """Refuse to start behind a backlog: the scenarios' checks wait for relay and worker, which
    would first work through whatever earlier runs left in the broker queues and the outbox (and
    time out). Raises CommandError naming the counts and how to clear them."""
    depths = broker_queue_depths()
    with system_context("loadtest: backlog check"):
        pending = outbox_stats().pending
    waiting = sum(depths.values())
    log(f"before the run: {waiting} message(s) in the broker queues, {pending} pending in the outbox")
    if waiting + pending <= limit:
        return
    queues = ", ".join(f"{name} {depth}" for name, depth in depths.items() if depth)
    database = settings.DATABASES["default"]["NAME"]
    raise CommandError(
        f"{waiting + pending} messages already wait (broker queues: {queues or 'none'}; outbox pending in database "
        f"{database}: {pending}), more than --max-backlog {limit}. The load test's relay and worker would work "
        "through them first and its checks would time out. Under `make loadtest`, whose database and Redis DBs "
        "only the benchmarks and load tests use, they were left by a stopped run: `make bench-reset` empties "
        "both. Elsewhere let a worker drain them, or on a development box clear the queues with "
        f"`celery -A config.celery_app purge -f -Q {','.join(settings.DARKROOM_QUEUES)}`; "
        "or raise --max-backlog."
    )


class Command(BaseCommand):
    help = "Locust load tests: checkout (with idempotent retries) and a webhook storm (20% duplicates)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("scenario", choices=[*SCENARIOS, "all"])
        parser.add_argument("--users", type=int, default=16, help="concurrent Locust users")
        parser.add_argument("--seconds", type=int, default=20, help="Locust run time per scenario (at most 300)")
        parser.add_argument(
            "--rate",
            type=float,
            default=0.0,
            help="paced load of all users together: checkouts/s (checkout) or deliveries/s (webhooks); 0: closed loop",
        )
        parser.add_argument("--retry-rate", type=float, default=0.10, help="checkout: share retried with same key")
        parser.add_argument("--duplicate-rate", type=float, default=0.20, help="webhooks: share of re-deliveries")
        parser.add_argument("--checkouts", type=int, default=1500, help="webhooks: checkouts (events) prepared")
        parser.add_argument("--photos", type=int, default=24, help="download products of the studio")
        parser.add_argument("--drain-timeout", type=float, default=180.0, help="bounded wait for relay + worker")
        parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
        parser.add_argument("--web-threads", type=int, default=8, help="gunicorn threads per worker")
        parser.add_argument("--worker-concurrency", type=int, default=2, help="Celery worker processes")
        parser.add_argument("--out-dir", default=str(Path(settings.BASE_DIR) / "bench-results"))
        parser.add_argument(
            "--max-backlog",
            type=int,
            default=100,
            help="refuse to start when more messages than this already wait in the broker queues and the outbox",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"running in: {stores_in_use()}")
        disable_for_benchmark()
        if not 1 <= options["seconds"] <= 300:
            raise CommandError("--seconds must be between 1 and 300")
        if options["photos"] < MAX_LINES:
            raise CommandError(f"--photos must be at least {MAX_LINES}")
        if not 0 <= options["duplicate_rate"] < 1 or not 0 <= options["retry_rate"] <= 1:
            raise CommandError("--duplicate-rate must be in [0, 1) and --retry-rate in [0, 1]")
        check_backlog(limit=options["max_backlog"], log=self.stdout.write)
        scenarios = SCENARIOS if options["scenario"] == "all" else (options["scenario"],)
        runners = {"checkout": scenario_checkout, "webhooks": scenario_webhooks}
        failed = False
        for scenario in scenarios:
            out = Path(options["out_dir"]) / f"loadtest_{scenario}.json"
            try:
                result = runners[scenario](options=options, log=self.stdout.write)
            except Exception as exc:
                logger.exception("load test %s broke", scenario)
                result = {"scenario": scenario, "pass": False, "summary": f"{type(exc).__name__}: {exc}"[:1000]}
            self._report(result)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2, default=str))
            self.stdout.write(f"wrote {out}")
            failed |= not result["pass"]
        if failed:
            raise SystemExit(1)

    def _report(self, result: dict[str, Any]) -> None:
        w = self.stdout.write
        if "http" in result:
            w("")
            for row in _endpoint_table(result["http"]):
                w(row)
            for name, ok in result["checks"].items():
                w(f"{self.style.SUCCESS('PASS') if ok else self.style.ERROR('FAIL')} {name}")
        status = self.style.SUCCESS("PASS") if result["pass"] else self.style.ERROR("FAIL")
        w(f"{status} {result['summary']}")
