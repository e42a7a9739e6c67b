"""Deliveries whose signature headers are wrong, truncated or malformed: always a 4xx problem,
and nothing recorded (no event, no outbox message).

Hypothesis takes each provider's correctly signed delivery and breaks its headers: a header
removed, emptied or replaced by any text, the signature truncated, one character changed, signed
with another secret, a timestamp outside the replay window, a t= of thousands of digits, extra or
repeated elements, non-ASCII. The body stays the provider's valid event.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.payments import signing_helpers as sign
from tests.payments.test_webhook_endpoint import post, recorded, sandbox_body

pytestmark = pytest.mark.django_db(transaction=True)

PAYPAL_KEY = sign.paypal_key()
OTHER_KEY = sign.paypal_key()
NOW = int(time.time())  # for headers that are refused whatever the time


def _changed_at(value: str, index: int, character: str) -> str:
    """`value` with the character at `index` changed to another (or one added at its end)."""
    if index >= len(value):
        return value + character
    if character == value[index]:
        character = chr(ord(character) ^ 1)
    return value[:index] + character + value[index + 1 :]


def _stripe_like(headers_for: Callable[..., dict[str, str]], name: str) -> st.SearchStrategy[Callable[[bytes], dict]]:
    """Broken `t=...,v1=...` headers (Stripe's scheme, which the sandbox shares)."""

    def signed(**kwargs: object) -> Callable[[bytes], dict[str, str]]:
        return lambda body: headers_for(body, **kwargs)

    def signed_at(offset: int) -> Callable[[bytes], dict[str, str]]:
        return lambda body: headers_for(body, timestamp=int(time.time()) + offset)

    def rewritten(change: Callable[[str], str]) -> Callable[[bytes], dict[str, str]]:
        def headers(body: bytes) -> dict[str, str]:
            found = headers_for(body)
            found[name] = change(found[name])
            return found

        return headers

    return st.one_of(
        st.sampled_from(
            [
                signed(secret="whsec_not_the_secret"),
                signed(secret=""),
                signed_at(-400),
                signed_at(400),
                signed(timestamp=0),
                signed(timestamp=10**12),
                rewritten(lambda value: ""),
                rewritten(lambda value: value.split(",")[0]),  # no v1
                rewritten(lambda value: value.split(",")[1]),  # no t
                rewritten(lambda value: f"t={NOW},t={NOW},{value.split(',')[1]}"),
                rewritten(lambda value: f"t={'9' * 5000},{value.split(',')[1]}"),
                rewritten(lambda value: f"t={'1' * 400},{value.split(',')[1]}"),
                rewritten(lambda value: f"t=-{NOW},{value.split(',')[1]}"),
                rewritten(lambda value: "t=" + "\u0661\u0667" + "\u0660" * 8 + f",{value.split(',')[1]}"),
                rewritten(lambda value: value.replace("v1=", "v0=")),
                rewritten(lambda value: value + ",v1=" + ",v1=".join(["0" * 64] * 20)),
                rewritten(lambda value: value.upper()),
                rewritten(lambda value: value + "é"),
                rewritten(lambda value: value.replace(",", ";")),
                rewritten(lambda value: value.replace("=", "")),
            ]
        ),
        st.integers(min_value=0, max_value=200).map(
            lambda cut: rewritten(lambda value: value[: min(cut, len(value) - 1)])
        ),
        st.tuples(st.integers(min_value=0, max_value=200), st.characters(codec="latin-1")).map(
            lambda change: rewritten(lambda value: _changed_at(value, *change))
        ),
        st.text(alphabet=st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=80).map(
            lambda text: rewritten(lambda value: text)
        ),
    )


def _drop(name: str, headers_for: Callable[[bytes], dict[str, str]]) -> Callable[[bytes], dict[str, str]]:
    def headers(body: bytes) -> dict[str, str]:
        found = headers_for(body)
        found.pop(name)
        return found

    return headers


def _set(
    headers_for: Callable[[bytes], dict[str, str]], name: str, value: Callable[[str], str]
) -> Callable[[bytes], dict[str, str]]:
    def headers(body: bytes) -> dict[str, str]:
        found = headers_for(body)
        found[name] = value(found.get(name, ""))
        return found

    return headers


def _flutterwave() -> st.SearchStrategy[Callable[[bytes], dict]]:
    valid = sign.flutterwave_headers
    signature = "flutterwave-signature"
    return st.one_of(
        st.sampled_from(
            [
                lambda body: sign.flutterwave_headers(body, secret_hash="not-the-hash"),
                lambda body: sign.flutterwave_headers(body, secret_hash=""),
                _drop(signature, valid),
                _set(valid, signature, lambda value: ""),
                _set(valid, signature, lambda value: value[:-4]),
                _set(valid, signature, lambda value: base64.b64encode(b"\0" * 32).decode()),
                _set(valid, signature, lambda value: value.encode().hex()),
                # the legacy header alone, with anything but the hash
                lambda body: {"verif-hash": "not-the-hash", "Content-Type": "application/json"},
                lambda body: {"verif-hash": "", "Content-Type": "application/json"},
                # a valid legacy hash does not rescue a wrong HMAC header: the HMAC header wins
                lambda body: {**sign.flutterwave_headers(body, secret_hash="x"), "verif-hash": "darkroom-local"},
            ]
        ),
        st.text(alphabet=st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=80).map(
            lambda text: _set(valid, signature, lambda value: text)
        ),
    )


def _paypal() -> st.SearchStrategy[Callable[[bytes], dict]]:
    def valid(body: bytes) -> dict[str, str]:
        return sign.paypal_headers(body, PAYPAL_KEY)

    names = ["PAYPAL-TRANSMISSION-ID", "PAYPAL-TRANSMISSION-TIME", "PAYPAL-TRANSMISSION-SIG", "PAYPAL-CERT-URL"]
    return st.one_of(
        st.sampled_from(
            [
                lambda body: sign.paypal_headers(body, OTHER_KEY),  # signed by a key PayPal's cert does not hold
                _set(valid, "PAYPAL-AUTH-ALGO", lambda value: "SHA1withRSA"),
                _set(valid, "PAYPAL-TRANSMISSION-TIME", lambda value: "2001-01-01T00:00:00Z"),
                _set(valid, "PAYPAL-TRANSMISSION-TIME", lambda value: "9999-12-31T23:59:59-23:59"),
                _set(valid, "PAYPAL-TRANSMISSION-TIME", lambda value: "0001-01-01T00:00:00+23:59"),
                _set(valid, "PAYPAL-TRANSMISSION-TIME", lambda value: "yesterday"),
                _set(valid, "PAYPAL-TRANSMISSION-ID", lambda value: str(uuid.uuid4())),  # not what was signed
                _set(valid, "PAYPAL-TRANSMISSION-SIG", lambda value: value[:-8]),
                _set(valid, "PAYPAL-TRANSMISSION-SIG", lambda value: "%%%not-base64%%%"),
                _set(valid, "PAYPAL-TRANSMISSION-SIG", lambda value: base64.b64encode(b"\1" * 256).decode()),
                _set(valid, "PAYPAL-TRANSMISSION-SIG", lambda value: base64.b64encode(b"\1" * 3).decode()),
                _set(valid, "PAYPAL-CERT-URL", lambda value: "http://api.sandbox.paypal.com/v1/notifications/certs/x"),
                _set(valid, "PAYPAL-CERT-URL", lambda value: "https://evil.example/v1/notifications/certs/x"),
                _set(valid, "PAYPAL-CERT-URL", lambda value: "https://api.sandbox.paypal.com:8443/certs/x"),
                _set(valid, "PAYPAL-CERT-URL", lambda value: "https://user:pw@api.sandbox.paypal.com/certs/x"),
                _set(valid, "PAYPAL-CERT-URL", lambda value: "https://[::1"),
                _set(valid, "PAYPAL-CERT-URL", lambda value: "https://api.sandbox.paypal.com:99999999/x"),
            ]
        ),
        st.sampled_from(names).map(lambda name: _drop(name, valid)),
        st.tuples(
            st.sampled_from(names),
            st.text(alphabet=st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=80),
        ).map(lambda change: _set(valid, change[0], lambda value: change[1])),
    )


def _stripe_body() -> bytes:
    return sign.stripe_session_completed(checkout_id=str(uuid.uuid4()), amount_minor=900)


PROVIDERS: dict[str, tuple[Callable[[], bytes], st.SearchStrategy[Callable[[bytes], dict]]]] = {
    "stripe": (_stripe_body, _stripe_like(sign.stripe_headers, "Stripe-Signature")),
    "sandbox": (sandbox_body, _stripe_like(sign.sandbox_headers, "Sandbox-Signature")),
    "flutterwave": (lambda: sign.flutterwave_charge_completed(checkout_id=str(uuid.uuid4())), _flutterwave()),
    "paypal": (lambda: sign.paypal_capture_completed(checkout_id=str(uuid.uuid4())), _paypal()),
}


VALID_HEADERS: dict[str, Callable[[bytes], dict[str, str]]] = {
    "stripe": sign.stripe_headers,
    "sandbox": sign.sandbox_headers,
    "flutterwave": sign.flutterwave_headers,
    "paypal": lambda body: sign.paypal_headers(body, PAYPAL_KEY),
}


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_badly_signed_deliveries_get_a_4xx_problem_and_record_nothing(provider: str) -> None:
    valid_body, broken_headers = PROVIDERS[provider]
    valid_headers = VALID_HEADERS[provider]
    sign.paypal_trust(PAYPAL_KEY)

    @settings(
        max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")),
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(headers_for=broken_headers)
    def deliver(headers_for: Callable[[bytes], dict[str, str]]) -> None:
        body = valid_body()
        headers = headers_for(body)
        assume(headers != valid_headers(body))  # a "change" that changed nothing (a text drawn equal)
        before = recorded()
        response = post(provider, body, headers)
        assert 400 <= response.status_code < 500, (response.status_code, headers, response.content[:300])
        assert response["Content-Type"] == "application/problem+json"
        assert recorded() == before

    deliver()


@pytest.mark.parametrize("provider", ["stripe", "sandbox"])
@pytest.mark.parametrize("digits", [4301, 400])
def test_a_signature_timestamp_of_hundreds_of_digits_is_a_400_not_a_500(provider: str, digits: int) -> None:
    """Found by the fuzz above: `t=` with more than 4,300 digits is past what int() converts
    (ValueError, a 500), and a correctly signed one of 309 digits or more overflowed the float of
    the replay-window check (OverflowError, a 500)."""
    # given: a delivery whose header's t= is hundreds or thousands of digits long (signed with
    # the endpoint's secret where Python can write the number at all)
    body = _stripe_body() if provider == "stripe" else sandbox_body()
    name = "Stripe-Signature" if provider == "stripe" else "Sandbox-Signature"
    headers_for = sign.stripe_headers if provider == "stripe" else sign.sandbox_headers
    if digits <= 4300:
        headers = headers_for(body, timestamp=int("9" * digits))
    else:
        headers = headers_for(body)
        headers[name] = f"t={'9' * digits}," + headers[name].split(",")[1]
    # when: it is posted
    response = post(provider, body, headers)
    # then: a 400 problem, and nothing is recorded
    assert (response.status_code, response["Content-Type"]) == (400, "application/problem+json")
    assert response.json()["type"] == "/problems/invalid-webhook-signature"
    assert recorded() == (0, 0)


def test_a_signed_paypal_order_event_whose_captures_are_not_a_list_is_recorded_not_a_500() -> None:
    """Found by fuzzing CHECKOUT.ORDER.COMPLETED: `payments.captures` of a number was a TypeError
    (500) in the adapter's parsing, and PayPal redelivers a 5xx for days."""
    # given: a correctly signed order event whose purchase unit's captures is a number
    sign.paypal_trust(PAYPAL_KEY)
    event = {
        "id": f"WH-{uuid.uuid4().hex[:12]}",
        "event_type": "CHECKOUT.ORDER.COMPLETED",
        "resource": {
            "id": "5O190127TN364715T",
            "status": "COMPLETED",
            "purchase_units": [{"custom_id": str(uuid.uuid4()), "payments": {"captures": 7}}],
        },
    }
    body = json.dumps(event).encode()
    # when: it is posted
    response = post("paypal", body, sign.paypal_headers(body, PAYPAL_KEY))
    # then: recorded (a completed order without a readable capture is not paid yet)
    assert response.status_code == 200, response.content
    assert recorded() == (1, 1)
