"""The HTTP boundary of the adapters: one small transport interface, a urllib implementation.

Adapters never open sockets themselves; they hand an `HttpRequest` to an `HttpTransport`. The
default `UrllibTransport` uses the standard library (TLS verified with the system trust store),
refuses redirects (a redirect could lead a certificate fetch or an API call off the host we
checked) and caps response sizes. Tests inject a transport that asserts the exact request an
adapter makes (URL, headers including idempotency keys, body) and answers like the provider.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from apps.payments.providers.base import ProviderError

DEFAULT_MAX_RESPONSE_BYTES = 2 * 1024 * 1024
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
# Methods that change nothing at the provider, and the headers under which the providers replay
# the first answer to a repeated write (Stripe, PayPal, Flutterwave), whatever it did.
READ_METHODS = frozenset({"GET", "HEAD"})
IDEMPOTENCY_HEADERS = frozenset({"idempotency-key", "paypal-request-id", "x-idempotency-key"})


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


class TransportError(Exception):
    """The request did not get an HTTP response (DNS, connect, TLS, timeout, oversize)."""


class HttpTransport(Protocol):
    def send(self, request: HttpRequest, *, timeout: float) -> HttpResponse:
        """Send one request and return the response, whatever its status. Raises TransportError."""
        ...


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None  # the 3xx response is returned to the caller as is


class UrllibTransport:
    """`HttpTransport` on urllib.request: verified TLS, no redirects, bounded response size."""

    def __init__(self, *, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        self.max_response_bytes = max_response_bytes
        self._opener = urllib.request.build_opener(_RefuseRedirects())

    def send(self, request: HttpRequest, *, timeout: float) -> HttpResponse:
        if not request.url.startswith(("https://", "http://")):
            raise TransportError(f"refusing non-HTTP URL {request.url!r}")
        req = urllib.request.Request(  # noqa: S310 (scheme checked above)
            request.url, data=request.body, headers=dict(request.headers), method=request.method.upper()
        )
        try:
            with self._opener.open(req, timeout=timeout) as response:
                return HttpResponse(response.status, dict(response.headers.items()), self._read(response))
        except urllib.error.HTTPError as exc:
            with exc:
                return HttpResponse(exc.code, dict(exc.headers.items()), self._read(exc))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise TransportError(f"{request.method} {request.url}: {exc}") from exc

    def _read(self, response: Any) -> bytes:
        data: bytes = response.read(self.max_response_bytes + 1)
        if len(data) > self.max_response_bytes:
            raise TransportError(f"response larger than {self.max_response_bytes} bytes")
        return data


class JsonApi:
    """JSON-over-HTTP calls for one provider, with errors mapped to ProviderError."""

    def __init__(self, *, provider: str, transport: HttpTransport, timeout: float) -> None:
        self.provider = provider
        self.transport = transport
        self.timeout = timeout

    def call(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        json_body: Mapping[str, Any] | None = None,
        form_body: bytes | None = None,
        replay_safe: bool | None = None,
    ) -> dict[str, Any]:
        """Send and return the decoded JSON object (numbers with decimals as Decimal).

        Raises ProviderError: retryable for transport failures, 408/409/425/429 and 5xx, and for
        a 2xx whose body is not a JSON object when the call is `replay_safe`: the provider did
        what was asked (a refund, say) and only its answer is unreadable, so the same call again
        must be allowed to read it. `replay_safe` defaults to True for a read (GET, HEAD) and for
        a write carrying an idempotency key (`IDEMPOTENCY_HEADERS`); for another write such an
        answer is final, since a retry could do the thing twice.
        """
        all_headers = {"Accept": "application/json", **headers}
        body: bytes | None = form_body
        if json_body is not None:
            body = json.dumps(json_body, separators=(",", ":")).encode()
            all_headers["Content-Type"] = "application/json"
        try:
            response = self.transport.send(HttpRequest(method, url, all_headers, body), timeout=self.timeout)
        except TransportError as exc:
            raise ProviderError(f"{self.provider}: {exc}", provider=self.provider, retryable=True) from exc
        if not 200 <= response.status < 300:
            raise ProviderError(
                f"{self.provider}: {method} {url} answered {response.status}: {response.body[:500]!r}",
                provider=self.provider,
                retryable=response.status in RETRYABLE_STATUSES or response.status >= 500,
                http_status=response.status,
                response_body=response.body[:4000],
            )
        if replay_safe is None:
            replay_safe = method.upper() in READ_METHODS or any(k.lower() in IDEMPOTENCY_HEADERS for k in headers)
        try:
            decoded = json.loads(response.body or b"{}", parse_float=Decimal)
        except ValueError as exc:
            raise self._unreadable(method, url, response, "non-JSON", retryable=replay_safe) from exc
        if not isinstance(decoded, dict):
            raise self._unreadable(method, url, response, "a non-object", retryable=replay_safe)
        return decoded

    def _unreadable(
        self, method: str, url: str, response: HttpResponse, what: str, *, retryable: bool
    ) -> ProviderError:
        return ProviderError(
            f"{self.provider}: {method} {url} answered {response.status} with {what}",
            provider=self.provider,
            retryable=retryable,
            http_status=response.status,
            response_body=response.body[:4000],
        )
