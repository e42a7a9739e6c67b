"""The per-request connection health check: no round trip for a live idle connection, and a
connection the server ended is found and replaced. Real PostgreSQL (the backend is terminated
with pg_terminate_backend)."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.db.backends.postgresql import base as pg_base

from tests.fixtures import terminate_backend

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def full_checks(monkeypatch) -> list[int]:
    """Counts the full (`SELECT 1`) checks Django's own `is_usable` makes."""
    calls: list[int] = []
    original = pg_base.DatabaseWrapper.is_usable

    def counting(self):
        calls.append(1)
        return original(self)

    monkeypatch.setattr(pg_base.DatabaseWrapper, "is_usable", counting)
    return calls


def test_a_live_idle_connection_passes_without_a_round_trip(full_checks) -> None:
    connection.ensure_connection()
    assert connection.is_usable()
    assert full_checks == []


def test_a_connection_the_server_ended_fails_the_check_and_is_replaced(full_checks) -> None:
    # given: an open connection whose backend the server then terminates
    connection.ensure_connection()
    old_pid = connection.connection.info.backend_pid
    terminate_backend(old_pid)
    deadline = time.monotonic() + 30
    while connection.is_usable() and time.monotonic() < deadline:
        time.sleep(0.01)
    # then: the check says unusable, after asking the full check (the socket had something to read)
    assert not connection.is_usable()
    assert full_checks
    # when: a request's health check runs, then its query
    connection.health_check_done = False
    connection.close_if_health_check_failed()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (new_pid,) = cursor.fetchone()
    # then: the query ran on a new connection
    assert new_pid != old_pid
