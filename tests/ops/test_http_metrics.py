"""HTTP request metrics (`apps.ops.http_metrics`): what the middleware counts and times, read
from /metrics; and under a real gunicorn with two worker processes, that the counts add up
across the workers (prometheus_client's multiprocess mode) and survive a worker killed by the
kernel, while the killed worker's requests in progress are forgotten (`child_exit`); and that a
worker that dies abnormally (killed by a signal, aborted for its timeout, exiting with an error)
is counted by the master with the requests it was answering (`apps.ops.worker_deaths`), and the
totals carry on through a `kill -USR2` upgrade, each death in them once.

The in-process test runs without PROMETHEUS_MULTIPROC_DIR (the metrics live in this process's
registry, as under runserver); the gunicorn test starts the server as `apps.ops.webserver` does
for the benchmarks, with `config/gunicorn_conf.py` and a metrics directory of its own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

# Imported while PROMETHEUS_MULTIPROC_DIR is unset (prometheus_client picks a metric's storage when
# the metric is made): the master's counters are then this process's own, whichever test runs first.
from apps.ops import worker_deaths  # noqa: F401
from apps.ops.metrics import PROCESS_REGISTRY
from apps.ops.webserver import WebServer, gunicorn, web_env
from apps.tenancy.context import tenant_context
from config.settings.base import MIDDLEWARE as BASE_MIDDLEWARE
from tests.factories.catalog import EventFactory
from tests.fixtures import TenantBundle, forget_rate_limit_windows, subprocess_env

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

ROOT = Path(__file__).resolve().parents[2]

REQUESTS = "darkroom_http_requests_total"
DURATION = "darkroom_http_request_duration_seconds"
IN_PROGRESS = "darkroom_http_requests_in_progress"
DEATHS = "darkroom_web_worker_deaths_total"
LOST = "darkroom_http_requests_lost_total"
REASONS = ("timeout", "signal", "exit_code")


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape() -> Samples:
    """/metrics through the whole middleware stack, as Prometheus asks it."""
    response = Client().get("/metrics")
    assert response.status_code == 200
    return parse(response.content.decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def http_series(samples: Samples) -> Samples:
    return {key: v for key, v in samples.items() if key[0].startswith("darkroom_http_request")}


# --- the middleware, in this process ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_answers_are_counted_by_method_route_and_status_and_timed(
    tenant_a: TenantBundle, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: an API limit of one request a minute on the event list, and an event whose detail
    # view takes 0.3 s and then fails
    settings.RATE_LIMIT_ENABLED = True
    settings.RATE_LIMITS = {"catalog-events": "1/min"}
    forget_rate_limit_windows(f"t{tenant_a.org.pk}:")
    with tenant_context(tenant_a.org.pk):
        event = EventFactory(tenant=tenant_a.org)

    def slow_failure(**kwargs: Any) -> None:
        time.sleep(0.3)
        raise RuntimeError("the database went away")

    monkeypatch.setattr("apps.catalog.selectors.event_get", slow_failure)
    api: APIClient = tenant_a.client()
    api.raise_request_exception = False
    before = scrape()

    # when: a 200, then a 429 from the rate limiter, a 404 problem for a path no endpoint
    # serves, a 413 for a body over the limit (answered before the URL is resolved), and a 500
    answers = [
        api.get("/api/v1/events"),
        api.get("/api/v1/events"),
        api.get("/api/v1/no-such-endpoint"),
        api.generic("POST", "/api/v1/events", b"x" * (settings.API_MAX_BODY_BYTES + 1), "application/json"),
        api.get(f"/api/v1/events/{event.pk}"),
    ]
    after = scrape()

    # then: each is counted once under its method, URL pattern (never the path) and status
    assert [a.status_code for a in answers] == [200, 429, 404, 413, 500]
    assert answers[2]["Content-Type"] == "application/problem+json"
    expected = [
        ("GET", "/api/v1/events", "200"),
        ("GET", "/api/v1/events", "429"),
        ("GET", "unmatched", "404"),
        ("POST", "/api/v1/events", "413"),
        ("GET", "/api/v1/events/<int:event_id>", "500"),
    ]
    for method, route, status in expected:
        labels = {"method": method, "route": route, "status": status}
        assert value(after, REQUESTS, **labels) - value(before, REQUESTS, **labels) == 1, labels
    # and: nothing else was counted (the two scrapes of /metrics included)
    counted = {k: v - before.get(k, 0.0) for k, v in http_series(after).items() if k[0] == REQUESTS}
    assert sum(counted.values()) == len(expected)

    # and: each is timed under its method and route; the failing view's 0.3 s lands above the
    # 0.25 s bucket and within the 0.5 s one
    def timed(samples: Samples, suffix: str, method: str, route: str, **extra: str) -> float:
        return value(samples, f"{DURATION}_{suffix}", method=method, route=route, **extra)

    assert timed(after, "count", "GET", "/api/v1/events") - timed(before, "count", "GET", "/api/v1/events") == 2
    assert timed(after, "count", "POST", "/api/v1/events") - timed(before, "count", "POST", "/api/v1/events") == 1
    assert timed(after, "count", "GET", "unmatched") - timed(before, "count", "GET", "unmatched") == 1
    detail = ("GET", "/api/v1/events/<int:event_id>")
    assert timed(after, "sum", *detail) - timed(before, "sum", *detail) >= 0.3
    assert timed(after, "bucket", *detail, le="0.25") == timed(before, "bucket", *detail, le="0.25")
    assert timed(after, "bucket", *detail, le="0.5") - timed(before, "bucket", *detail, le="0.5") == 1
    # and: none is in progress any more
    assert value(after, IN_PROGRESS) == 0


@pytest.mark.django_db(transaction=True)
def test_the_monitoring_endpoints_are_not_counted_and_methods_stay_bounded() -> None:
    # given: what /metrics shows now
    before = http_series(scrape())
    client = Client()
    # when: the monitoring asks its endpoints
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200
    # then: no HTTP series moved
    assert http_series(scrape()) == before
    # when: a client sends a method no view answers
    assert client.generic("BREW", "/api/v1/events").status_code in (401, 403, 405)
    # then: it is counted under `other`, not under the name the client made up
    after = http_series(scrape())
    assert any(dict(labels).get("method") == "other" for _, labels in after)
    assert not any(dict(labels).get("method") == "BREW" for _, labels in after)


@pytest.mark.django_db(transaction=True)
def test_static_files_are_counted_under_their_own_route_not_as_unmatched(settings: Any) -> None:
    # given: the deployed middleware stack, with WhiteNoise serving the static files (the test
    # settings leave it out)
    settings.MIDDLEWARE = BASE_MIDDLEWARE
    settings.WHITENOISE_USE_FINDERS = True
    client = Client()
    before = scrape()
    # when: a browser follows /favicon.ico to the icon, asks for a static file that is not
    # there, and for a path nothing serves
    assert client.get("/favicon.ico").status_code == 301
    icon = client.get("/static/web/favicon.svg")
    assert icon.status_code == 200 and b"".join(icon.streaming_content).startswith(b"<svg")  # type: ignore[attr-defined]
    assert client.get("/static/web/no-such-file.css").status_code == 404
    assert client.get("/no-such-page").status_code == 404
    after = scrape()
    # then: the static files are counted under `static` (found or not: the status says), one
    # label whatever the path; only the path nothing serves is `unmatched`
    expected = [
        ("GET", "/favicon.ico", "301"),
        ("GET", "static", "200"),
        ("GET", "static", "404"),
        ("GET", "unmatched", "404"),
    ]
    for method, route, status in expected:
        labels = {"method": method, "route": route, "status": status}
        assert value(after, REQUESTS, **labels) - value(before, REQUESTS, **labels) == 1, labels
    counted = {k: v - before.get(k, 0.0) for k, v in http_series(after).items() if k[0] == REQUESTS}
    assert sum(counted.values()) == len(expected)
    assert not any(dict(labels).get("route", "").startswith("/static") for _, labels in http_series(after))


# --- a real gunicorn with two worker processes --------------------------------------------------

ROUTE = "/api/v1/events"  # answered 401 to a caller without a key: cheap, and a real URL pattern


def fetch(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def scrape_server(web: WebServer) -> Samples:
    with urllib.request.urlopen(f"{web.url}/metrics", timeout=30) as response:
        return parse(response.read().decode())


def per_process(web: WebServer, prefix: str) -> dict[int, Samples]:
    """Each process's own values, read from its files in the server's metrics directory."""
    found: dict[int, Samples] = {}
    for path in web.metrics_dir.glob(f"{prefix}_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        found[pid] = {
            (s.name, frozenset((k, v) for k, v in s.labels.items() if k != "pid")): s.value
            for metric in MultiProcessCollector.merge([str(path)])
            for s in metric.samples
        }
    return found


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def routed(samples: Samples) -> float:
    return value(samples, REQUESTS, method="GET", route=ROUTE, status="401")


def deaths(samples: Samples) -> dict[str, tuple[float, float]]:
    """Per reason: (workers died, requests lost); a reason /metrics does not export is left out."""
    return {
        reason: (value(samples, DEATHS, reason=reason), value(samples, LOST, reason=reason))
        for reason in REASONS
        if (DEATHS, frozenset({("reason", reason)})) in samples and (LOST, frozenset({("reason", reason)})) in samples
    }


def stall_a_request(web: WebServer) -> socket.socket:
    """A request a worker is in the middle of: a chunked body that stops coming (the view waits
    for the rest). Returns its connection; close it when done."""
    stalled = socket.create_connection(("127.0.0.1", web.port), timeout=30)
    stalled.sendall(
        f"POST {ROUTE} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n".encode()
    )
    return stalled


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(300)
def test_under_gunicorn_the_workers_counts_add_up_and_outlive_a_killed_worker() -> None:
    env = web_env(**subprocess_env())
    with gunicorn(env=env, workers=2, threads=4) as web:
        # given: both workers up (each makes its in-progress gauge file when it loads the app)
        def workers() -> set[int]:
            return {pid for pid in per_process(web, "gauge_livesum") if alive(pid)}

        wait_for(lambda: len(workers()) == 2, "two workers with the app loaded")
        first_workers = workers()

        # when: requests go to the server until each worker has answered some of them
        sent = 0
        with ThreadPoolExecutor(max_workers=8) as pool:
            while sent < 400:
                assert set(pool.map(fetch, [f"{web.url}{ROUTE}"] * 16)) == {401}
                sent += 16
                counts = {pid: routed(s) for pid, s in per_process(web, "counter").items()}
                if len([c for c in counts.values() if c > 0]) == 2:
                    break
        # (the master's counter file, its worker deaths, counts no request)
        own = {pid: routed(s) for pid, s in per_process(web, "counter").items() if pid != web.process.pid}
        assert set(own) == first_workers and all(0 < count < sent for count in own.values()), own

        # then: /metrics, whichever worker answers it, reports every request: the two processes'
        # counts added up, with their durations (the scrapes themselves are not counted)
        for _ in range(6):
            samples = scrape_server(web)
            assert routed(samples) == sent
            assert value(samples, f"{DURATION}_count", method="GET", route=ROUTE) == sent
            assert value(samples, IN_PROGRESS) == 0
            # and: no worker has died, each reason exported from 0 (an alert on its increase sees the first)
            assert deaths(samples) == {reason: (0, 0) for reason in REASONS}

        # given: a request a worker is in the middle of (a chunked body that stops coming)
        stalled = stall_a_request(web)
        try:
            wait_for(lambda: value(scrape_server(web), IN_PROGRESS) == 1, "the stalled request in progress")
            [holder] = [pid for pid, s in per_process(web, "gauge_livesum").items() if value(s, IN_PROGRESS) == 1]

            # when: the kernel kills that worker (as the OOM killer would) and gunicorn replaces it
            os.kill(holder, signal.SIGKILL)
            wait_for(lambda: len(workers() - first_workers) == 1, "a new worker in place of the killed one")
        finally:
            stalled.close()

        # then: what the killed worker counted is still in the totals, and its request in
        # progress is not (child_exit marked it dead)
        samples = scrape_server(web)
        assert routed(samples) == sent
        assert value(samples, f"{DURATION}_count", method="GET", route=ROUTE) == sent
        assert value(samples, IN_PROGRESS) == 0
        # and: the master counted a worker killed by a signal, and the request it was answering as lost
        assert deaths(samples) == {"timeout": (0, 0), "signal": (1, 1), "exit_code": (0, 0)}
        # and: counting goes on from there
        assert set(fetch(f"{web.url}{ROUTE}") for _ in range(5)) == {401}
        assert routed(scrape_server(web)) == sent + 5


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(300)
def test_under_gunicorn_a_worker_aborted_for_its_timeout_is_counted_with_the_request_it_held() -> None:
    env = web_env(**subprocess_env())
    with gunicorn(env=env, workers=2, threads=4, timeout=2) as web:
        # given: both workers up, and a request one of them is in the middle of
        def workers() -> set[int]:
            return {pid for pid in per_process(web, "gauge_livesum") if alive(pid)}

        wait_for(lambda: len(workers()) == 2, "two workers with the app loaded")
        first_workers = workers()
        stalled = stall_a_request(web)
        try:
            wait_for(lambda: value(scrape_server(web), IN_PROGRESS) == 1, "the stalled request in progress")
            [holder] = [pid for pid, s in per_process(web, "gauge_livesum").items() if value(s, IN_PROGRESS) == 1]

            # when: that worker stops (as one stuck in C code holding the GIL: no heartbeat, no
            # signal handler runs), so the master aborts it after the 2 s timeout, then kills it
            os.kill(holder, signal.SIGSTOP)
            wait_for(lambda: not alive(holder), "the stopped worker killed by the master")
            wait_for(lambda: len(workers() - first_workers) == 1, "a new worker in place of the aborted one")
        finally:
            stalled.close()

        # then: the master counted a worker that timed out, and its request as lost
        samples = scrape_server(web)
        assert deaths(samples) == {"timeout": (1, 1), "signal": (0, 0), "exit_code": (0, 0)}
        assert value(samples, IN_PROGRESS) == 0


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie (a master orphaned by the upgrade is reaped by init,
    which may take its time)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(300)
def test_under_gunicorn_the_totals_survive_a_usr2_upgrade_each_death_counted_once(tmp_path: Path) -> None:
    # The zero-downtime upgrade: USR2 makes the master exec a new master beside itself (it shares
    # the listening socket and the metrics directory), then the old master gets TERM. Its workers
    # finish their requests, and one still busy after graceful_timeout is killed by it.
    pidfile = tmp_path / "gunicorn.pid"
    env = web_env(**subprocess_env(GUNICORN_CMD_ARGS=f"--graceful-timeout 3 --pid {pidfile}"))
    with gunicorn(env=env, workers=2, threads=4) as web:
        old_master = web.process.pid

        def workers_of(master: int) -> set[int]:
            """Its live workers with the app loaded (named by their files, which a worker may be
            creating: not read)."""
            pids = {int(path.stem.rsplit("_", 1)[1]) for path in web.metrics_dir.glob("gauge_livesum_*.db")}
            return {pid for pid in pids if alive(pid) and parent(pid) == master}

        def holder_of_the_stalled_request() -> int:
            [holder] = [pid for pid, s in per_process(web, "gauge_livesum").items() if value(s, IN_PROGRESS) == 1]
            return holder

        # given: requests answered by the old generation, and one it is in the middle of
        wait_for(lambda: len(workers_of(old_master)) == 2, "two workers with the app loaded")
        sent = 40
        with ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(fetch, [f"{web.url}{ROUTE}"] * sent)) == {401}
        new_master = 0
        try:
            across = stall_a_request(web)
            try:
                wait_for(lambda: value(scrape_server(web), IN_PROGRESS) == 1, "the stalled request in progress")
                old_holder = holder_of_the_stalled_request()

                # when: USR2: a new master and two workers of its own start beside the old ones
                os.kill(old_master, signal.SIGUSR2)
                new_pidfile = Path(f"{pidfile}.2")
                wait_for(lambda: new_pidfile.exists() and new_pidfile.read_text().strip() != "", "the new master")
                new_master = int(new_pidfile.read_text())
                wait_for(lambda: len(workers_of(new_master)) == 2, "the new master's two workers")

                # then: while both generations serve, /metrics (from either) has every count: the
                # old generation's requests, its request in progress, no death
                for _ in range(4):
                    samples = scrape_server(web)
                    assert routed(samples) == sent
                    assert value(samples, IN_PROGRESS) == 1
                    assert deaths(samples) == {reason: (0, 0) for reason in REASONS}

                # when: the kernel kills the old generation's idle worker (its master replaces it)
                [idle] = workers_of(old_master) - {old_holder}
                os.kill(idle, signal.SIGKILL)
                wait_for(lambda: len(workers_of(old_master) - {idle}) == 2, "its replacement")
                # then: the old master counted it, once
                assert deaths(scrape_server(web)) == {"timeout": (0, 0), "signal": (1, 0), "exit_code": (0, 0)}

                # when: the old master gets TERM: its idle workers stop, the one still answering
                # the stalled request after graceful_timeout is killed by it, and it exits
                os.kill(old_master, signal.SIGTERM)
                web.process.wait(timeout=60)
                wait_for(lambda: gone(old_holder), "the old generation's busy worker killed")
            finally:
                across.close()

            # then: the new generation's /metrics still has the old generation's requests, and the
            # death of its busy worker at the end of the upgrade with the request it held, once;
            # nothing is in progress, and no exit record is left behind
            samples = scrape_server(web)
            assert routed(samples) == sent
            assert deaths(samples) == {"timeout": (0, 0), "signal": (2, 1), "exit_code": (0, 0)}
            assert value(samples, IN_PROGRESS) == 0
            assert not list(web.metrics_dir.glob("worker_exit_*"))

            # when: the kernel kills a new worker answering a request
            stalled = stall_a_request(web)
            try:
                wait_for(lambda: value(scrape_server(web), IN_PROGRESS) == 1, "a request in progress")
                holder = holder_of_the_stalled_request()
                assert parent(holder) == new_master
                os.kill(holder, signal.SIGKILL)
                wait_for(lambda: len(workers_of(new_master) - {holder}) == 2, "its replacement")
            finally:
                stalled.close()
            # then: the new master counts it on top of the old one's deaths, and counting goes on
            assert deaths(scrape_server(web)) == {"timeout": (0, 0), "signal": (3, 2), "exit_code": (0, 0)}
            assert set(fetch(f"{web.url}{ROUTE}") for _ in range(5)) == {401}
            assert routed(scrape_server(web)) == sent + 5
        finally:
            if new_master and not gone(new_master):
                os.kill(new_master, signal.SIGTERM)
                wait_for(lambda: gone(new_master), "the new master stopped")


def test_the_gunicorn_hooks_start_from_an_empty_directory_and_forget_only_live_gauges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config import gunicorn_conf

    class Log:
        def info(self, *args: Any) -> None: ...

        def warning(self, *args: Any, **kwargs: Any) -> None: ...

    class Server:
        log = Log()
        master_pid = 0  # gunicorn's: the old master's pid in a master re-executed by USR2

    class Worker:
        pid = 4242
        aborted = False

    # given: the files a previous run left, and a file that is not prometheus_client's
    directory = tmp_path / "web-metrics"
    directory.mkdir()
    for name in ("counter_4242.db", "histogram_4242.db", "gauge_livesum_4242.db", "notes.txt"):
        (directory / name).write_bytes(b"")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    # when: the server is ready
    gunicorn_conf.when_ready(Server())
    # then: only the metric files are gone
    assert sorted(p.name for p in directory.iterdir()) == ["notes.txt"]
    # given: a worker's files
    for name in ("counter_4242.db", "histogram_4242.db", "gauge_livesum_4242.db", "gauge_livesum_77.db"):
        (directory / name).write_bytes(b"")
    # when: it exits
    gunicorn_conf.child_exit(Server(), Worker())
    # then: its live gauge goes; its counters and histograms, and other workers' files, stay
    left = ["counter_4242.db", "gauge_livesum_77.db", "histogram_4242.db", "notes.txt"]
    assert sorted(p.name for p in directory.iterdir()) == left

    # when: a master re-executed by USR2 is ready beside the old one
    class Reexecuted(Server):
        master_pid = 4000

    gunicorn_conf.when_ready(Reexecuted())
    # then: it empties nothing (the old generation goes on serving, and its totals are the server's)
    assert sorted(p.name for p in directory.iterdir()) == left
    # and: without the variable the server refuses to start rather than count per process
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR"):
        gunicorn_conf.when_ready(Server())


# A worker's end as gunicorn runs it, in a process of its own (its exit record is written at
# interpreter exit): sys.exit in the worker, and worker_exit in the `finally` around its life. The
# configuration file is loaded as gunicorn loads it. With REQUEST_RUNNING a thread is still
# answering a request that never ends, so the interpreter waits for it at exit.
WORKER_END = """
import importlib.util, os, sys, threading
spec = importlib.util.spec_from_file_location("gunicorn_conf", "config/gunicorn_conf.py")
gunicorn_conf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gunicorn_conf)

class Worker:
    pid = os.getpid()
    aborted = False

if int(os.environ["REQUEST_RUNNING"]):
    threading.Thread(target=threading.Event().wait).start()
try:
    sys.exit(int(os.environ["EXIT_CODE"]))
finally:
    gunicorn_conf.worker_exit(None, Worker())
    print("exit path run", flush=True)
"""


def test_the_master_counts_a_worker_by_how_it_died_with_the_requests_it_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config import gunicorn_conf

    class Log:
        def info(self, *args: Any) -> None: ...

        def warning(self, *args: Any, **kwargs: Any) -> None: ...

        def error(self, *args: Any, **kwargs: Any) -> None: ...

    class Server:
        log = Log()

    class Worker:
        def __init__(self, pid: int, *, aborted: bool = False) -> None:
            self.pid, self.aborted = pid, aborted

    def exits(code: int, *, killed_waiting_for_a_request: bool = False) -> int:
        """A worker process that ends with `code` (or, waiting at exit for a request still
        running, is killed by the master's SIGKILL), reaped. Returns its pid."""
        env = {
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(directory),
            "EXIT_CODE": str(code),
            "REQUEST_RUNNING": str(int(killed_waiting_for_a_request)),
        }
        worker = subprocess.Popen([sys.executable, "-c", WORKER_END], cwd=ROOT, env=env, stdout=subprocess.PIPE)
        assert worker.stdout is not None
        assert worker.stdout.readline() == b"exit path run\n"
        if killed_waiting_for_a_request:
            worker.kill()
        worker.wait(timeout=30)
        worker.stdout.close()
        return worker.pid

    def holding(pid: int, requests: float) -> None:
        """A worker's in-progress gauge file, as prometheus_client writes it."""
        gauge = MmapedDict(str(directory / f"gauge_livesum_{pid}.db"))
        gauge.write_value(mmap_key(IN_PROGRESS, IN_PROGRESS, [], [], "in progress"), requests, 0.0)
        gauge.close()

    def records() -> list[str]:
        return sorted(p.name for p in directory.glob("worker_exit_*"))

    def counted() -> dict[str, tuple[float, float]]:
        return {
            reason: (
                PROCESS_REGISTRY.get_sample_value(DEATHS, {"reason": reason}) or 0.0,
                PROCESS_REGISTRY.get_sample_value(LOST, {"reason": reason}) or 0.0,
            )
            for reason in REASONS
        }

    def moved(before: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        after = counted()
        return {
            reason: (after[reason][0] - before[reason][0], after[reason][1] - before[reason][1])
            for reason in REASONS
            if after[reason] != before[reason]
        }

    directory = tmp_path / "web-metrics"
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    # given: every reason exported (from 0) by this process too
    assert all(
        PROCESS_REGISTRY.get_sample_value(name, {"reason": r}) is not None for name in (DEATHS, LOST) for r in REASONS
    )

    # when: a worker exits cleanly (a graceful stop), its requests finished
    before = counted()
    pid = exits(0)
    assert records() == [f"worker_exit_{pid}"]
    gunicorn_conf.child_exit(Server(), Worker(pid))
    # then: nothing counted, and its exit record is gone
    assert moved(before) == {}
    assert records() == []

    # when: a worker holding one request exits with gunicorn's status after an error in its loop
    pid = exits(-1)
    holding(pid, 1)
    gunicorn_conf.child_exit(Server(), Worker(pid))
    # then: counted under exit_code, with its request
    assert moved(before) == {"exit_code": (1, 1)}

    # when: a worker holding two requests dies without running its exit path (SIGKILL, OOM)
    before = counted()
    holding(4243, 2)
    gunicorn_conf.child_exit(Server(), Worker(4243))
    # then: counted under signal, with both requests; its live gauge is forgotten
    assert moved(before) == {"signal": (1, 2)}
    assert not (directory / "gauge_livesum_4243.db").exists()

    # when: a stopping worker runs its exit path with a request still running, and waits for it
    # until the master kills it (gunicorn's SIGKILL after graceful_timeout)
    before = counted()
    pid = exits(0, killed_waiting_for_a_request=True)
    holding(pid, 1)
    gunicorn_conf.child_exit(Server(), Worker(pid))
    # then: it recorded nothing, so it is counted under signal, with the request it held
    assert moved(before) == {"signal": (1, 1)}

    # when: a worker the master aborted for its timeout exits on the abort (status 1), idle
    before = counted()
    pid = exits(1)
    gunicorn_conf.child_exit(Server(), Worker(pid, aborted=True))
    # then: counted under timeout
    assert moved(before) == {"timeout": (1, 0)}

    # when: gunicorn calls worker_exit in the master for a worker already gone, then the master
    # reads an in-progress file it cannot parse
    gunicorn_conf.worker_exit(Server(), Worker(4244))
    (directory / "gauge_livesum_4244.db").write_bytes(b"")
    before = counted()
    gunicorn_conf.child_exit(Server(), Worker(4244))
    # then: no record was left for it, its death is still counted, and the master goes on
    assert moved(before) == {"signal": (1, 0)}
    assert records() == []
    assert not list(directory.glob("gauge_livesum_*"))
