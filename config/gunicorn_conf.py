"""gunicorn's configuration file for the web (`gunicorn -c config/gunicorn_conf.py ...`: the
Procfile, docker-compose and `apps.ops.webserver`): the hooks of prometheus_client's multiprocess
mode, so that the HTTP request metrics of every worker process add up at /metrics
(`apps.ops.metrics`). The server's shape (bind, workers, threads, timeout) stays on the command
line.

PROMETHEUS_MULTIPROC_DIR must be set in gunicorn's environment by whoever starts it (a shell
line, compose's environment): prometheus_client decides at import whether a process writes its
values there, and a worker inherits the environment gunicorn was started with. Each worker
writes one file per metric type, named after its pid; a scrape adds up every file there.

* `when_ready`: creates the directory and empties it of the previous run's files (else a run
  would start from the last one's counts, its dead workers' included): a restart resets the
  counters, as a restarted process's do, and `rate()` takes that in its stride. It runs once the
  listening socket is bound, before the first worker starts: a second server that fails to bind
  the same address stops before touching the running one's files. Not in a master re-executed
  by `kill -USR2` (the zero-downtime upgrade): the old master and its workers still serve and
  count beside it, from this directory, on the same socket, so it is the same server to
  Prometheus, and the old generation's files carry its totals. Every process writes only files
  named after its own pid, and nothing deletes a process's counters when it exits, so no count
  is lost or added twice when the old generation stops; deleting them would make the sums go
  back, which Prometheus reads as a reset, counting the new generation's counts again.
* `child_exit` (in the master, from its main loop, once it reaped the worker): if the worker
  died abnormally, counts its death and the requests it was answering (`apps.ops.worker_deaths`:
  the master's own metric files, read with the workers'); then `mark_process_dead` forgets its
  live gauges (the requests in progress it would otherwise report for ever). Its counters and
  histograms stay, so what it counted is not lost from the totals: a counter never goes back
  when a worker dies. An exception here would stop the master's loop, and with it the server:
  what fails is logged instead.
* `on_exit` (in the master, as it stops): `child_exit` for the workers its stop killed after
  `graceful_timeout` and had not reaped yet (gunicorn would exit without it: in a USR2 upgrade,
  that death would be lost, and the request it held stay in progress in the new generation's
  /metrics).
* `worker_exit` (in the worker, on every exit through Python): leaves the worker's exit status
  for `child_exit`, which gunicorn does not give it, once its interpreter has finished; a worker
  killed by a signal leaves none, even one killed as it waited at exit for a request still running.

Not `worker_abort`: it runs in the aborted worker, inside a signal handler, and only if the
worker's main thread gets to run Python again; a worker stuck in C code is killed without it.
The master knows it aborted a worker for its timeout (`worker.aborted`) whatever happened next.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

# gunicorn's default, stated because the API's schema and README quote it (a longer request line
# gets gunicorn's own `414 URI Too Long` text/html page, before Django; component
# `RequestLineTooLong` of apps/core/openapi.py): the longest request line a valid call of the API
# needs is under 1 KB, so raising it would only let longer invalid ones reach Django.
limit_request_line = 4094

# prometheus_client's own file names: `<type>_<pid>.db` and `gauge_<mode>_<pid>.db`; and the
# exit records of `worker_exit` (apps.ops.worker_deaths.EXIT_RECORD_PREFIX).
METRIC_FILE_PATTERNS = ("counter_*.db", "histogram_*.db", "summary_*.db", "gauge_*.db", "worker_exit_*")
# How long the exiting master waits for the workers its stop() killed (SIGKILL is prompt; a worker
# stuck in the kernel, as on a dead network file system, must not hold the master for ever).
EXIT_REAP_SECONDS = 5.0


def multiproc_dir() -> Path:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if not path:
        raise RuntimeError(
            "PROMETHEUS_MULTIPROC_DIR is not set: set it to a directory for this server's metric files"
            " (the Procfile uses var/prometheus/web-<DARKROOM_DB_NAME>), else each worker process"
            " counts only its own requests and /metrics shows whichever one answers"
        )
    return Path(path)


def when_ready(server: Any) -> None:
    directory = multiproc_dir()
    directory.mkdir(parents=True, exist_ok=True)
    if server.master_pid:
        # Re-executed by USR2 (gunicorn set GUNICORN_PID): the old generation still serves from
        # these files, and its totals are this server's.
        server.log.info("metrics of the worker processes in %s (kept: a re-exec)", directory)
    else:
        # Only prometheus_client's files: the variable may name a directory that holds others.
        stale = [file for pattern in METRIC_FILE_PATTERNS for file in directory.glob(pattern)]
        for file in stale:
            file.unlink()
        server.log.info("metrics of the worker processes in %s (%d stale files removed)", directory, len(stale))
    # The master's own metric file, made now with every reason at 0 (an alert on the increase of
    # a series sees its first death only if the series existed before it).
    from apps.ops import worker_deaths  # noqa: F401 - see child_exit for why imported here


def child_exit(server: Any, worker: Any) -> None:
    # Imported here, not at the top: gunicorn reads this file before it applies `-e` variables,
    # prometheus_client fixes its mode when first imported, and forked workers inherit the
    # master's imported modules. By when_ready the environment is final.
    from prometheus_client import multiprocess

    from apps.ops import worker_deaths

    # Nothing may raise from here: an exception would stop the master's loop (see above).
    try:
        directory = multiproc_dir()
        death = worker_deaths.worker_died(directory, pid=worker.pid, aborted=worker.aborted)
    except Exception:
        server.log.warning("worker (pid:%s) exited: its death could not be counted", worker.pid, exc_info=True)
    else:
        if death is not None:
            server.log.warning("worker (pid:%s) died (%s) answering %d request(s)", worker.pid, *death)
    try:
        multiprocess.mark_process_dead(worker.pid, path=str(multiproc_dir()))
    except Exception:
        server.log.warning("worker (pid:%s) exited: its live gauges could not be forgotten", worker.pid, exc_info=True)


def on_exit(server: Any) -> None:
    # gunicorn's stop() SIGKILLs the workers still running after graceful_timeout, then reaps
    # without waiting: a worker not dead yet stays in server.WORKERS, and without this the master
    # would exit before child_exit ran for it (its death uncounted, its requests in progress left
    # in the directory, which the new generation of a USR2 upgrade goes on serving).
    deadline = time.monotonic() + EXIT_REAP_SECONDS
    for pid, worker in list(server.WORKERS.items()):
        try:
            while not os.waitpid(pid, os.WNOHANG)[0]:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"still running {EXIT_REAP_SECONDS} s after its SIGKILL")
                time.sleep(0.05)
        except ChildProcessError:
            pass  # reaped already: gone all the same
        except Exception:
            server.log.warning("worker (pid:%s) not reaped at exit: its death is not counted", pid, exc_info=True)
            continue
        server.WORKERS.pop(pid, None)
        child_exit(server, worker)


def worker_exit(server: Any, worker: Any) -> None:
    # gunicorn calls this in the worker from the `finally` around its life, while the SystemExit
    # that ends it propagates (every exit through Python is one); and in the master for a worker
    # it found already gone, which has nothing to record.
    if os.getpid() != worker.pid:
        return
    from apps.ops import worker_deaths

    ending = sys.exc_info()[1]
    if isinstance(ending, SystemExit):
        status = worker_deaths.exit_status(ending.code)
    else:  # another BaseException ends it abnormally; none at all, not on an exit path we know
        status = 0 if ending is None else 1
    worker_deaths.record_exit_when_finished(multiproc_dir(), worker.pid, status)
