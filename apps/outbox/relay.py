"""The outbox relay: pending messages → Celery, at least once, safe to run on several hosts.

One batch (`relay_batch`) is one transaction:

1. claim: `SELECT ... WHERE status = 'pending' AND next_attempt_at <= now() ORDER BY
   next_attempt_at, id LIMIT n FOR UPDATE SKIP LOCKED`. Rows another relay has claimed (locked
   in its open transaction) are skipped, so concurrent relays never publish the same claimed batch;
2. publish each message with `send_task(task_id=<message id>)` while the row locks are held,
   buffered in one Redis pipeline (kombu's producer batch) that is flushed before step 3;
3. mark the published ones (one UPDATE) and count failures (backoff or dead letter); COMMIT.

A relay killed after 2 and before COMMIT leaves its rows pending and unlocked (Postgres aborts
the transaction of a dead client), so they are published again: delivery is at least once and
consumers dedupe with `consume_once`. Ordering across messages is not guaranteed.

Message errors (no route for the topic, an unencodable payload) consume an attempt and end in the
dead letters after OUTBOX_MAX_ATTEMPTS. Broker errors (Redis unreachable) are not the message's
fault: the batch stops, nothing is counted against the remaining messages, and the relay backs
off as a whole, so a long broker outage cannot dead-letter the backlog.

`OutboxRelay.run` loops: relay batches while they come back full, then wait for a NOTIFY on
`darkroom_outbox` (sent by the outbox triggers at COMMIT) or the poll interval, whichever is
first; the poll also picks up retries whose backoff has expired. After a NOTIFY it waits
OUTBOX_RELAY_COALESCE_SECONDS (default 10 ms) so that one claim carries the messages of many
commits: a little latency for batching, which keeps the relay's cost per message low at high
rates. SIGTERM/SIGINT (via `stop()`) finish the current batch and exit.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psycopg
from celery import Celery
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import BatchPublishError  # type: ignore[attr-defined]  # kombu >= 5.7; stubs lag
from kombu.exceptions import OperationalError as KombuOperationalError

from apps.outbox.models import NOTIFY_CHANNEL, OutboxMessage
from apps.outbox.routing import resolve_route
from apps.outbox.services import outbox_mark_published, outbox_record_failure
from apps.tenancy.context import current, system_context

logger = logging.getLogger("darkroom.outbox.relay")

BROKER_ERRORS: tuple[type[BaseException], ...] = (
    KombuOperationalError,
    BatchPublishError,
    ConnectionError,
    TimeoutError,
)
PUBLISHED_COUNTER_KEY = "outbox:relay:published_total"
FAILED_COUNTER_KEY = "outbox:relay:failed_total"
_STOP_CHECK_SECONDS = 0.5
# Redis commands buffered before the pipeline flushes (a task message and its task-sent event
# are two); a batch is normally sent in one round trip when the transaction is about to commit.
_PIPELINE_OPS = 1000


def _celery_app() -> Celery:
    from config.celery_app import app

    return app


@dataclass
class BatchResult:
    claimed: int = 0
    published: int = 0
    failed: int = 0
    dead: int = 0
    broker_error: str | None = None
    published_ids: list[uuid.UUID] = field(default_factory=list)


def claim_batch(*, batch_size: int) -> list[OutboxMessage]:
    """Lock up to `batch_size` due pending messages, skipping rows other relays hold.

    Must run inside the relay's transaction (the locks last until it ends).
    """
    return list(
        OutboxMessage.objects.select_for_update(skip_locked=True)
        .filter(Q(status=OutboxMessage.Status.PENDING) & Q(next_attempt_at__lte=timezone.now()))
        .order_by("next_attempt_at", "id")[:batch_size]
    )


def publish_message(*, app: Celery, producer: Any, message: OutboxMessage) -> None:
    """Send one message to its consumer task. Task id = message id; the tenant and the producer's
    request id travel as headers (the relay itself runs in the system context)."""
    route = resolve_route(message.topic)
    options: dict[str, Any] = {}
    if route.queue:
        options["queue"] = route.queue
    app.send_task(
        route.task_name,
        kwargs={"message_id": str(message.id), "payload": message.payload},
        task_id=str(message.id),
        headers={
            "tenant_id": message.tenant_id,
            "request_id": (message.headers or {}).get("request_id"),
            "outbox_topic": message.topic,
            "outbox_message_id": str(message.id),
        },
        producer=producer,
        # On Redis, no per-message queue declaration: publishing to the default exchange pushes
        # onto the queue's list whether or not it was declared, and Celery would otherwise copy
        # and bind the queue object for every message. An AMQP broker drops a message sent to an
        # undeclared queue, so there Celery declares it (once per connection).
        declare=[] if producer.connection.transport.driver_type == "redis" else None,
        ignore_result=True,
        # What Flower and worker logs show: the ids, not the payload (cheaper than saferepr, and
        # payloads may carry personal data).
        argsrepr="()",
        kwargsrepr=f"{{'message_id': '{message.id}', 'topic': '{message.topic}'}}",
        **options,
    )


def _record_failure(message: OutboxMessage, exc: Exception) -> int:
    dead = outbox_record_failure(message=message, error=exc)
    extra = {"message_id": str(message.id), "topic": message.topic, "error": repr(exc)}
    if dead:
        logger.error("outbox message dead-lettered", extra=extra)
    else:
        logger.warning("outbox publish failed", extra=extra)
    return int(dead)


def mark_published(message_ids: list[uuid.UUID]) -> int:
    return outbox_mark_published(message_ids=message_ids)


def relay_batch(*, batch_size: int, app: Celery | None = None) -> BatchResult:
    """Claim, publish and mark one batch in one durable transaction (see the module docstring).

    The caller acts in the system context: the outbox is read across tenants.
    Raises RuntimeError outside the system context; database errors propagate (the
    transaction rolls back and every claimed row stays pending).
    """
    if current().system_reason is None:
        raise RuntimeError("relay_batch must run in system_context (it reads every tenant's outbox)")
    app = app or _celery_app()
    result = BatchResult()
    with transaction.atomic(durable=True):
        batch = claim_batch(batch_size=batch_size)
        result.claimed = len(batch)
        if not batch:
            return result
        sent: list[uuid.UUID] = []
        try:
            with app.producer_or_acquire() as producer, producer.batch(max_size=_PIPELINE_OPS):
                for message in batch:
                    try:
                        publish_message(app=app, producer=producer, message=message)
                    except BROKER_ERRORS:
                        raise
                    except Exception as exc:  # noqa: BLE001 - any other error is the message's
                        result.failed += 1
                        result.dead += _record_failure(message, exc)
                    else:
                        sent.append(message.id)
        except BROKER_ERRORS as exc:
            # Not the messages' fault: none is marked or charged an attempt. Part of the batch may
            # have reached the broker; it is published again later (consumers dedupe).
            result.broker_error = f"{type(exc).__name__}: {exc}"
            sent = []
        result.published_ids = sent
        result.published = mark_published(result.published_ids)
    return result


def _bump_counters(result: BatchResult) -> None:
    if not (result.published or result.failed):
        return
    try:
        from django_redis import get_redis_connection

        from apps.outbox.selectors import counter_key

        client = get_redis_connection("default")
        pipe = client.pipeline(transaction=False)
        if result.published:
            pipe.incrby(counter_key(PUBLISHED_COUNTER_KEY), result.published)
        if result.failed:
            pipe.incrby(counter_key(FAILED_COUNTER_KEY), result.failed)
        pipe.execute()
    except Exception:
        logger.warning("outbox relay could not update its counters", exc_info=True)


@dataclass
class RelayTotals:
    batches: int = 0
    claimed: int = 0
    published: int = 0
    failed: int = 0
    dead: int = 0
    broker_errors: int = 0

    def add(self, result: BatchResult) -> None:
        self.batches += 1
        self.claimed += result.claimed
        self.published += result.published
        self.failed += result.failed
        self.dead += result.dead
        self.broker_errors += 1 if result.broker_error else 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class OutboxRelay:
    """The relay loop. `run()` in the main thread of `manage.py outbox_relay`, or in tests."""

    def __init__(
        self,
        *,
        batch_size: int | None = None,
        poll_interval: float | None = None,
        log_interval: float = 10.0,
        app: Celery | None = None,
    ) -> None:
        self.batch_size = batch_size or int(settings.OUTBOX_BATCH_SIZE)
        self.poll_interval = (
            poll_interval if poll_interval is not None else float(settings.OUTBOX_POLL_INTERVAL_SECONDS)
        )
        self.coalesce = float(settings.OUTBOX_RELAY_COALESCE_SECONDS)
        self.log_interval = log_interval
        self.app = app
        self.totals = RelayTotals()
        self._stop = threading.Event()
        self._listener: psycopg.Connection | None = None

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, once: bool = False) -> RelayTotals:
        """Relay until stopped; with `once`, until no due message is left (then return)."""
        with system_context("outbox relay"):
            logger.info("outbox relay started", extra={"batch_size": self.batch_size, "once": once})
            last_log = time.monotonic()
            logged_claimed = 0  # a progress line only when messages moved since the last one
            failures_in_a_row = 0
            try:
                while not self.stopping:
                    if not once:
                        self._ensure_listener()
                    try:
                        result = relay_batch(batch_size=self.batch_size, app=self.app)
                    except DatabaseError:
                        failures_in_a_row += 1
                        logger.exception("outbox relay batch failed (database)")
                        connection.close()
                        self._sleep(min(30.0, 0.5 * 2**failures_in_a_row))
                        continue
                    self.totals.add(result)
                    _bump_counters(result)
                    if result.broker_error:
                        failures_in_a_row += 1
                        logger.warning("outbox relay: broker unavailable", extra={"error": result.broker_error})
                        if once:
                            break
                        self._sleep(min(30.0, 0.5 * 2**failures_in_a_row))
                        continue
                    failures_in_a_row = 0
                    if time.monotonic() - last_log >= self.log_interval and self.totals.claimed != logged_claimed:
                        last_log, logged_claimed = time.monotonic(), self.totals.claimed
                        logger.info("outbox relay progress", extra=self.totals.as_dict())
                    if result.claimed >= self.batch_size:
                        continue  # a full batch: more is probably due right now
                    if once:
                        break
                    self._wait_for_work()
            finally:
                self._close_listener()
                logger.info("outbox relay stopped", extra=self.totals.as_dict())
        return self.totals

    # --- waking up -------------------------------------------------------------------------

    def _ensure_listener(self) -> None:
        if self._listener is not None and not self._listener.closed:
            return
        try:
            params = connection.get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            params.pop("prepare_threshold", None)
            listener = psycopg.connect(**params, autocommit=True)
            listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
            self._listener = listener
        except psycopg.Error:
            logger.warning("outbox relay cannot LISTEN; polling only until it can", exc_info=True)
            self._listener = None

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _wait_for_work(self) -> None:
        """Block until a NOTIFY arrives, the poll interval passes or stop() is called; then drain
        the queued notifies (one batch serves them all)."""
        if self._listener is None:
            self._sleep(self.poll_interval)
            return
        deadline = time.monotonic() + self.poll_interval
        try:
            while not self.stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                # Exhaust the generators: psycopg holds the connection lock while one is open.
                if list(self._listener.notifies(timeout=min(remaining, _STOP_CHECK_SECONDS), stop_after=1)):
                    if self.coalesce > 0:
                        self._sleep(self.coalesce)  # let the commits of the next few ms join this batch
                    list(self._listener.notifies(timeout=0))
                    return
        except psycopg.Error:
            logger.warning("outbox relay lost its LISTEN connection", exc_info=True)
            self._close_listener()

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)
