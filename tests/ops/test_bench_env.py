"""`make bench` and `make loadtest` run in a database and Redis DBs of their own (the Makefile's
BENCH_ENV), never in the development ones `make run` uses nor in the tests' ones.

What `make -n` prints is what the recipes run: every `manage.py` line of the targets, their
database set-up included, must carry the bench environment. Which database and Redis DBs that
environment means is asked of Django's own settings, in child processes whose environment holds
nothing but PATH and what the recipe sets, and compared with what the development and test
settings resolve to with none of it. Every setting of every kind is searched for Redis URLs (the
cache's LOCATION, the Celery broker and result backend, REDIS_URL, any added later), so a Redis
URL setting that BENCH_ENV leaves out resolves to its development default and fails here.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[2]

# Run in a child process: the resolved database names, media root and every Redis URL found in
# any setting, by where it was found (`CACHES['default']['LOCATION']`).
_SETTINGS_PROBE = r"""
import json
from django.conf import settings


def redis_urls(value, where):
    if isinstance(value, str):
        if value.split("://", 1)[0] in ("redis", "rediss"):
            yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from redis_urls(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple, set, frozenset)):
        for index, item in enumerate(value):
            yield from redis_urls(item, f"{where}[{index}]")


names = [name for name in dir(settings) if name.isupper()]
print(json.dumps({
    "databases": sorted({db["NAME"] for db in settings.DATABASES.values()}),
    "media_root": str(settings.MEDIA_ROOT),
    "redis": dict(found for name in names for found in redis_urls(getattr(settings, name), name)),
}))
"""


@dataclass(frozen=True)
class ManagePy:
    command: str  # the management command's name
    env: dict[str, str]  # the NAME=value assignments the recipe line starts with


def _manage_py_lines(target: str) -> list[ManagePy]:
    """The `manage.py` runs of `make -n <target>` (prerequisites included), in order."""
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    printed = subprocess.run(
        ["make", "--no-print-directory", "-n", target], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.replace("\\\n", " ")
    runs = []
    for line in printed.splitlines():
        if "manage.py" not in line:
            continue
        words = shlex.split(line)
        assignments = [w for w in words[: words.index("manage.py")] if "=" in w and w.split("=", 1)[0].isidentifier()]
        runs.append(ManagePy(words[words.index("manage.py") + 1], dict(w.split("=", 1) for w in assignments)))
    return runs


def _bench_env() -> dict[str, str]:
    """What the `manage.py bench` line sets, but DJANGO_DEBUG (off for the figures, not the set-up)."""
    (bench,) = [run for run in _manage_py_lines("bench") if run.command == "bench"]
    return {name: value for name, value in bench.env.items() if name != "DJANGO_DEBUG"}


def _resolve(env: dict[str, str]) -> dict[str, Any]:
    """What Django's settings make of `env` (and the checkout's .env, as for every real run)."""
    probe = subprocess.run(
        [sys.executable, "-c", _SETTINGS_PROBE],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(probe.stdout))


def _redis_db(url: str) -> tuple[str, int, int]:
    parts = urlsplit(url)
    db = parts.path.strip("/") or parse_qs(parts.query).get("db", ["0"])[0]
    return (parts.hostname or "localhost", parts.port or 6379, int(db))


def test_every_manage_py_run_of_bench_and_loadtest_carries_the_bench_environment() -> None:
    # given: the bench environment, as the `manage.py bench` line sets it
    bench_env = _bench_env()
    assert {"DARKROOM_DB_NAME", "DJANGO_SETTINGS_MODULE"} <= set(bench_env), bench_env
    for target in ("bench", "loadtest", "bench-reset"):
        # when: make prints what the target runs
        runs = _manage_py_lines(target)
        # then: the database set-up is part of it, and every run is in the bench environment
        assert {"services_check", "db_bootstrap", "migrate"} <= {run.command for run in runs}, (target, runs)
        outside = [run.command for run in runs if bench_env.items() - run.env.items()]
        assert not outside, f"make {target} runs manage.py {outside} outside the bench environment"


def test_the_bench_environment_shares_no_database_and_no_redis_db_with_development_or_the_tests() -> None:
    # given: the settings as the bench environment, the development default and the tests resolve them
    bench = _resolve(_bench_env())
    development = _resolve({"DJANGO_SETTINGS_MODULE": "config.settings.local"})
    tests = _resolve({"DJANGO_SETTINGS_MODULE": "config.settings.test"})
    # (the probe finds the Redis URL settings it must cover)
    assert {"REDIS_URL", "CACHES['default']['LOCATION']", "CELERY_BROKER_URL"} <= set(development["redis"])

    # then: another database, not the development one
    assert not set(bench["databases"]) & set(development["databases"]), (bench, development)
    # and: no Redis URL setting of the bench points at a Redis DB development or the tests use
    taken = {_redis_db(url) for url in [*development["redis"].values(), *tests["redis"].values()]}
    shared = {where: url for where, url in bench["redis"].items() if _redis_db(url) in taken}
    assert not shared, f"the bench environment leaves these Redis settings on a development or test DB: {shared}"
    # and: each Redis URL setting of development has its own, other, Redis DB under the bench
    assert set(development["redis"]) <= set(bench["redis"]), (development["redis"], bench["redis"])
    # and: its own media root (development's sweep of orphan originals would remove the bench's)
    assert bench["media_root"] != development["media_root"]
