"""Fixtures shared by the commerce and payments (webhook, end-to-end) tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection
from django.test import override_settings
from rest_framework.test import APIClient

from apps.outbox.models import OutboxMessage
from apps.outbox.relay import OutboxRelay
from apps.tenancy.context import system_context
from config.celery_app import app as celery_app
from tests.commerce.helpers import new_key
from tests.factories.commerce import SHIPPING_JSON, Shop, make_shop
from tests.fixtures import TenantBundle, purge_queues

WORKER_QUEUES = ["default", "payments", "providers", "inventory", "notifications"]


@pytest.fixture
def empty_broker() -> Iterator[None]:
    """Purge every Darkroom queue before and after the test, so no task leaks between tests."""
    purge_queues()
    yield
    purge_queues()


@pytest.fixture
def shop_a(tenant_a: TenantBundle) -> Shop:
    return make_shop(org=tenant_a.org)


@pytest.fixture
def shop_b(tenant_b: TenantBundle) -> Shop:
    return make_shop(org=tenant_b.org, currency="USD")


@contextmanager
def worker_running(*, purge_first: bool = True) -> Iterator[None]:
    """A real Celery worker (solo pool, in a thread) on the queues commerce uses; sandbox webhook
    deliveries go through Django's WSGI handler in-process (no server).

    At the end the worker finishes the task it is running before its thread exits; Celery's
    default bound on that (10 s, then RuntimeError) is too tight for a loaded machine, so every
    test worker here gets 60 s (the join returns as soon as the thread has exited)."""
    if purge_first:
        purge_queues()
    with (
        override_settings(SANDBOX_WEBHOOK_TRANSPORT="tests.commerce.helpers.WsgiTransport"),
        start_worker(
            celery_app,
            pool="solo",
            perform_ping_check=False,
            shutdown_timeout=60,
            queues=WORKER_QUEUES,
            loglevel="WARNING",
        ),
    ):
        yield
    connection.close()
    purge_queues()


@pytest.fixture
def row_lock_strategy(settings: Any) -> None:
    """Decide print lines inside the checkout transaction (the `row_lock` strategy), for tests of
    the checkout's own bookkeeping; the default `batched` flow is tested in test_inventory_*."""
    settings.INVENTORY_STRATEGY = "row_lock"


@pytest.fixture
def celery_worker_thread() -> Iterator[None]:
    with worker_running():
        yield


def post_checkout(client: APIClient, body: dict[str, Any], *, key: str | None = None) -> Any:
    return client.post("/api/v1/checkouts", body, format="json", HTTP_IDEMPOTENCY_KEY=key or new_key())


def checkout_body(
    shop: Shop,
    *lines: dict[str, Any],
    provider: str = "sandbox",
    email: str = "ann@example.test",
    shipping: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A checkout's JSON body; with the shop's print in a line it carries a shipping address
    (`shipping`, else SHIPPING_JSON), as the API requires."""
    body: dict[str, Any] = {"email": email, "provider": provider, "lines": list(lines)}
    if shipping is not None or any(line.get("product") == shop.print.pk for line in lines):
        body["shipping"] = shipping if shipping is not None else SHIPPING_JSON
    return body


# --- end-to-end helpers: a relay thread and waiting for the pipeline -------------------------


def wait_until(predicate: Callable[[], bool], timeout: float = 120.0) -> None:
    """Poll until `predicate()` holds (a bound for a loaded machine: it returns once it holds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    assert predicate(), "condition not reached in time"


@contextmanager
def running_relay() -> Iterator[None]:
    """The outbox relay loop in a thread (LISTEN/NOTIFY, short poll), as `manage.py outbox_relay`."""
    relay = OutboxRelay(batch_size=50, poll_interval=0.1)

    def run() -> None:
        try:
            relay.run()
        finally:
            connection.close()

    thread = threading.Thread(target=run, name="test-relay", daemon=True)
    thread.start()
    try:
        yield
    finally:
        relay.stop()
        thread.join(timeout=60)


def outbox_idle() -> bool:
    with system_context("test"):
        return not OutboxMessage.objects.filter(status="pending").exists()
