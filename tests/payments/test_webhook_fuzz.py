"""Signed but strange deliveries never crash the webhook endpoint.

A provider retries a delivery that got a 5xx for days, so a body the adapter does not expect must
get a 400 problem (and nothing recorded) or, when it is well formed enough to record, a 200. Here
hypothesis builds such bodies from each provider's real event shape, with any member replaced by
another JSON value (a list for an object, a number for a string, null, a missing key, a huge
integer...), signs them with the provider's real scheme and POSTs them through the endpoint.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.payments import signing_helpers as sign
from tests.payments.test_webhook_endpoint import post, recorded, sandbox_body

pytestmark = pytest.mark.django_db(transaction=True)

JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["", "paid", "successful", "COMPLETED", "EUR", "eur", "9.00", "-1", "1e400", str(uuid.uuid4())]),
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a member of a JSON document (object keys and list indexes)."""
    paths: list[tuple[Any, ...]] = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            paths += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            paths += _paths(child, (*prefix, index))
    return paths


@st.composite
def mutated(draw: st.DrawFn, valid_body: Callable[[], bytes]) -> bytes:
    """A provider's valid event with one to three members replaced by any JSON value, or removed."""
    document = json.loads(valid_body())
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON_VALUES)
    return json.dumps(document).encode()


def _stripe() -> bytes:
    return sign.stripe_session_completed(checkout_id=str(uuid.uuid4()), amount_minor=900)


def _flutterwave() -> bytes:
    return sign.flutterwave_charge_completed(checkout_id=str(uuid.uuid4()))


def _paypal() -> bytes:
    return sign.paypal_capture_completed(checkout_id=str(uuid.uuid4()))


PAYPAL_KEY = sign.paypal_key()
PROVIDERS: dict[str, tuple[Callable[[], bytes], Callable[[bytes], dict[str, str]]]] = {
    "sandbox": (sandbox_body, sign.sandbox_headers),
    "stripe": (_stripe, sign.stripe_headers),
    "flutterwave": (_flutterwave, sign.flutterwave_headers),
    "paypal": (_paypal, lambda body: sign.paypal_headers(body, PAYPAL_KEY)),
}


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_signed_strange_bodies_get_200_or_a_400_problem_never_a_5xx(provider: str) -> None:
    valid_body, headers_for = PROVIDERS[provider]
    if provider == "paypal":
        sign.paypal_trust(PAYPAL_KEY)

    before = recorded()

    @settings(
        max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")),
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(body=mutated(valid_body))
    def deliver(body: bytes) -> None:
        response = post(provider, body, headers_for(body))
        assert response.status_code in (200, 400), (response.status_code, body, response.content[:300])
        nonlocal before
        if response.status_code == 400:
            assert response["Content-Type"] == "application/problem+json"
            assert recorded() == before  # a refused delivery records nothing (no event, no message)
        before = recorded()

    deliver()


@pytest.mark.parametrize("bad", ['"\\u0000"', '"evt\\u0000x"', '"\\ud800"'])
def test_an_event_id_postgresql_cannot_store_is_a_400_and_records_nothing(bad: str) -> None:
    """Found by the fuzzer above: a NUL in the event id was a 500 at recording."""
    # given: a signed Stripe event whose id holds a NUL or a lone surrogate
    document = json.loads(_stripe())
    body = json.dumps(document).replace(json.dumps(document["id"]), bad, 1).encode()
    # when: it is delivered
    response = post("stripe", body, sign.stripe_headers(body))
    # then: a 400 problem, and nothing is recorded
    assert (response.status_code, response["Content-Type"]) == (400, "application/problem+json")
    assert response.json()["type"] == "/problems/malformed-webhook"
    assert recorded() == (0, 0)


def test_a_nul_elsewhere_in_a_signed_event_is_recorded() -> None:
    """Only the identifiers reach text columns; the body is kept as bytes, so a NUL in, say,
    metadata must not cost the studio its payment (a 4xx is redelivered for days, then dropped)."""
    # given: a signed Stripe event with a NUL and a lone surrogate in its metadata
    document = json.loads(_stripe())
    document["data"]["object"]["metadata"]["note"] = "a\u0000b"
    body = json.dumps(document).replace('"a\\u0000b"', '"a\\u0000b\\ud800"').encode()
    # when: it is delivered
    response = post("stripe", body, sign.stripe_headers(body))
    # then: recorded once
    assert response.status_code == 200
    assert recorded() == (1, 1)
