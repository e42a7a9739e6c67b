"""Outbox test plumbing: a real effect table, broker queue purges, Redis keys, subprocess env."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, connections, transaction
from django_redis import get_redis_connection

from apps.outbox.models import OutboxMessage
from apps.outbox.services import outbox_publish
from apps.tenancy.context import tenant_context
from tests.fixtures import purge_queues
from tests.outbox.consumers import EFFECT_TABLE, EFFECT_TOPIC, rkey

QUEUES = [*settings.DARKROOM_QUEUES, "outbox.bench"]


@pytest.fixture(autouse=True)
def _clean_broker_and_redis() -> Iterator[None]:
    def clean() -> None:
        purge_queues(QUEUES)
        client = get_redis_connection("default")
        for key in client.scan_iter(match=rkey("*")):
            client.delete(key)

    clean()
    yield
    clean()


@pytest.fixture
def effect_table(transactional_db: None) -> Iterator[str]:
    """A plain table the test consumer writes its effect to (no unique key: duplicates show)."""
    runtime = settings.DATABASES["default"]["USER"]
    with connections["owner"].cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {EFFECT_TABLE} (id bigserial PRIMARY KEY, message_id uuid NOT NULL, "
            "tenant_ref bigint, request_id text, pid int, created_at timestamptz NOT NULL DEFAULT now())"
        )
        cursor.execute(f"GRANT SELECT, INSERT ON {EFFECT_TABLE} TO {runtime}")
        cursor.execute(f"GRANT USAGE ON SEQUENCE {EFFECT_TABLE}_id_seq TO {runtime}")
    yield EFFECT_TABLE
    with connections["owner"].cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {EFFECT_TABLE}")


def effects() -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT message_id::text, tenant_ref, request_id, pid FROM {EFFECT_TABLE} ORDER BY id")
        return list(cursor.fetchall())


@pytest.fixture
def publish() -> Callable[..., list[OutboxMessage]]:
    """Commit `count` messages for a tenant (or platform, tenant_id=None), one transaction."""

    def make(
        *, tenant_id: int | None, count: int = 1, topic: str = EFFECT_TOPIC, payload: dict[str, Any] | None = None
    ) -> list[OutboxMessage]:
        with tenant_context(tenant_id), transaction.atomic():
            return [
                outbox_publish(
                    topic=topic,
                    tenant_id=tenant_id,
                    aggregate_type="test",
                    aggregate_id=str(i),
                    payload={"n": i, **(payload or {})},
                )
                for i in range(count)
            ]

    return make


def subprocess_env() -> dict[str, str]:
    """Environment for a child process that uses this test database and this test's Redis keys."""

    def url(alias: str) -> str:
        db = connections[alias].settings_dict
        return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"

    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": url("default"),
        "DATABASE_OWNER_URL": url("owner"),
        "PYTHONUNBUFFERED": "1",
    }
