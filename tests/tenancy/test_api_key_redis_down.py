"""API keys while Redis (the key cache) is unreachable: PostgreSQL decides.

A key is resolved from PostgreSQL when the cache cannot be read (a revoked key is refused as
ever), the failure is logged and counted, and a revocation whose mark could not be written at
commit has it written by its outbox message once Redis is back, so an "active" entry cached
before the revocation does not authenticate the key again.

Redis is made unreachable by pointing the cache at a port nothing listens on (127.0.0.1:1), as
the shared Redis server must stay up for everyone else.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection

from apps.ops.metrics import PROCESS_REGISTRY
from apps.outbox.models import InboxEntry, OutboxMessage
from apps.tenancy import selectors
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import ApiKey
from apps.tenancy.selectors import API_KEY_REVOKED, api_key_cache_key, api_key_resolve
from apps.tenancy.services import TOPIC_API_KEY_REVOKED, api_key_revoke, hash_api_key
from tasks.tenancy import API_KEY_REVOKED_CONSUMER, mark_api_key_revoked
from tests.commerce.helpers import drain_outbox

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _cache_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts (and leaves the process) with no recent cache failure remembered."""
    monkeypatch.setattr(selectors, "_cache_failed_at", None)


@pytest.fixture
def redis_down(settings: Any) -> Any:
    """Call it to make the cache unreachable; `.restore()` brings the real one back."""
    reachable = settings.CACHES

    class Switch:
        def __call__(self) -> None:
            default = reachable["default"]
            options = {**default.get("OPTIONS", {}), "SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5}
            settings.CACHES = {"default": {**default, "LOCATION": "redis://127.0.0.1:1/0", "OPTIONS": options}}

        def restore(self) -> None:
            settings.CACHES = reachable

    return Switch()


def failures(operation: str) -> float:
    value = PROCESS_REGISTRY.get_sample_value("darkroom_api_key_cache_failures_total", {"operation": operation})
    return value or 0.0


def test_a_key_authenticates_from_postgres_while_redis_is_unreachable(tenant_a, redis_down, caplog):
    # given: Redis is unreachable
    redis_down()
    before = failures("read")
    # when: an integrator calls the API with its key
    with caplog.at_level(logging.WARNING, logger="darkroom.tenancy.api_keys"):
        response = tenant_a.client().get("/api/v1/tenancy/whoami")
    # then: PostgreSQL authenticates it, and the fallback is logged (with the error's class) and counted
    assert response.status_code == 200, response.content
    assert response.json()["tenant_id"] == tenant_a.org.pk
    [record] = [r for r in caplog.records if r.name == "darkroom.tenancy.api_keys"]
    assert record.levelno == logging.WARNING and record.error_class == "ConnectionError"
    assert record.operation == "read"
    assert failures("read") == before + 1


def test_an_outage_costs_one_cache_attempt_per_cache_lifetime_not_one_per_request(tenant_a, redis_down):
    # given: Redis is unreachable, and a request found out
    redis_down()
    before = failures("read")
    assert tenant_a.client().get("/api/v1/tenancy/whoami").status_code == 200
    # when: more requests come within API_KEY_CACHE_SECONDS
    for _ in range(3):
        assert tenant_a.client().get("/api/v1/tenancy/whoami").status_code == 200
    # then: they did not wait for Redis again (one failed read in all)
    assert failures("read") == before + 1


def test_an_unknown_key_is_refused_while_redis_is_unreachable(client, redis_down):
    redis_down()
    response = client.get("/api/v1/tenancy/whoami", HTTP_AUTHORIZATION="Bearer drk_nope_nope")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"


def test_a_write_through_the_api_works_while_redis_is_unreachable(tenant_a, redis_down):
    # given: Redis is unreachable (the key cache and the rate limiter both)
    redis_down()
    client, key = tenant_a.client(), str(uuid.uuid4())
    # when: an integrator creates a ledger account (authentication, rate limit, Idempotency-Key,
    # write), and retries it
    created = client.post("/api/v1/ledger/accounts", {"currency": "EUR"}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    replayed = client.post("/api/v1/ledger/accounts", {"currency": "EUR"}, format="json", HTTP_IDEMPOTENCY_KEY=key)
    # then: it is served, and the retry is the stored answer
    assert created.status_code == 201, created.content
    assert replayed.status_code == 201 and replayed["Idempotent-Replayed"] == "true"
    assert replayed.json() == created.json()


def test_a_key_revoked_while_redis_is_unreachable_is_refused(
    tenant_a, redis_down, django_capture_on_commit_callbacks, caplog
):
    # given: a key cached as active, then Redis becomes unreachable
    resolved = api_key_resolve(raw_key=tenant_a.api_key)
    assert resolved is not None
    redis_down()
    before = failures("revoke")
    # when: the key is revoked (its revoked mark cannot be written when the revocation commits)
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True):
        assert api_key_revoke(tenant=tenant_a.org, api_key_id=resolved.api_key_id)
    # then: the revocation stands (no error), the lost mark is logged and counted
    with system_context("test"):
        assert ApiKey.objects.get(pk=resolved.api_key_id).revoked_at is not None
    assert failures("revoke") == before + 1
    assert any(getattr(r, "operation", None) == "revoke" for r in caplog.records)
    # and: the key is refused from PostgreSQL
    response = tenant_a.client().get("/api/v1/tenancy/whoami")
    assert response.status_code == 401
    assert api_key_resolve(raw_key=tenant_a.api_key) is None


@pytest.mark.django_db(transaction=True)
def test_a_stale_active_entry_is_overwritten_by_the_revocations_outbox_message(tenant_a, redis_down):
    # given: a key cached as active in Redis
    resolved = api_key_resolve(raw_key=tenant_a.api_key)
    assert resolved is not None
    cache_key = api_key_cache_key(hash_api_key(tenant_a.api_key))
    # and: Redis unreachable while its revocation commits (the mark written at commit is lost)
    redis_down()
    assert api_key_revoke(tenant=tenant_a.org, api_key_id=resolved.api_key_id)
    # when: Redis is back with the entry cached before the revocation still in it, as another web
    # process (one that never saw Redis fail) reads it
    redis_down.restore()
    selectors._cache_failed_at = None
    assert cache.get(cache_key) == [resolved.api_key_id, tenant_a.org.pk, resolved.name]
    # and: the revocation's outbox message is consumed (relay and worker)
    assert drain_outbox(topics={TOPIC_API_KEY_REVOKED}) == [TOPIC_API_KEY_REVOKED]
    # then: the stale entry is overwritten by the revoked mark, and the key is refused
    assert cache.get(cache_key) == API_KEY_REVOKED
    assert api_key_resolve(raw_key=tenant_a.api_key) is None
    assert tenant_a.client().get("/api/v1/tenancy/whoami").status_code == 401


@pytest.mark.django_db(transaction=True)
def test_the_revocation_consumer_fails_while_redis_is_down_and_records_nothing(tenant_a, redis_down):
    # given: a revoked key's outbox message, and Redis unreachable
    resolved = api_key_resolve(raw_key=tenant_a.api_key)
    assert resolved is not None
    assert api_key_revoke(tenant=tenant_a.org, api_key_id=resolved.api_key_id)
    with system_context("test"):
        message = OutboxMessage.objects.get(topic=TOPIC_API_KEY_REVOKED)
    assert message.payload == {"api_key_id": resolved.api_key_id}
    cache.set(api_key_cache_key(hash_api_key(tenant_a.api_key)), [resolved.api_key_id, tenant_a.org.pk, "x"])
    redis_down()
    # when: the consumer runs
    # then: it raises (Celery retries it; the lost-message sweep sends it again if retries run out)
    # and records no inbox row
    with pytest.raises(Exception) as raised, tenant_context(tenant_a.org.pk):
        mark_api_key_revoked.run(message_id=str(message.pk), payload=message.payload)
    assert isinstance(raised.value, mark_api_key_revoked.autoretry_for)
    assert not InboxEntry.objects.filter(consumer=API_KEY_REVOKED_CONSUMER, message_id=message.pk).exists()
    # when: Redis is back and it runs again, twice (a redelivery)
    redis_down.restore()
    for _ in range(2):
        with tenant_context(tenant_a.org.pk):
            assert mark_api_key_revoked.run(message_id=str(message.pk), payload=message.payload)
    # then: the mark is written and its inbox row recorded once
    assert cache.get(api_key_cache_key(hash_api_key(tenant_a.api_key))) == API_KEY_REVOKED
    assert InboxEntry.objects.filter(consumer=API_KEY_REVOKED_CONSUMER, message_id=message.pk).count() == 1


def test_after_a_cache_failure_this_process_checks_cached_keys_with_postgres(
    tenant_a, redis_down, django_capture_on_commit_callbacks
):
    # given: a key cached as active, revoked while Redis was unreachable (so no mark was written)
    resolved = api_key_resolve(raw_key=tenant_a.api_key)
    assert resolved is not None
    cache_key = api_key_cache_key(hash_api_key(tenant_a.api_key))
    redis_down()
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(tenant=tenant_a.org, api_key_id=resolved.api_key_id)
    # when: Redis is back before the entry expires (and before the outbox message is consumed)
    redis_down.restore()
    assert cache.get(cache_key) is not None and cache.get(cache_key) != API_KEY_REVOKED
    # then: this process, which saw Redis fail, does not trust the cached entry: the key is refused,
    # and the revoked mark overwrites the stale entry
    assert tenant_a.client().get("/api/v1/tenancy/whoami").status_code == 401
    assert cache.get(cache_key) == API_KEY_REVOKED


def test_after_a_cache_failure_active_keys_still_authenticate(tenant_a, redis_down):
    # given: Redis was unreachable for a request, and is back
    redis_down()
    assert tenant_a.client().get("/api/v1/tenancy/whoami").status_code == 200
    redis_down.restore()
    # then: the key authenticates (from PostgreSQL, until the cache is trusted again)
    assert tenant_a.client().get("/api/v1/tenancy/whoami").status_code == 200
    # and: once the cache is trusted again, it is cached as before
    selectors._cache_failed_at = None
    assert api_key_resolve(raw_key=tenant_a.api_key) is not None
    assert cache.get(api_key_cache_key(hash_api_key(tenant_a.api_key))) is not None


class _FailingWrites:
    """The cache as `api_key_resolve` sees it, with Redis going away between a read and a write."""

    def __init__(self, real: object) -> None:
        self._real = real

    def __getattr__(self, name: str) -> object:
        attribute = getattr(self._real, name)
        if name not in ("set", "add"):
            return attribute

        def write(*args: object, **kwargs: object) -> object:
            import redis

            raise redis.exceptions.ConnectionError("Connection refused")

        return write


def test_a_resolution_whose_cache_write_fails_still_authenticates(tenant_a, monkeypatch):
    # given: Redis answers the read (a miss) and fails the write that caches the resolution
    monkeypatch.setattr(selectors, "cache", _FailingWrites(selectors.cache))
    before = failures("write")
    # when / then: the key is resolved from PostgreSQL all the same, and the lost write counted
    resolved = api_key_resolve(raw_key=tenant_a.api_key)
    assert resolved is not None and resolved.tenant_id == tenant_a.org.pk
    assert failures("write") == before + 1


def test_the_metric_is_exported_from_zero(client):
    body = client.get("/metrics").content.decode()
    for operation in ("read", "write", "revoke"):
        assert f'darkroom_api_key_cache_failures_total{{operation="{operation}"}}' in body


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """The URL of a "Redis" that accepts connections and never answers (a hung or partitioned
    server, where a refused connection would fail at once)."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for peer in accepted:
        peer.close()
    server.close()


@pytest.mark.django_db(transaction=True)
def test_a_redis_that_never_answers_delays_an_api_request_boundedly(tenant_a, settings, silent_redis):
    # given: the cache as configured (redis-py's own 5 s socket timeouts), pointed at a Redis that
    # never answers
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": silent_redis}}
    answers: list[int] = []

    def call() -> None:
        try:
            answers.append(tenant_a.client().get("/api/v1/tenancy/whoami").status_code)
        finally:
            connection.close()

    # when: an integrator calls the API
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout=20)
    # then: it is answered (from PostgreSQL) well within gunicorn's 30 s worker timeout
    assert not thread.is_alive(), "the request still waits for Redis after 20 s"
    assert answers == [200]
