"""The request id and tenant cross into a real Celery worker (Redis broker) and its logs; the
worker replaces a database connection the server ended."""

import logging

import pytest
from celery.contrib.testing.worker import start_worker

from apps.core.request_context import reset_request_id, set_request_id
from apps.tenancy.context import tenant_context
from config.celery_app import app as celery_app
from tasks.core import echo_context
from tests.fixtures import terminate_backend

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker():
    with start_worker(
        celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=60, queues=["default"], loglevel="WARNING"
    ):
        yield


def test_request_id_and_tenant_reach_the_worker_and_its_logs(worker, tenant_a, caplog):
    # given: a request context acting for tenant A
    token = set_request_id("req-celery-42")
    try:
        with tenant_context(tenant_a.org.pk), caplog.at_level(logging.INFO, logger="darkroom.tasks.core"):
            # when: a task is published and run by a real worker
            result = echo_context.apply_async(queue="default").get(timeout=20)
    finally:
        reset_request_id(token)
    # then: the worker ran it in the same request id and tenant, and logged the id
    assert {k: result[k] for k in ("request_id", "tenant_id")} == {
        "request_id": "req-celery-42",
        "tenant_id": tenant_a.org.pk,
    }
    logged = [r for r in caplog.records if r.name == "darkroom.tasks.core"]
    assert logged and logged[-1].request_id == "req-celery-42"


def test_the_worker_replaces_a_database_connection_the_server_ended(worker):
    # given: the worker's connection, whose backend the server then ends (as a restart would)
    first = echo_context.apply_async(queue="default").get(timeout=20)["db_backend_pid"]
    terminate_backend(first)
    # when: the next task runs on that worker
    second = echo_context.apply_async(queue="default").get(timeout=20)["db_backend_pid"]
    # then: it ran, on a new connection
    assert second != first
