"""Web worker processes that died abnormally, and the requests they were answering then.

A request on a gunicorn worker that dies whole (the OOM killer's SIGKILL, the master's abort
after `--timeout`, its SIGKILL after `graceful_timeout`, a crash) never reaches the end of
`HttpMetricsMiddleware`: it is in no `darkroom_http_requests_total`, and `child_exit` forgets
the dead worker's requests in progress. The master sees every worker die, so it counts them:

* `darkroom_web_worker_deaths_total{reason}`: workers that died abnormally, by `reason`:
  `timeout` (the master aborted it: no heartbeat for `--timeout` seconds, then SIGABRT and, if it
  lingers, SIGKILL), `signal` (it died without running its exit path: SIGKILL from the OOM killer,
  an operator or the master after `graceful_timeout`, or a crash), `exit_code` (it ran its exit
  path with a non-zero status: an error in the worker loop). A worker that exits with 0 (a
  graceful stop, a restart after `max_requests`) is not counted.
* `darkroom_http_requests_lost_total{reason}`: the requests those workers were answering, read
  from the dead worker's `darkroom_http_requests_in_progress` file before `child_exit` removes
  it. The client got no answer from the application (a reset connection, or its proxy's 502);
  the `DarkroomHttp5xxRate` alert counts them as failed requests.

Both are written by the gunicorn master into its own files of `PROMETHEUS_MULTIPROC_DIR` (see
`config/gunicorn_conf.py`), which a scrape adds up with the workers' files; every reason is
exported from 0. The files outlive the master: after a `kill -USR2` upgrade the new generation's
scrapes add the old master's deaths to the new one's, each once. Outside multiprocess mode
(runserver, tests) they stay at 0 in this process's registry, so /metrics always carries them.

How the master tells the reasons apart: gunicorn gives `child_exit` the worker object, not the
exit status it reaped. `worker.aborted` is set by the master when it aborts a worker for its
timeout. The worker's `worker_exit` hook (run in the worker, by gunicorn's `finally` around its
life, for every exit through Python) leaves its exit status in a small file once its interpreter
has finished (`record_exit_when_finished`); a worker killed by a signal, even one killed while it
waited at exit for a request still running, leaves none, so no file means a signal.

This module is imported by the gunicorn master, where Django is not set up: it imports no Django.
"""

from __future__ import annotations

import atexit
import json
import logging
from pathlib import Path

from prometheus_client import Counter
from prometheus_client.mmap_dict import MmapedDict

from apps.ops.metrics import PROCESS_REGISTRY

logger = logging.getLogger("darkroom.ops.worker_deaths")

TIMEOUT, SIGNAL, EXIT_CODE = "timeout", "signal", "exit_code"
REASONS = (TIMEOUT, SIGNAL, EXIT_CODE)
# The gauge of `apps.ops.http_metrics` (multiprocess mode livesum: one file per worker pid).
IN_PROGRESS_NAME = "darkroom_http_requests_in_progress"
EXIT_RECORD_PREFIX = "worker_exit_"

WORKER_DEATHS = Counter(
    "darkroom_web_worker_deaths",
    "Web worker processes that died abnormally, by reason (timeout, signal, exit_code).",
    ["reason"],
    registry=PROCESS_REGISTRY,
)
REQUESTS_LOST = Counter(
    "darkroom_http_requests_lost",
    "HTTP requests in progress on a web worker process when it died abnormally, by reason of its death.",
    ["reason"],
    registry=PROCESS_REGISTRY,
)
for _reason in REASONS:
    WORKER_DEATHS.labels(_reason)
    REQUESTS_LOST.labels(_reason)


def exit_record(directory: Path, pid: int) -> Path:
    return directory / f"{EXIT_RECORD_PREFIX}{pid}"


def exit_status(code: object) -> int:
    """The process exit status `sys.exit(code)` gives: None is 0, an int is taken modulo 256
    (-1 is 255), anything else (a message) is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code % 256
    return 1


def record_exit(directory: Path, pid: int, status: int) -> None:
    """Leave a worker's exit status for the master's `worker_died`."""
    exit_record(directory, pid).write_text(str(status))


def record_exit_when_finished(directory: Path, pid: int, status: int) -> None:
    """In the worker, on its exit path: record `status` once its interpreter has finished
    (atexit), which is after it joined its threads. A gthread worker stopped with a request still
    running after graceful_timeout waits there until the master's SIGKILL: it records nothing,
    so it counts as killed (`signal`), with the request it held as lost."""
    atexit.register(record_exit, directory, pid, status)


def death_reason(*, aborted: bool, status: int | None) -> str | None:
    """Why a worker died (one of REASONS), or None for a clean exit. `status` is what it
    recorded on its way out, None if it recorded nothing (killed by a signal)."""
    if aborted:
        return TIMEOUT
    if status is None:
        return SIGNAL
    return EXIT_CODE if status != 0 else None


def requests_in_progress(directory: Path, pid: int) -> int:
    """The requests in progress a worker's livesum gauge file holds (0 without the file)."""
    total = 0.0
    for path in directory.glob(f"gauge_live*_{pid}.db"):
        for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(str(path)):
            if json.loads(key)[0] == IN_PROGRESS_NAME:
                total += value
    return max(0, round(total))


def _recorded_status(directory: Path, pid: int) -> int | None:
    record = exit_record(directory, pid)
    try:
        text = record.read_text()
    except FileNotFoundError:
        return None
    record.unlink(missing_ok=True)
    try:
        return int(text)
    except ValueError:
        return 1  # a record cut short: it ran its exit path, but what it exited with is lost


def worker_died(directory: Path, *, pid: int, aborted: bool) -> tuple[str, int] | None:
    """In the gunicorn master, once it reaped worker `pid` and before its live gauges are
    forgotten: count its death and the requests it was answering if it died abnormally.

    Returns (reason, requests lost), or None for a clean exit. Consumes the worker's exit record.
    Raises what reading its in-progress file raises (OSError, struct.error for a damaged one),
    after counting the death."""
    reason = death_reason(aborted=aborted, status=_recorded_status(directory, pid))
    if reason is None:
        return None
    WORKER_DEATHS.labels(reason).inc()
    lost = requests_in_progress(directory, pid)
    if lost:
        REQUESTS_LOST.labels(reason).inc(lost)
    return reason, lost
