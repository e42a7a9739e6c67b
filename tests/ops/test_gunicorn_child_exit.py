"""`config/gunicorn_conf.py`'s child_exit runs in the gunicorn master's main loop: an exception there
ends the loop, and gunicorn then stops the whole server. Whatever fails while it forgets a dead
worker's files is logged, and the master goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


class Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def info(self, *args: Any, **kwargs: Any) -> None: ...

    def warning(self, message: str, *args: Any, **kwargs: Any) -> None:
        self.warnings.append(message % args)


class Server:
    def __init__(self) -> None:
        self.log = Log()


class Worker:
    pid = 4299
    aborted = False


def test_a_live_gauge_file_the_master_cannot_remove_is_logged_not_raised_into_its_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config import gunicorn_conf

    # given: the metrics directory holds, under a dead worker's live-gauge name, something that
    # cannot be removed as a file (here a directory; in production, say, a file of another owner)
    directory = tmp_path / "web-metrics"
    (directory / f"gauge_livesum_{Worker.pid}.db").mkdir(parents=True)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    server = Server()
    # when: the master reaps that worker
    gunicorn_conf.child_exit(server, Worker())
    # then: nothing is raised into gunicorn's main loop (before: IsADirectoryError from
    # mark_process_dead, which stops the master and every worker); the failure is logged
    assert any(f"pid:{Worker.pid}" in warning for warning in server.log.warnings), server.log.warnings
