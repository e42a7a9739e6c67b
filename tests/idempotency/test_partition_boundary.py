"""A key stays unique across the midnight partition boundary.

The clock is controlled (`django.utils.timezone.now`, which the key store uses) so the first
request's key row lands in yesterday's day partition and its retry in today's time.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest
from django.db import connection

from apps.idempotency.models import IdempotencyKey
from apps.idempotency.protocol import request_fingerprint
from apps.idempotency.sealing import seal
from apps.tenancy.context import tenant_context
from tests.idempotency.conftest import (
    URL,
    day_partition,
    effects,
    partition_of,
    post,
    run_in_thread,
    session_client,
    today_midnight,
)

pytestmark = pytest.mark.django_db(transaction=True)

ONE_SECOND = dt.timedelta(seconds=1)


def test_retry_after_midnight_replays_request_stored_before_midnight(tenant_a, owner_client, clock):
    # given: a request completed at 23:59:59 yesterday
    midnight = today_midnight()
    key = str(uuid.uuid4())
    clock.set(midnight - ONE_SECOND)
    first = post(owner_client, '{"name": "late"}', key=key)
    assert first.status_code == 201
    assert partition_of(key) == [day_partition(midnight - ONE_SECOND)]
    after_first = effects(tenant_a.org.pk)
    # when: it is retried at 00:00:01 today
    clock.set(midnight + ONE_SECOND)
    retry = post(owner_client, '{"name": "late"}', key=key)
    # then: the stored response is replayed; no second effect, no key row in today's partition
    assert retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert effects(tenant_a.org.pk) == after_first
    assert partition_of(key) == [day_partition(midnight - ONE_SECOND)]


def test_key_row_placed_in_yesterdays_partition_is_found_today(tenant_a, owner_client):
    # given: a key row written at 23:59:59 yesterday (in yesterday's partition) with a marker body
    midnight = today_midnight()
    key = str(uuid.uuid4())
    with tenant_context(tenant_a.org.pk):
        IdempotencyKey.objects.create(
            tenant=tenant_a.org,
            caller=f"user:{tenant_a.owner.pk}",
            key=key,
            fingerprint=request_fingerprint(method="POST", path=URL, body=b'{"name":"late"}'),
            method="POST",
            path=URL,
            response_status=201,
            response_body=seal(b'{"stored":"yesterday"}'),
            response_content_type="application/json",
            created_at=midnight - ONE_SECOND,
        )
    assert partition_of(key) == [day_partition(midnight - ONE_SECOND)]
    before = effects(tenant_a.org.pk)
    # when: the same request arrives now (today)
    retry = post(owner_client, '{"name": "late"}', key=key)
    # then: exactly the stored bytes are replayed and nothing runs
    assert retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == b'{"stored":"yesterday"}'
    assert effects(tenant_a.org.pk) == before


def test_request_after_midnight_waits_for_one_in_flight_before_midnight(tenant_a, owner_client, clock, gate):
    # given: a request started at 23:59:59.5 yesterday, paused inside its view
    midnight = today_midnight()
    key = str(uuid.uuid4())
    before = effects(tenant_a.org.pk)
    first_client = session_client(owner_client)

    def late_request():
        clock.set_for_this_thread(midnight - ONE_SECOND / 2)
        return post(first_client, '{"name": "straddle"}', key=key)

    thread, out = run_in_thread(late_request)
    assert gate.entered.wait(timeout=30)
    # when: the same request arrives at 00:00:00.5 today, while the first is in flight
    clock.set_for_this_thread(midnight + ONE_SECOND / 2)
    concurrent = post(owner_client, '{"name": "straddle"}', key=key)
    # then: it does not run beside the first (its key row would land in another partition): 409
    assert concurrent.status_code == 409
    assert "Retry-After" in concurrent
    # when: the first completes and the second is retried
    gate.release.set()
    thread.join(timeout=60)
    (first,) = out
    assert first.status_code == 201
    retry = post(owner_client, '{"name": "straddle"}', key=key)
    # then: it replays; one effect, one row, in yesterday's partition
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert effects(tenant_a.org.pk).api_keys == before.api_keys + 1
    assert partition_of(key) == [day_partition(midnight - ONE_SECOND)]


@pytest.mark.slow
def test_concurrent_requests_straddling_midnight_have_one_effect(tenant_a, owner_client, clock):
    # given: twenty copies of one request, half on each side of midnight
    midnight = today_midnight()
    key = str(uuid.uuid4())
    before = effects(tenant_a.org.pk)
    count = 20
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def worker(index: int) -> None:
        try:
            offset = dt.timedelta(milliseconds=1 + index * 10)
            clock.set_for_this_thread(midnight - offset if index % 2 else midnight + offset)
            client = session_client(owner_client)
            barrier.wait(timeout=60)
            results[index] = post(client, '{"name": "midnight"}', key=key)
        except Exception as exc:  # noqa: BLE001 - handed to the asserting thread
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    # when: they all run at once
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # then: one original, the rest replays or 409s, never an error; one effect, one key row
    assert all(hasattr(r, "status_code") for r in results), results
    assert {r.status_code for r in results} <= {201, 409}
    originals = [r for r in results if r.status_code == 201 and "Idempotent-Replayed" not in r]
    assert len(originals) == 1
    assert effects(tenant_a.org.pk).api_keys == before.api_keys + 1
    assert len(partition_of(key)) == 1
