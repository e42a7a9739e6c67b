"""A local SMTP server that accepts and counts mail (aiosmtpd, a dev dependency): the mail
server of the announcement tests and benchmark, so they go through Django's real SMTP backend.

It can refuse chosen recipients (550, a permanent refusal) and answer 421 ("closing") to every
message after the first `accept_at_most`, as a server that goes away mid-chunk does.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from typing import Any


@dataclass
class SinkState:
    refuse: set[str] = field(default_factory=set)
    accept_at_most: int | None = None
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
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.state.lock:
            if self.state.accept_at_most is not None and len(self.state.messages) >= self.state.accept_at_most:
                return "421 4.3.2 Service shutting down"
            if self.keep:
                parsed = message_from_bytes(envelope.content)
                entry = {"to": list(envelope.rcpt_tos), "message_id": parsed["Message-ID"], "headers": dict(parsed)}
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
    controller = Controller(_Handler(state, keep=keep_headers), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield state, port
    finally:
        controller.stop()
