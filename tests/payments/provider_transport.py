"""Test doubles for the adapters' HTTP boundary: a scripted transport that records requests.

This replaces the network (providers' APIs), not Postgres or Redis: tests assert the exact
request an adapter makes and answer the way the provider documents.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from apps.payments.providers.http import HttpRequest, HttpResponse


class JsonHandler(BaseHTTPRequestHandler):
    """Base for fake provider servers on 127.0.0.1: JSON answers, no access log on stderr."""

    def send_json(self, status: int, payload: Mapping[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free port of 127.0.0.1 in a thread; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def json_response(payload: Mapping[str, Any], status: int = 200) -> HttpResponse:
    return HttpResponse(status, {"Content-Type": "application/json"}, json.dumps(payload).encode())


class ScriptedTransport:
    """Answers each request with the next scripted response (or raises a scripted exception)."""

    def __init__(self, *responses: HttpResponse | Exception) -> None:
        self.responses = list(responses)
        self.requests: list[HttpRequest] = []

    def send(self, request: HttpRequest, *, timeout: float) -> HttpResponse:
        self.requests.append(request)
        if not self.responses:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        response = self.responses.pop(0)
        if isinstance(response, Exception):
            raise response
        return response


def json_body(request: HttpRequest) -> Any:
    assert request.body is not None
    return json.loads(request.body)


def form_body(request: HttpRequest) -> dict[str, list[str]]:
    assert request.body is not None
    return parse_qs(request.body.decode(), keep_blank_values=True)


def query(request: HttpRequest) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.url).query)


def path(request: HttpRequest) -> str:
    parts = urlsplit(request.url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


T = TypeVar("T", bound=ScriptedTransport)


def use_stripe(monkeypatch: Any, transport: T) -> T:
    """Make the registry's Stripe adapter (test keys, no network retries) talk through `transport`
    for this test; returns it."""
    from apps.payments.providers import registry
    from apps.payments.providers.stripe import StripeProvider

    adapter = StripeProvider(
        secret_key="sk_test_local_xxxxxxxx", webhook_secrets=["whsec_local"], transport=transport, max_network_retries=0
    )
    monkeypatch.setitem(registry._instances, "stripe", adapter)
    return transport


def stripe_session_response(session_id: str, status: str = "open") -> HttpResponse:
    """Stripe's answer naming a Checkout Session in `status`."""
    return json_response(
        {"id": session_id, "object": "checkout.session", "url": "https://checkout.stripe.com/c/pay/x", "status": status}
    )
