"""A gunicorn for the HTTP benchmarks: the project's WSGI app on a free loopback port, DEBUG off.

`inventory_bench` (Locust) and `http_write_bench` (wrk) drive their load at it. The shape is
theirs to pick; both default to 2 gthread workers x 8 threads. The environment comes from this
process (so `disable_for_benchmark()`, called first, switches the rate limiter off for it too),
with DEBUG off (DEBUG records every query) and warnings-only logs. It runs as the Procfile's web
does, with `config/gunicorn_conf.py` and a PROMETHEUS_MULTIPROC_DIR of its own (a temporary
directory, removed afterwards): the benchmarks measure the HTTP metrics' cost as production pays
it, and the server's /metrics adds up its workers' requests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

logger = logging.getLogger("darkroom.ops.webserver")

WEB_WORKERS = 2
WEB_THREADS = 8


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Return once `url` answers 200; raise RuntimeError if `proc` exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer {url} within {timeout:.0f} s")


def web_env(**extra: str) -> dict[str, str]:
    """This process's environment for the server (and its load generator), DEBUG off, plus `extra`."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings.local"),
        "DJANGO_DEBUG": "0",
        "DARKROOM_LOG_LEVEL": "WARNING",
        **extra,
    }


def gunicorn_argv(*, port: int, workers: int, threads: int, timeout: int = 60) -> list[str]:
    """The command line of a loopback gunicorn (gthread) serving the project's WSGI app with the
    web's configuration file; its environment must set PROMETHEUS_MULTIPROC_DIR. `timeout`: the
    seconds a worker may go without a heartbeat before the master aborts it."""
    return [
        str(Path(sys.executable).parent / "gunicorn"),
        *"-c config/gunicorn_conf.py config.wsgi:application".split(),
        *f"--bind 127.0.0.1:{port} --workers {workers} --threads {threads}".split(),
        *f"--worker-class gthread --log-level warning --timeout {timeout}".split(),
    ]


@dataclass(frozen=True)
class WebServer:
    process: subprocess.Popen[bytes]
    port: int
    metrics_dir: Path  # its PROMETHEUS_MULTIPROC_DIR

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def gunicorn(
    *,
    env: dict[str, str],
    workers: int = WEB_WORKERS,
    threads: int = WEB_THREADS,
    timeout: int = 60,
    log: logging.Logger = logger,
) -> Iterator[WebServer]:
    """Start gunicorn (gthread, `workers` x `threads`) on 127.0.0.1, wait until /healthz answers,
    and stop it when the block ends: SIGTERM (gunicorn finishes the requests it is serving), then
    SIGKILL after 30 s. If the block (or the start) raises, gunicorn's last output goes to `log`
    before the exception propagates."""
    base = Path(settings.BASE_DIR)
    port = free_port()
    argv = gunicorn_argv(port=port, workers=workers, threads=threads, timeout=timeout)
    metrics_dir = tempfile.TemporaryDirectory(prefix="darkroom-web-metrics-")
    output = tempfile.TemporaryFile()
    process = subprocess.Popen(  # noqa: S603 - our own virtualenv's gunicorn, loopback only
        argv,
        cwd=base,
        env={**env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir.name},
        stdout=subprocess.DEVNULL,
        stderr=output,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", process)
        yield WebServer(process=process, port=port, metrics_dir=Path(metrics_dir.name))
    except Exception:
        output.seek(0)
        log.error("gunicorn output: %s", output.read()[-3000:].decode(errors="replace"))
        raise
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        output.close()
        metrics_dir.cleanup()
