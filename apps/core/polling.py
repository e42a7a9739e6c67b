"""Bounded polling for tools and tests that wait on another process (never in a request path)."""

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.1) -> bool:
    """Call `predicate` every `interval` seconds until it is true or `timeout` seconds passed.

    Returns its last answer (one final call after the deadline), so a caller can tell a
    condition reached at the last moment from a timeout.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
