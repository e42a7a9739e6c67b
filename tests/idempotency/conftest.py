"""Helpers for the Idempotency-Key tests.

The effect under test is a real endpoint: POST /api/v1/tenancy/api-keys (owner role, session
auth) issues an API key and writes an audit row. Counting those rows counts effects.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from unittest import mock

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from apps.idempotency.models import TABLE, IdempotencyKey
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import ApiKey, AuditLog

URL = "/api/v1/tenancy/api-keys"
_real_now = timezone.now


@dataclass
class Effects:
    api_keys: int
    audits: int
    idempotency_rows: int


def effects(tenant_id: int) -> Effects:
    with tenant_context(tenant_id):
        return Effects(
            api_keys=ApiKey.objects.count(),
            audits=AuditLog.objects.filter(action="api_key.issue").count(),
            idempotency_rows=IdempotencyKey.objects.count(),
        )


def session_client(source: Client) -> Client:
    """A new client (for another thread) sharing `source`'s signed-in session."""
    client = Client()
    name = settings.SESSION_COOKIE_NAME
    client.cookies[name] = source.cookies[name].value
    return client


def post(client: Client, body: str | bytes, key: str | None, **headers: str):
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    return client.post(URL, data=body, content_type="application/json", **headers)


def partition_of(key: str) -> list[str]:
    """The partitions holding the rows of `key`, oldest first (across tenants)."""
    with system_context("tests: idempotency partition lookup"), connection.cursor() as cursor:
        cursor.execute(f'SELECT tableoid::regclass::text FROM "{TABLE}" WHERE key = %s ORDER BY created_at', [key])
        return [row[0] for row in cursor.fetchall()]


def day_partition(moment: dt.datetime) -> str:
    return f"{TABLE}_p{moment:%Y%m%d}"


def today_midnight() -> dt.datetime:
    now = _real_now()
    return dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC)


class Clock:
    """`django.utils.timezone.now`, controllable for all threads or for the current one only."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._everywhere: dt.datetime | None = None

    def set(self, moment: dt.datetime) -> None:
        self._everywhere = moment

    def set_for_this_thread(self, moment: dt.datetime) -> None:
        self._local.moment = moment

    def now(self) -> dt.datetime:
        return getattr(self._local, "moment", None) or self._everywhere or _real_now()


@pytest.fixture
def clock() -> Iterator[Clock]:
    controlled = Clock()
    with mock.patch("django.utils.timezone.now", controlled.now):
        yield controlled


@pytest.fixture
def owner_client(tenant_a, client: Client) -> Client:
    client.force_login(tenant_a.owner)
    return client


class Gate:
    """Pauses the view's service call until released, to hold a request in flight."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def wrap(self, service: Callable) -> Callable:
        def gated(**kwargs):
            self.entered.set()
            if not self.release.wait(timeout=60):
                raise TimeoutError("gate never released")
            return service(**kwargs)

        return gated


@pytest.fixture
def gate() -> Iterator[Gate]:
    from apps.tenancy import apis

    held = Gate()
    with mock.patch.object(apis, "api_key_issue", held.wrap(apis.api_key_issue)):
        yield held
    held.release.set()


def run_in_thread(target: Callable[[], object]) -> tuple[threading.Thread, list]:
    """Run `target` in a thread that closes its DB connection; its result lands in the list."""
    out: list = []

    def body() -> None:
        try:
            out.append(target())
        except Exception as exc:  # noqa: BLE001 - handed to the asserting thread
            out.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=body)
    thread.start()
    return thread, out
