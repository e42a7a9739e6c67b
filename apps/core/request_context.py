"""The request id of the current unit of work (HTTP request or Celery task)."""

from __future__ import annotations

import contextvars
import re
import uuid

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("darkroom_request_id", default=None)
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def get_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None) -> contextvars.Token[str | None]:
    return _request_id.set(value)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    _request_id.reset(token)


def accept_or_generate(candidate: str | None) -> str:
    """Keep a caller's id if it is a sane token (≤128 chars of [A-Za-z0-9._:-]); else a new UUID."""
    if candidate and _VALID.match(candidate):
        return candidate
    return uuid.uuid4().hex
