"""The Idempotency-Key protocol over HTTP, on a real endpoint and real Postgres.

Effect under test: POST /api/v1/tenancy/api-keys issues an API key (+ audit row).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from unittest import mock

import pytest

from apps.core.partitions import ensure_partitions
from apps.idempotency.models import TABLE, IdempotencyKey
from apps.idempotency.protocol import lock_id, request_fingerprint
from apps.idempotency.sealing import unseal
from apps.tenancy import apis
from apps.tenancy.context import tenant_context
from apps.tenancy.models import ApiKey
from tests.idempotency.conftest import URL, effects, partition_of, post, run_in_thread, session_client

pytestmark = pytest.mark.django_db(transaction=True)


def _problem(response, status: int, slug: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == f"/problems/{slug}"
    assert body["status"] == status
    return body


def test_missing_key_is_400_problem_and_writes_nothing(tenant_a, owner_client):
    # given: a signed-in owner
    before = effects(tenant_a.org.pk)
    # when: they post without an Idempotency-Key
    response = post(owner_client, '{"name": "ci"}', key=None)
    # then: 400 problem naming the header, and no effect
    body = _problem(response, 400, "idempotency-key-missing")
    assert "Idempotency-Key" in body["detail"]
    assert effects(tenant_a.org.pk) == before


@pytest.mark.parametrize(
    ("key", "status"),
    [("k" * 255, 201), ("k" * 256, 400), ("", 400), ('""', 400), ("caf\u00e9", 400)],
    ids=["255-ok", "256-too-long", "empty", "empty-sf-string", "non-ascii"],
)
def test_key_length_and_charset(tenant_a, owner_client, key, status):
    # given: a signed-in owner
    before = effects(tenant_a.org.pk)
    # when: they post with a key at or past the limits
    response = post(owner_client, '{"name": "ci"}', key=key)
    # then: up to 255 printable ASCII characters are accepted; anything else is a 400 problem
    if status == 400:
        body = _problem(response, 400, "idempotency-key-invalid")
        assert "Idempotency-Key" in body["detail"]
        assert effects(tenant_a.org.pk) == before
    else:
        assert response.status_code == 201
        assert effects(tenant_a.org.pk).api_keys == before.api_keys + 1


def test_completed_request_is_replayed_byte_for_byte(tenant_a, owner_client):
    # given: a completed request
    key = str(uuid.uuid4())
    first = post(owner_client, '{"name": "ci"}', key=key)
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first
    after_first = effects(tenant_a.org.pk)
    # when: the client retries it (same JSON, other key order and whitespace)
    second = post(owner_client, '{ "name" :  "ci" }', key=key)
    # then: the stored status, body bytes and content type come back, marked as a replay
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert second["Content-Type"] == first["Content-Type"] == "application/json"
    # and: no second effect
    assert effects(tenant_a.org.pk) == after_first


def test_same_key_with_another_body_is_422(tenant_a, owner_client):
    # given: a completed request
    key = str(uuid.uuid4())
    assert post(owner_client, '{"name": "ci"}', key=key).status_code == 201
    after_first = effects(tenant_a.org.pk)
    # when: the same key comes with another body
    response = post(owner_client, '{"name": "other"}', key=key)
    # then: 422 problem, and nothing new
    _problem(response, 422, "idempotency-key-reused")
    assert effects(tenant_a.org.pk) == after_first


def test_same_key_on_another_path_is_422(tenant_a, owner_client):
    # given: a completed request
    key = str(uuid.uuid4())
    assert post(owner_client, '{"name": "ci"}', key=key).status_code == 201
    # when: the same key and body come to another endpoint (a query string would be refused
    # before the key is looked at: writes take no query parameters)
    response = owner_client.post(
        "/api/v1/events", data='{"name": "ci"}', content_type="application/json", HTTP_IDEMPOTENCY_KEY=key
    )
    # then: it is another request: 422
    _problem(response, 422, "idempotency-key-reused")


def test_validation_failure_is_not_stored_and_the_key_can_be_retried(tenant_a, owner_client):
    # given: a request refused by validation (unknown field)
    key = str(uuid.uuid4())
    before = effects(tenant_a.org.pk)
    refused = post(owner_client, '{"name": "ci", "admin": true}', key=key)
    _problem(refused, 400, "validation-error")
    assert effects(tenant_a.org.pk) == before
    # when: the client fixes the body and retries with the same key
    retried = post(owner_client, '{"name": "ci"}', key=key)
    # then: it runs (no 422, no replay of the 400) and has its effect once
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried
    assert effects(tenant_a.org.pk).api_keys == before.api_keys + 1
    assert effects(tenant_a.org.pk).idempotency_rows == before.idempotency_rows + 1


def test_server_error_rolls_back_a_partial_effect_and_is_not_stored(tenant_a, owner_client):
    # given: a service that writes its effect and then fails
    key = str(uuid.uuid4())
    before = effects(tenant_a.org.pk)
    real_issue = apis.api_key_issue

    def write_then_fail(**kwargs):
        real_issue(**kwargs)
        raise RuntimeError("boom after the effect")

    # when: the request runs
    with mock.patch.object(apis, "api_key_issue", write_then_fail):
        failed = post(owner_client, '{"name": "ci"}', key=key)
    # then: 500 problem, the partial effect is rolled back and the key is not stored
    _problem(failed, 500, "internal-error")
    assert effects(tenant_a.org.pk) == before
    # and: a retry with the same key succeeds once
    assert post(owner_client, '{"name": "ci"}', key=key).status_code == 201
    assert effects(tenant_a.org.pk).api_keys == before.api_keys + 1


def test_crash_between_effect_and_key_row_leaves_neither(tenant_a, owner_client):
    # given: the key row insert fails right after the effect was written (a crash at that point)
    key = str(uuid.uuid4())
    before = effects(tenant_a.org.pk)
    with mock.patch("apps.idempotency.protocol.idempotency_key_record", side_effect=ConnectionError("killed")):
        response = post(owner_client, '{"name": "ci"}', key=key)
    # then: the effect did not commit without its key, and the client is told to retry
    _problem(response, 500, "internal-error")
    assert effects(tenant_a.org.pk) == before
    assert post(owner_client, '{"name": "ci"}', key=key).status_code == 201


def test_key_held_by_another_transaction_is_409_with_retry_after(tenant_a, owner_client, runtime_conn):
    # given: another connection holds the advisory lock of (tenant, caller, key): a request in flight
    key = str(uuid.uuid4())
    caller = f"user:{tenant_a.owner.pk}"
    runtime_conn.execute(
        "SELECT pg_advisory_xact_lock(%s)", [lock_id(tenant_id=tenant_a.org.pk, caller=caller, key=key)]
    )
    before = effects(tenant_a.org.pk)
    # when: the same key arrives
    response = post(owner_client, '{"name": "ci"}', key=key)
    # then: 409 problem with Retry-After, no effect
    _problem(response, 409, "idempotency-key-in-flight")
    assert int(response["Retry-After"]) >= 1
    assert effects(tenant_a.org.pk) == before
    # when: the other transaction ends and the client retries
    runtime_conn.rollback()
    retried = post(owner_client, '{"name": "ci"}', key=key)
    # then: it runs once
    assert retried.status_code == 201
    assert effects(tenant_a.org.pk).api_keys == before.api_keys + 1


def test_real_request_in_flight_makes_a_duplicate_409_then_replay(tenant_a, owner_client, gate):
    # given: a first request paused inside its view, holding its transaction open
    key = str(uuid.uuid4())
    before = effects(tenant_a.org.pk)
    first_client = session_client(owner_client)
    thread, out = run_in_thread(lambda: post(first_client, '{"name": "ci"}', key=key))
    assert gate.entered.wait(timeout=30)
    # when: a duplicate arrives meanwhile
    duplicate = post(owner_client, '{"name": "ci"}', key=key)
    # then: 409 with Retry-After
    _problem(duplicate, 409, "idempotency-key-in-flight")
    assert "Retry-After" in duplicate
    # when: the first completes and the duplicate is retried
    gate.release.set()
    thread.join(timeout=60)
    (first,) = out
    assert first.status_code == 201
    replay = post(owner_client, '{"name": "ci"}', key=key)
    # then: the retry is a replay of the first response, and there was one effect
    assert replay["Idempotent-Replayed"] == "true"
    assert replay.content == first.content
    assert effects(tenant_a.org.pk).api_keys == before.api_keys + 1


def test_key_is_scoped_to_tenant_and_caller(tenant_a, tenant_b, client, owner_client):
    # given: tenant A's owner completed a request with key K
    key = str(uuid.uuid4())
    assert post(owner_client, '{"name": "a"}', key=key).status_code == 201
    # when: tenant B's owner uses K with another body
    other = type(client)()
    other.force_login(tenant_b.owner)
    response = post(other, '{"name": "b"}', key=key)
    # then: it is their own key space: the request runs (no 422, no replay of A's response)
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    with tenant_context(tenant_b.org.pk):
        assert ApiKey.objects.filter(name="b").count() == 1


def test_key_stored_past_retention_is_not_replayed(tenant_a, owner_client):
    # given: a stored key from 73 hours ago (its day partition not yet dropped)
    key = str(uuid.uuid4())
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=73)
    ensure_partitions(table=TABLE, interval="day", around=old, back=0, ahead=0)
    with tenant_context(tenant_a.org.pk):
        IdempotencyKey.objects.create(
            tenant=tenant_a.org,
            caller=f"user:{tenant_a.owner.pk}",
            key=key,
            fingerprint=request_fingerprint(method="POST", path=URL, body=b'{"name":"other"}'),
            method="POST",
            path=URL,
            response_status=201,
            response_body=b'{"old":true}',
            response_content_type="application/json",
            created_at=old,
        )
    before = effects(tenant_a.org.pk)
    # when: the key is used again with another body
    response = post(owner_client, '{"name": "ci"}', key=key)
    # then: the expired row neither conflicts nor replays: the request runs
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    assert effects(tenant_a.org.pk).api_keys == before.api_keys + 1
    assert len(partition_of(key)) == 2


def test_read_requests_need_no_key(tenant_a):
    # when: an integrator reads without an Idempotency-Key
    response = tenant_a.client().get("/api/v1/tenancy/whoami")
    # then: no protocol applies
    assert response.status_code == 200


def test_unimplemented_method_is_405_not_a_key_error(tenant_a):
    # when: a mutating method the view does not implement arrives without a key
    response = tenant_a.client().post("/api/v1/tenancy/whoami", {}, format="json")
    # then: the client learns the method is wrong, not that a key is missing
    _problem(response, 405, "method-not-allowed")


def test_stored_row_carries_the_fingerprint_and_request_id(tenant_a, owner_client):
    # given / when: a completed request with a request id
    key = str(uuid.uuid4())
    response = post(owner_client, '{"name":"ci"}', key=key, HTTP_X_REQUEST_ID="req-idem-1")
    assert response.status_code == 201
    # then: the row stores what a replay and an operator need
    with tenant_context(tenant_a.org.pk):
        row = IdempotencyKey.objects.get(key=key)
    assert row.caller == f"user:{tenant_a.owner.pk}"
    assert row.fingerprint == request_fingerprint(method="POST", path=URL, body=b'{ "name": "ci" }')
    assert unseal(bytes(row.response_body)) == response.content
    assert json.loads(unseal(bytes(row.response_body)))["name"] == "ci"
    assert (row.method, row.path, row.response_status, row.request_id) == ("POST", URL, 201, "req-idem-1")


def test_stored_response_body_is_sealed_at_rest_and_replays_in_clear(tenant_a, client):
    # given: the owner issues an API key (a secret shown once) under an Idempotency-Key
    from apps.idempotency.models import IdempotencyKey
    from apps.tenancy.context import system_context

    client.force_login(tenant_a.owner)
    first = client.post(
        "/api/v1/tenancy/api-keys", {"name": "ci"}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="seal-1"
    )
    secret = first.json()["api_key"].encode()
    # then: the stored row does not contain the secret ...
    with system_context("test: inspect stored replay"):
        stored = bytes(IdempotencyKey.objects.get(key="seal-1").response_body)
    assert secret not in stored and first.content not in stored
    # ... and a retry still replays the original bytes
    retry = client.post(
        "/api/v1/tenancy/api-keys", {"name": "ci"}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="seal-1"
    )
    assert retry.content == first.content and retry["Idempotent-Replayed"] == "true"
