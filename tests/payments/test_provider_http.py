"""The adapters' JSON-over-HTTP calls (`JsonApi`): which failures a caller may retry."""

from __future__ import annotations

import pytest

from apps.payments.providers.base import ProviderError
from apps.payments.providers.http import HttpResponse, JsonApi
from tests.payments.provider_transport import ScriptedTransport

URL = "https://api.provider.test/v1/refunds"
UNREADABLE = [b"<html>502 Bad Gateway</html>", b"[1, 2]", b'{"id": "re_1"']


def call(answer: bytes, method: str, headers: dict[str, str]) -> ProviderError:
    api = JsonApi(provider="test", transport=ScriptedTransport(HttpResponse(200, {}, answer)), timeout=1.0)
    with pytest.raises(ProviderError) as caught:
        api.call(method, URL, headers=headers, json_body={"amount": 500} if method == "POST" else None)
    return caught.value


@pytest.mark.parametrize("answer", UNREADABLE)
@pytest.mark.parametrize(
    "idempotency_header", ["Idempotency-Key", "PayPal-Request-Id", "X-Idempotency-Key", "idempotency-key"]
)
def test_an_unreadable_2xx_answer_to_a_write_with_an_idempotency_key_is_retryable(answer, idempotency_header):
    # given: the provider did the write (2xx) but its answer cannot be read
    # when / then: the caller may send it again: the key makes the provider replay its answer
    error = call(answer, "POST", {idempotency_header: "refund-7"})
    assert (error.retryable, error.http_status) == (True, 200)


@pytest.mark.parametrize("answer", UNREADABLE)
def test_an_unreadable_2xx_answer_to_a_read_is_retryable(answer):
    assert call(answer, "GET", {}).retryable is True


@pytest.mark.parametrize("answer", UNREADABLE)
def test_an_unreadable_2xx_answer_to_a_write_without_a_key_is_final(answer):
    # a retry could do the write twice: the answer stays final for the caller
    assert call(answer, "POST", {}).retryable is False
