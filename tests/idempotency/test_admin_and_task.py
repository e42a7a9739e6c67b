"""Operators see keys read-only in the admin; beat's maintenance task runs on the maintenance queue."""

from __future__ import annotations

import uuid

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings

from apps.core.partitions import list_partitions
from apps.idempotency.models import TABLE
from config.celery_app import app as celery_app
from tasks.idempotency import maintain_partitions
from tests.factories.tenancy import UserFactory
from tests.idempotency.conftest import post

pytestmark = pytest.mark.django_db(transaction=True)


def test_admin_lists_keys_read_only_without_bodies(tenant_a, owner_client, client):
    # given: a stored key and a platform superuser
    key = f"admin-{uuid.uuid4()}"
    created = post(owner_client, '{"name": "ci"}', key=key)
    assert created.status_code == 201
    admin_user = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin_user)
    # when: they open the key list
    listing = client.get("/admin/idempotency/idempotencykey/")
    # then: the key is listed, its stored secret-bearing body is not, and keys cannot be added
    assert listing.status_code == 200
    assert key in listing.content.decode()
    assert created.json()["api_key"] not in listing.content.decode()
    assert client.get("/admin/idempotency/idempotencykey/add/").status_code == 403


def test_beat_schedules_the_maintenance_task_on_the_maintenance_queue():
    entry = settings.CELERY_BEAT_SCHEDULE["idempotency.maintain_partitions"]
    assert entry["task"] == maintain_partitions.name == "idempotency.maintain_partitions"
    assert entry["options"]["queue"] == "maintenance"
    route = celery_app.amqp.router.route({}, maintain_partitions.name)
    assert route["queue"].name == "maintenance"


def test_maintenance_task_runs_in_a_real_worker():
    # given: a worker consuming the maintenance queue only
    with start_worker(
        celery_app,
        pool="solo",
        perform_ping_check=False,
        shutdown_timeout=60,
        queues=["maintenance"],
        loglevel="WARNING",
    ):
        # when: the task is sent as beat sends it
        result = maintain_partitions.apply_async(**settings.CELERY_BEAT_SCHEDULE[maintain_partitions.name]["options"])
        outcome = result.get(timeout=30)
    # then: it reports what it did, and today's partition exists
    assert set(outcome) == {"created", "indexed", "dropped"}
    assert any(p.name.startswith(f"{TABLE}_p") for p in list_partitions(table=TABLE, interval="day"))
