"""Shared fixtures: tenants with members and API keys, API clients, raw runtime connections."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from django.http.multipartparser import MultiPartParser
from django_redis import get_redis_connection
from rest_framework.test import APIClient

from apps.tenancy.models import Organization, User
from apps.tenancy.services import api_key_issue
from tests.factories.tenancy import MembershipFactory, OrganizationFactory, UserFactory


def database_url(*, user: str, password: str | None) -> str:
    """A URL for this test run's database (the per-worker test database) as `user`."""
    default = connection.settings_dict
    secret = f":{password}" if password else ""
    host, port = default.get("HOST") or "127.0.0.1", default.get("PORT") or 5432
    return f"postgres://{user}{secret}@{host}:{port}/{default['NAME']}"


def terminate_backend(pid: int, *, timeout: float = 60.0) -> None:
    """End a PostgreSQL backend as a server restart would (pg_terminate_backend, as the superuser)
    and return once it is gone: the function only signals the backend, which exits a moment later."""
    with psycopg.connect(database_url(user="postgres", password=None), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + timeout
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            if time.monotonic() > deadline:
                raise TimeoutError(f"backend {pid} still runs {timeout} s after pg_terminate_backend")
            time.sleep(0.01)


def backend_pid() -> int:
    """The PostgreSQL backend of this thread's default connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def waits_for_a_lock(pid: int) -> bool:
    """Whether backend `pid` is blocked by another backend's lock (read live from the lock
    manager, so it can be polled inside a transaction, unlike pg_stat_activity's snapshot)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT cardinality(pg_blocking_pids(%s)) > 0", [pid])
        return bool(cursor.fetchone()[0])


def wait_until_blocked(pids: list[int], thread: threading.Thread, what: str, *, timeout: float = 60.0) -> None:
    """Return once the backend whose pid `thread` puts in `pids` waits for a lock. Fails if the
    thread ends without having waited, or (a bound for a loaded machine) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (pids and waits_for_a_lock(pids[0])):
        assert thread.is_alive(), f"{what} finished without waiting for a lock"
        assert time.monotonic() < deadline, f"{what} did not wait for a lock within {timeout} s"
        time.sleep(0.02)


def purge_queues(queues: Sequence[str] | None = None) -> None:
    """Empty the given broker queues (default: every Darkroom queue) in this test worker's
    broker namespace."""
    from config.celery_app import app as celery_app

    with celery_app.connection_for_write() as conn:
        channel = conn.default_channel
        for queue in queues if queues is not None else settings.DARKROOM_QUEUES:
            channel.queue_purge(queue)


def forget_rate_limit_windows(key_start: str) -> None:
    """Delete this run's rate-limiter windows whose key starts with `key_start` (e.g. "web:").
    They live in Redis and outlast a test, and a dropped test database's ids start again."""
    client = get_redis_connection("default")
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    for key in client.scan_iter(match=f"{prefix}:ratelimit:{{{key_start}*"):
        client.delete(key)


def celery_worker_argv(*, pool: str, queues: str, hostname: str, loglevel: str, extra: Sequence[str] = ()) -> list[str]:
    """The command line of a real `celery worker` child for a test: one process, no gossip,
    mingle or heartbeat (nothing else to talk to), on `queues`."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config.celery_app",
        "worker",
        f"--pool={pool}",
        f"--queues={queues}",
        *extra,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        f"--loglevel={loglevel}",
        f"--hostname={hostname}@%h",
    ]


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a `manage.py` child process that must share this test's database and Redis
    namespace (test settings, the per-worker database URLs, the xdist worker id)."""
    runtime, owner = settings.DATABASES["default"], settings.DATABASES["owner"]
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": database_url(user=runtime["USER"], password=runtime.get("PASSWORD")),
        "DATABASE_OWNER_URL": database_url(user=owner["USER"], password=owner.get("PASSWORD")),
        "PYTEST_XDIST_WORKER": os.environ.get("PYTEST_XDIST_WORKER", "main"),
        **extra,
    }


@dataclass
class TenantBundle:
    org: Organization
    owner: User
    api_key: str

    def client(self) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {self.api_key}")
        return client


@pytest.fixture
def make_tenant(db: None) -> Callable[..., TenantBundle]:
    def make(slug: str | None = None) -> TenantBundle:
        org = OrganizationFactory(**({"slug": slug} if slug else {}))
        owner = UserFactory()
        MembershipFactory(tenant=org, user=owner, role="owner")
        issued = api_key_issue(tenant=org, name="test")
        return TenantBundle(org=org, owner=owner, api_key=issued.raw_key)

    return make


@pytest.fixture
def tenant_a(make_tenant: Callable[..., TenantBundle]) -> TenantBundle:
    return make_tenant()


@pytest.fixture
def tenant_b(make_tenant: Callable[..., TenantBundle]) -> TenantBundle:
    return make_tenant()


@pytest.fixture
def runtime_conn(db: None) -> Iterator[psycopg.Connection]:
    """A raw psycopg connection as the runtime role to the test database (autocommit off)."""
    params = connection.get_connection_params()
    conn = psycopg.connect(
        dbname=connection.settings_dict["NAME"],
        user=settings.DATABASES["default"]["USER"],
        password=settings.DATABASES["default"].get("PASSWORD") or None,
        host=params.get("host"),
        port=params.get("port"),
    )
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records each multipart parse (anything that reads a form body: the CSRF check, a view)."""
    parsed: list[int] = []
    original = MultiPartParser.parse

    def spy(self: MultiPartParser) -> Any:
        parsed.append(1)
        return original(self)

    monkeypatch.setattr(MultiPartParser, "parse", spy)
    return parsed


def require_executable(path: str, how_to_install: str) -> None:
    """Skip the calling test when the program `path` (a Debian package's, which `make test`
    installs first) is missing, or fail it when CI is set: there a missing tool must not pass as
    skipped tests. `how_to_install` ends the message ("install it with `make promtool`")."""
    if os.access(path, os.X_OK):
        return
    reason = f"{path} is missing: {how_to_install}"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: a missing tool fails the run)", pytrace=False)
    pytest.skip(reason)
