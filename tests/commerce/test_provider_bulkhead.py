"""A payment provider that hangs holds up only the providers' worker (the bulkhead).

Every task that calls a provider's API is on the `providers` queue, consumed by its own worker
(Procfile `providers`); the `worker` consumes every other queue. Here PayPal's API accepts a
request and never answers while a hot print is bought: its stock must still be decided.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.db import connection
from django.test import override_settings

from config.celery_app import app as celery_app
from tests.commerce.fixtures import checkout_body, post_checkout, running_relay, wait_until
from tests.fixtures import celery_worker_argv, subprocess_env
from tests.payments.provider_transport import JsonHandler, serving

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.usefixtures("empty_broker")]

WAIT_SECONDS = 120  # the bound on each wait (the providers worker starts up meanwhile, on a loaded machine)
HANG_SECONDS = 2 * WAIT_SECONDS  # longer than the test waits for anything


class _HangingApi:
    """Holds every request until `release`, then refuses it for good (a 400 no retry would
    change), so the worker holding it finishes at once."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.url = ""
        api = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                api.entered.set()
                api.release.wait(timeout=HANG_SECONDS)
                self.send_json(400, {"name": "INVALID_REQUEST", "message": "test: refused after hanging"})

        self.handler = Handler


@pytest.fixture
def hanging_paypal() -> Iterator[_HangingApi]:
    api = _HangingApi()
    # The client waits longer than the test does: a timeout must not be what frees a worker.
    with (
        serving(api.handler) as url,
        override_settings(PAYPAL_API_BASE=url, PAYMENTS_HTTP_TIMEOUT_SECONDS=HANG_SECONDS),
    ):
        api.url = url
        try:
            yield api
        finally:
            api.release.set()


def _procfile_queues() -> dict[str, set[str]]:
    """The queues each Celery worker of the Procfile consumes, by process name."""
    workers = {}
    for line in (Path(settings.BASE_DIR) / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if "celery" in command and " worker " in command:
            workers[name] = set(re.search(r"--queues=(\S+)", command).group(1).split(","))  # type: ignore[union-attr]
    return workers


def test_the_procfile_consumes_every_queue_and_isolates_the_providers_queue() -> None:
    workers = _procfile_queues()
    assert set().union(*workers.values()) == set(settings.DARKROOM_QUEUES)
    assert workers["providers"] == {settings.PROVIDER_QUEUE}
    assert settings.PROVIDER_QUEUE not in workers["worker"]


def test_a_hanging_provider_does_not_hold_up_stock_decisions(tenant_a, shop_a, hanging_paypal) -> None:
    # given: the Procfile's two workers: `worker` (solo, in a thread) and `providers` (a real
    # process, solo: one call at a time), and the relay
    workers = _procfile_queues()
    client = tenant_a.client()
    providers = subprocess.Popen(
        celery_worker_argv(
            pool="solo", queues=",".join(workers["providers"]), hostname="providers", loglevel="WARNING"
        ),
        env=subprocess_env(PAYPAL_API_BASE=hanging_paypal.url, PAYMENTS_HTTP_TIMEOUT_SECONDS=str(HANG_SECONDS)),
        cwd=settings.BASE_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with (
            start_worker(
                celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=60, queues=sorted(workers["worker"])
            ),
            running_relay(),
        ):
            # when: a PayPal checkout asks for its session and PayPal's API hangs on the call
            post_checkout(client, checkout_body(shop_a, {"product": shop_a.download.pk}, provider="paypal"))
            wait_until(hanging_paypal.entered.is_set, timeout=WAIT_SECONDS)
            # and a shopper buys the hot print
            checkout_id = post_checkout(client, checkout_body(shop_a, {"product": shop_a.print.pk})).json()["id"]
            # then: its stock is decided while the PayPal call still hangs
            wait_until(lambda: _line_state(client, checkout_id) == "confirmed", timeout=WAIT_SECONDS)
            assert not hanging_paypal.release.is_set()
            hanging_paypal.release.set()
    finally:
        providers.terminate()
        try:
            providers.wait(timeout=60)
        except subprocess.TimeoutExpired:
            providers.kill()
            providers.wait()
        connection.close()


def _line_state(client, checkout_id: str) -> str:
    return str(client.get(f"/api/v1/checkouts/{checkout_id}").json()["lines"][0]["state"])
