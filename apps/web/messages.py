"""Flash messages that follow the transaction of the effect that added them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.contrib import messages
from django.contrib.messages.storage.base import Message
from django.contrib.messages.storage.fallback import FallbackStorage
from django.http import HttpRequest


class TransactionalMessageStorage(FallbackStorage):
    """Django's default storage (a cookie, the session for what does not fit), whose messages
    added inside `kept_if_completed()` are dropped again when that block raises."""

    _queued_messages: list[Message]  # BaseStorage's queue of messages added by this request

    @contextmanager
    def kept_if_completed(self) -> Iterator[None]:
        queued, added_new = len(self._queued_messages), self.added_new
        try:
            yield
        except BaseException:
            del self._queued_messages[queued:]
            self.added_new = added_new
            raise


@contextmanager
def messages_kept_if_completed(request: HttpRequest) -> Iterator[None]:
    """Messages added in this block are shown only if it completes: a form's effect that says
    "Event created." and then rolls back (refused, or a concurrent submission stored its key
    first) leaves no message behind (MESSAGE_STORAGE is `TransactionalMessageStorage`)."""
    storage = messages.get_messages(request)
    if not isinstance(storage, TransactionalMessageStorage):
        yield
        return
    with storage.kept_if_completed():
        yield
