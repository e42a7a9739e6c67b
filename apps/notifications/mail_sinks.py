"""Local stand-ins for the mail services of the announcement tests and benchmark, so the real
mailers run over real sockets on loopback.

* `smtp_sink`: an SMTP server (aiosmtpd, a dev dependency) for Django's SMTP backend.
* `postmark_sink`: Postmark's `POST /email/batch` (token header, JSON array in, one result per
  message out), for `PostmarkMailer`.

Both accept and count mail, can refuse chosen recipients (SMTP 550; Postmark ErrorCode 406,
inactive recipient) and can stop accepting after the first `accept_at_most` messages (SMTP 421
"closing"; Postmark HTTP 503 for the whole batch), as a service that goes away mid-chunk does.
The SMTP sink can also answer each message late (`delay_seconds`), as a slow or tarpitting relay.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class SinkState:
    refuse: set[str] = field(default_factory=set)
    defer: set[str] = field(default_factory=set)  # SMTP: 450 at RCPT (try again later: a rate limit)
    reject_message_to: set[str] = field(default_factory=set)  # SMTP: 554 at DATA (this message only)
    accept_at_most: int | None = None
    throttled: bool = False  # Postmark: HTTP 429 for every batch (its rate limit), nothing taken
    unverified_sender: bool = False  # Postmark: HTTP 422 for every batch (From not a sender signature)
    delay_seconds: float = 0.0  # SMTP: each message's DATA is answered this late (a slow server)
    messages: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.messages)


class _Handler:
    def __init__(self, state: SinkState, *, keep: bool) -> None:
        self.state = state
        self.keep = keep

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address.lower() in self.state.refuse:
            return "550 5.1.1 No such mailbox"
        if address.lower() in self.state.defer:
            return "450 4.2.1 Receiving mail at a rate that prevents more: try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.state.delay_seconds:
            await asyncio.sleep(self.state.delay_seconds)
        with self.state.lock:
            if self.state.accept_at_most is not None and len(self.state.messages) >= self.state.accept_at_most:
                return "421 4.3.2 Service shutting down"
            if any(to.lower() in self.state.reject_message_to for to in envelope.rcpt_tos):
                return "554 5.6.0 Message content rejected"
            if self.keep:
                parsed = message_from_bytes(envelope.content)
                payload = parsed.get_payload(decode=True)
                entry = {
                    "to": list(envelope.rcpt_tos),
                    "message_id": parsed["Message-ID"],
                    "headers": dict(parsed),
                    "body": payload.decode("utf-8", "replace") if isinstance(payload, bytes) else "",
                }
            else:
                entry = {"to": list(envelope.rcpt_tos)}
            self.state.messages.append(entry)
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def smtp_sink(*, keep_headers: bool = True) -> Iterator[tuple[SinkState, int]]:
    """Run the sink on 127.0.0.1 (a free port) until the block ends; yields (state, port)."""
    from aiosmtpd.controller import Controller

    state = SinkState()
    port = free_port()
    # aiosmtpd logs every SMTP command of every conversation at INFO ("mail.log"): for a stand-in
    # that is noise, and at 100,000 messages it is most of the sink's own CPU. Warnings still show.
    chatter = logging.getLogger("mail.log")
    level = chatter.level
    chatter.setLevel(logging.WARNING)
    controller = Controller(_Handler(state, keep=keep_headers), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield state, port
    finally:
        controller.stop()
        chatter.setLevel(level)


POSTMARK_TEST_TOKEN = "postmark-sink-token"  # noqa: S105 - the local stand-in's token


def _postmark_handler(state: SinkState, token: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            if self.path != "/email/batch":
                self._answer(404, {"ErrorCode": 404, "Message": "not found"})
                return
            if self.headers.get("X-Postmark-Server-Token") != token:
                self._answer(401, {"ErrorCode": 10, "Message": "No Account or Server API tokens were supplied."})
                return
            messages = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            with state.lock:
                if state.throttled:
                    self._answer(429, {"ErrorCode": 429, "Message": "Rate limit exceeded"})
                    return
                if state.unverified_sender:
                    self._answer(422, {"ErrorCode": 400, "Message": "The 'From' address is not a Sender Signature."})
                    return
                if state.accept_at_most is not None and len(state.messages) >= state.accept_at_most:
                    self._answer(503, {"ErrorCode": 503, "Message": "Service unavailable"})
                    return
                results = []
                for message in messages:
                    to = message["To"]
                    if to.lower() in state.refuse:
                        results.append(
                            {"ErrorCode": 406, "Message": "You tried to send to inactive recipient(s).", "To": to}
                        )
                        continue
                    headers = {h["Name"]: h["Value"] for h in message.get("Headers", [])}
                    state.messages.append(
                        {
                            "to": [to],
                            "message_id": headers.get("Message-ID"),
                            "headers": headers,
                            "stream": message.get("MessageStream"),
                        }
                    )
                    results.append({"ErrorCode": 0, "Message": "OK", "MessageID": str(len(state.messages)), "To": to})
            self._answer(200, results)

    return Handler


@contextmanager
def postmark_sink(*, token: str = POSTMARK_TEST_TOKEN) -> Iterator[tuple[SinkState, str]]:
    """Run the Postmark stand-in on 127.0.0.1 (a free port) until the block ends; yields
    (state, base URL)."""
    state = SinkState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _postmark_handler(state, token))
    thread = threading.Thread(target=server.serve_forever, name="postmark-sink", daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
