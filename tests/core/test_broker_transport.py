"""The broker transport reuses one redis-py client per channel, and messages still flow through it:
publish, consume with acks_late (the unacked entry and its removal), reconnect. Real Redis, in
this test worker's own broker namespace."""

from __future__ import annotations

import uuid

from kombu import Connection, Consumer, Producer, Queue

from apps.core.broker_transport import Channel, Transport
from config.celery_app import app


def _connection() -> Connection:
    return app.connection_for_write()


def test_celery_uses_the_client_reusing_transport_for_a_redis_broker() -> None:
    with _connection() as conn:
        assert isinstance(conn.transport, Transport)
        assert isinstance(conn.default_channel, Channel)


def test_a_channel_builds_one_client_and_a_new_one_after_its_pool_is_replaced() -> None:
    with _connection() as conn:
        channel = conn.default_channel
        # when: three commands go through the channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
            assert first.connection_pool is channel.pool
        # when: the channel drops its pools (what it does on a connection error)
        channel._disconnect_pools()
        with channel.conn_or_acquire() as third:
            # then: a fresh client on the fresh pool
            assert third is not first
            assert third.connection_pool is channel.pool
            assert third.ping()


def test_messages_are_published_consumed_and_acked_through_the_shared_client() -> None:
    queue = Queue(f"transport-{uuid.uuid4().hex[:8]}")
    received: list[int] = []
    tags: list[str] = []
    with _connection() as conn:
        channel = conn.default_channel
        bound = queue.bind(channel)
        bound.declare()
        try:
            producer = Producer(channel)
            for n in range(5):
                producer.publish({"n": n}, routing_key=queue.name, declare=[queue])

            def on_message(body: dict[str, int], message) -> None:
                received.append(body["n"])
                tags.append(message.delivery_tag)
                # acks_late: the message sits in the unacked hash until this ack removes it
                assert channel.qos.get(message.delivery_tag) is not None
                message.ack()

            with Consumer(channel, [queue], callbacks=[on_message], accept=["json"]):
                while len(received) < 5:
                    conn.drain_events(timeout=30)
            # then: all five arrived in order and nothing is left unacked or waiting
            assert received == [0, 1, 2, 3, 4]
            with channel.conn_or_acquire() as client:
                assert not any(client.hexists(channel.unacked_key, tag) for tag in tags)
            assert bound.queue_declare().message_count == 0
        finally:
            bound.delete()
