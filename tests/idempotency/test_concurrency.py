"""Many copies of one request at once: one effect, the rest replays or 409s, never a 500."""

from __future__ import annotations

import threading
import uuid

import pytest
from django.db import connection

from tests.idempotency.conftest import effects, partition_of, post, session_client

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 50


def _fire(clients, key: str, body: str) -> list:
    barrier = threading.Barrier(len(clients))
    results: list = [None] * len(clients)

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=60)
            results[index] = post(clients[index], body, key=key)
        except Exception as exc:  # noqa: BLE001 - handed to the asserting thread
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


@pytest.mark.slow
def test_fifty_concurrent_requests_with_one_key_have_one_effect(tenant_a, owner_client):
    # given: fifty clients of one signed-in owner, one key and one body
    key = str(uuid.uuid4())
    before = effects(tenant_a.org.pk)
    clients = [session_client(owner_client) for _ in range(THREADS)]
    # when: they all post at once, each on its own connection
    results = _fire(clients, key, '{"name": "burst"}')
    # then: every request got an answer, none a 500 or another error
    assert not [r for r in results if not hasattr(r, "status_code")], results
    statuses = sorted(r.status_code for r in results)
    assert set(statuses) <= {201, 409}, statuses
    originals = [r for r in results if r.status_code == 201 and "Idempotent-Replayed" not in r]
    replays = [r for r in results if r.status_code == 201 and r.get("Idempotent-Replayed") == "true"]
    conflicts = [r for r in results if r.status_code == 409]
    assert len(originals) == 1
    assert len(originals) + len(replays) + len(conflicts) == THREADS
    # and: replays carry the original bytes; conflicts say when to retry
    assert all(r.content == originals[0].content for r in replays)
    assert all(r["Retry-After"] and r.json()["type"] == "/problems/idempotency-key-in-flight" for r in conflicts)
    # and: exactly one effect and one key row
    after = effects(tenant_a.org.pk)
    assert after.api_keys == before.api_keys + 1
    assert after.audits == before.audits + 1
    assert len(partition_of(key)) == 1
