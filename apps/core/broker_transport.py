"""Kombu's Redis transport, with one redis-py client per channel instead of one per command.

Kombu's Redis channel builds a new `redis.Redis` object every time it talks to Redis outside
its polling connection (`conn_or_acquire`): per publish, and twice per consumed message (the
unacked entry on receipt, its removal on ack). With redis-py 8 that constructor copies the
whole response-callback table, about 60 µs each, which was 7 % of a solo worker's profile on a
no-op task. The objects differ only in identity: every one of them takes its connections from
the channel's one pool (`Channel.pool`). This channel keeps the client it built and reuses it
while that pool lives, and builds a fresh one when the pool is replaced (after a disconnect).

A `redis.Redis` object holds no connection of its own; commands and pipelines check one out of
the pool, so sharing it between the consumer and the threads of a thread pool is safe.

Selected by CELERY_BROKER_TRANSPORT; the broker URL stays `redis://...`.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared_client: tuple[Any, Any] | None = None  # (pool it was built on, client)

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            # The polling (BRPOP / LISTEN) client: kombu builds it once per channel already.
            return super()._create_client(asynchronous=True)  # type: ignore[misc]  # private, not in the stubs
        pool = self.pool
        shared = self._shared_client
        if shared is None or shared[0] is not pool:
            shared = (pool, super()._create_client())  # type: ignore[misc]
            self._shared_client = shared
        return shared[1]

    def _disconnect_pools(self) -> None:
        self._shared_client = None
        super()._disconnect_pools()  # type: ignore[misc]


class Transport(kombu_redis.Transport):
    Channel = Channel
