"""What waits in the Celery broker: messages per Darkroom queue, and its Prometheus gauge.

`broker_queue_depths()` asks the broker itself: a queue declare with Celery's own queue settings,
which Redis answers with the list's length (creating nothing) and RabbitMQ with its message
count. A passive declare would not do: kombu's Redis transport reports a queue under a
`global_keyprefix` as missing. Messages a worker holds unacknowledged (`acks_late`) are not in
the count.

* darkroom_broker_queue_depth{queue="..."}: messages waiting in each of DARKROOM_QUEUES
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, cast

from django.conf import settings
from kombu import Queue
from prometheus_client.core import GaugeMetricFamily, Metric

from apps.core.redis_guard import redis_failed, redis_skipped

logger = logging.getLogger("darkroom.ops.broker")

# Scrapes must not hang on a broker that does not answer: connecting, and each read (kombu's Redis
# transport waits for ever by default).
_CONNECT_TIMEOUT_SECONDS = 2
_READ_TIMEOUT = {"socket_connect_timeout": _CONNECT_TIMEOUT_SECONDS, "socket_timeout": _CONNECT_TIMEOUT_SECONDS}


def broker_queue_depths(queues: Sequence[str] | None = None) -> dict[str, int]:
    """Messages waiting in each queue (default: DARKROOM_QUEUES); an empty or unused queue counts
    0. Raises kombu's OperationalError when the broker is unreachable."""
    from config.celery_app import app

    names = list(queues if queues is not None else settings.DARKROOM_QUEUES)
    depths: dict[str, int] = {}
    with app.connection_for_read(transport_options=_READ_TIMEOUT) as conn:
        conn.ensure_connection(max_retries=1, timeout=_CONNECT_TIMEOUT_SECONDS)
        for name in names:
            declared = Queue(name).bind(conn.default_channel).queue_declare()
            # kombu's annotation says str | None; it returns the broker's queue_declare_ok_t.
            depths[name] = int(cast(Any, declared).message_count)
    return depths


def collect_broker_metrics() -> Iterable[Metric]:
    """Called at scrape time only (`register_collector` describes nothing at registration). A
    broker that failed within REDIS_SKIP_SECONDS is not asked (`apps.core.redis_guard`)."""
    from config.celery_app import app

    broker = str(app.conf.broker_read_url or app.conf.broker_url)
    if redis_skipped("broker", location=broker):
        return
    try:
        depths = broker_queue_depths()
    except Exception as error:
        logger.warning("broker queue depths unavailable", exc_info=True)
        redis_failed("broker", error, log=False, location=broker)
        return
    gauge = GaugeMetricFamily(
        "darkroom_broker_queue_depth",
        "Messages waiting in a Celery queue (not yet taken by a worker).",
        labels=["queue"],
    )
    for name, depth in depths.items():
        gauge.add_metric([name], depth)
    yield gauge
