"""API key hashing, on its own so that the authentication path (selectors) imports no services."""

from __future__ import annotations

import hashlib


def hash_api_key(raw_key: str) -> str:
    """API keys are 256-bit random secrets, so a plain SHA-256 is a safe, fast lookup hash."""
    return hashlib.sha256(raw_key.encode()).hexdigest()
