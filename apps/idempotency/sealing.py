"""Stored responses are sealed (encrypted and authenticated) at rest.

A replayable response can hold a secret shown once (a new API key, a signed download URL), so
the body is kept as a Fernet token under a key derived from SECRET_KEY; SECRET_KEY_FALLBACKS
keep replays readable through a key rotation. Database access alone reveals no body.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings

_CONTEXT = b"darkroom.idempotency.response-body.v1"


def _fernet_for(secret: str) -> Fernet:
    digest = hashlib.sha256(_CONTEXT + b"\x00" + secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


@cache
def _sealer(secret: str, fallbacks: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_fernet_for(secret), *(_fernet_for(old) for old in fallbacks)])


def _current() -> MultiFernet:
    return _sealer(settings.SECRET_KEY, tuple(getattr(settings, "SECRET_KEY_FALLBACKS", ())))


def seal(body: bytes) -> bytes:
    return _current().encrypt(body)


def unseal(token: bytes) -> bytes:
    """Raises cryptography.fernet.InvalidToken if the body was not sealed with a known key."""
    return _current().decrypt(token)
