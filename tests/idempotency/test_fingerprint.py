"""The pure parts of the protocol: header parsing, request fingerprint, lock id."""

from __future__ import annotations

import pytest

from apps.idempotency.protocol import (
    IdempotencyKeyInvalid,
    IdempotencyKeyMissing,
    canonical_body,
    key_from_request,
    lock_id,
    request_fingerprint,
)


def test_json_bodies_are_canonical_whatever_the_key_order_and_spacing():
    # given: one JSON document written two ways
    a = b'{"b": [1, 2, {"y": 1, "x": "\\u00e9"}], "a": null}'
    b = b'{"a":null,"b":[1,2,{"x":"\xc3\xa9","y":1}]}'
    # then: both have one canonical form and one fingerprint
    assert canonical_body(a) == canonical_body(b) == b'{"a":null,"b":[1,2,{"x":"\xc3\xa9","y":1}]}'
    assert request_fingerprint(method="POST", path="/p", body=a) == request_fingerprint(
        method="post", path="/p", body=b
    )


def test_different_values_methods_and_paths_change_the_fingerprint():
    base = request_fingerprint(method="POST", path="/p", body=b'{"n": 1}')
    assert request_fingerprint(method="POST", path="/p", body=b'{"n": 2}') != base
    assert request_fingerprint(method="PUT", path="/p", body=b'{"n": 1}') != base
    assert request_fingerprint(method="POST", path="/q", body=b'{"n": 1}') != base
    assert request_fingerprint(method="POST", path="/p?x=1", body=b'{"n": 1}') != base


def test_non_json_bodies_hash_their_raw_bytes():
    assert canonical_body(b"{not json") == b"{not json"
    assert canonical_body(b"\xff\xfe") == b"\xff\xfe"
    assert canonical_body(b"") == b""
    assert request_fingerprint(method="POST", path="/p", body=b"a=1&b=2") != request_fingerprint(
        method="POST", path="/p", body=b"b=2&a=1"
    )


@pytest.mark.parametrize(
    ("header", "key"),
    [("abc-123", "abc-123"), ('"abc-123"', "abc-123"), ("  spaced  ", "spaced"), ('"a \\"q\\" b"', 'a "q" b')],
)
def test_bare_tokens_and_sf_strings_name_the_same_key(header, key):
    assert key_from_request({"Idempotency-Key": header}) == key


def test_missing_and_invalid_headers_are_refused():
    with pytest.raises(IdempotencyKeyMissing):
        key_from_request({})
    for bad in ("", '""', "x" * 256, "tab\there", "\u00e9"):
        with pytest.raises(IdempotencyKeyInvalid):
            key_from_request({"Idempotency-Key": bad})
    assert key_from_request({"Idempotency-Key": "x" * 255}) == "x" * 255


def test_lock_id_is_a_signed_64_bit_value_per_scope_and_key():
    ids = {
        lock_id(tenant_id=1, caller="user:1", key="k"),
        lock_id(tenant_id=2, caller="user:1", key="k"),
        lock_id(tenant_id=1, caller="user:2", key="k"),
        lock_id(tenant_id=1, caller="user:1", key="k2"),
    }
    assert len(ids) == 4
    assert all(-(2**63) <= value < 2**63 for value in ids)
    assert lock_id(tenant_id=1, caller="user:1", key="k") == lock_id(tenant_id=1, caller="user:1", key="k")
