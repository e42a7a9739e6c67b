"""Lost messages of flows without a waiting row: published, yet their consumer never finished.

Most flows find their lost messages by a business row still waiting (apps/outbox/requeue.py).
Some have no such row: the e-mails of order links, shipments, refunds, member invitations and
attendees' new links, the restock of a refunded order's prints, a withdrawn photo's cleanup, and
a deleted face forgotten at the face backend (its row is gone by then).
What they have is the inbox: their consumer records the inbox row `(consumer, message id)` on
every final outcome (`consume_once`, or the `send_once` of apps/outbox/mail_once.py). So a
message of such a topic that was published `older_than_seconds` ago and has no inbox row of its
consumer was lost by the broker (Redis forgot it) or gave up retrying; `outbox_requeue_unconsumed`
sends it again under the same id. Every consumer is idempotent, so a copy that reaches a consumer
still at work (a slow retry) is harmless.

A consumer opts in with `@outbox_consumer(..., lost_message_flow="<flow>")`. Its topic must be
in `LOST_MESSAGE_TOPICS` (apps/outbox/models.py), the predicate of the partial index the sweep
reads by (`outbox_lost_message_sweep`): only these topics' rows pay for that index, and a day
of every other topic's published rows is never scanned. A test fails when a declared flow's
topic is missing here or in REQUEUE_FLOWS.

Bounded: a message is sent again at most `max_requeues` times (counted in its headers,
`lost_message_requeues`), and never once it is older than `max_age_seconds` (by then the
retention cleanup deletes it anyway). Each resend is audited (`outbox.requeue_lost`) and
counted in `darkroom_outbox_requeued_total{flow=...}`; a message that used up its resends is
logged as an error once per sweep until it ages out.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from functools import partial

from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.utils import timezone

from apps.outbox.models import LOST_MESSAGE_TOPICS
from apps.outbox.requeue import count_requeued
from apps.outbox.routing import LostMessageFlow, lost_message_flows

logger = logging.getLogger("darkroom.outbox")

REQUEUES_HEADER = "lost_message_requeues"
REQUEUE_AUDIT_ACTION = "outbox.requeue_lost"

# The index predicate, written out as literals: the planner then proves it from the query's own
# clause even in a generic plan of a prepared statement (a bound array would hide it).
if not all(re.fullmatch(r"[a-z_.]+", topic) for topic in LOST_MESSAGE_TOPICS):
    raise ImproperlyConfigured("LOST_MESSAGE_TOPICS are written into SQL: names of [a-z_.] only")
_TOPICS_SQL = ", ".join(f"'{topic}'" for topic in LOST_MESSAGE_TOPICS)
_FIND_UNCONSUMED = f"""
SELECT m.id, coalesce((m.headers ->> %(header)s)::int, 0) AS requeues, m.tenant_id, m.published_at
  FROM outbox_outboxmessage m
 WHERE m.topic = %(topic)s
   AND m.topic IN ({_TOPICS_SQL})
   AND m.status = 'published'
   AND m.created_at > %(born_after)s
   AND m.published_at < %(published_before)s
   AND NOT EXISTS (
       SELECT 1 FROM outbox_inboxentry i WHERE i.consumer = %(consumer)s AND i.message_id = m.id
   )
 ORDER BY m.created_at, m.id
 LIMIT %(limit)s
   FOR UPDATE OF m SKIP LOCKED
"""
# Back to pending, due now, with its resends counted in its headers (the rows are locked above).
_SEND_AGAIN = """
UPDATE outbox_outboxmessage
   SET status = 'pending', published_at = NULL, next_attempt_at = %(now)s,
       headers = coalesce(headers, '{}'::jsonb)
                 || jsonb_build_object(%(header)s::text, coalesce((headers ->> %(header)s::text)::int, 0) + 1)
 WHERE id = ANY(%(ids)s)
"""


def outbox_requeue_unconsumed(
    *, older_than_seconds: float, max_age_seconds: float, max_requeues: int, limit: int
) -> dict[str, int]:
    """Send again the lost messages of every declared flow (see the module docstring); returns
    the number sent again per flow, and `exhausted` for those past `max_requeues`.

    One outermost transaction per flow, in the caller's context (the system context: the rows
    are every tenant's). Rows are locked with SKIP LOCKED, so concurrent sweeps and the relay
    never take the same message; the relay publishes them after commit (its NOTIFY trigger).
    """
    result: dict[str, int] = {}
    exhausted = 0
    for flow in lost_message_flows():
        sent, used_up = _requeue_flow(
            flow,
            older_than_seconds=older_than_seconds,
            max_age_seconds=max_age_seconds,
            max_requeues=max_requeues,
            limit=limit,
        )
        result[flow.flow] = sent
        exhausted += used_up
    result["exhausted"] = exhausted
    return result


@transaction.atomic(durable=True)
def _requeue_flow(
    flow: LostMessageFlow, *, older_than_seconds: float, max_age_seconds: float, max_requeues: int, limit: int
) -> tuple[int, int]:
    from apps.tenancy.services import audit_record

    if flow.topic not in LOST_MESSAGE_TOPICS:
        raise ValueError(f"topic {flow.topic!r} of flow {flow.flow!r} is not in LOST_MESSAGE_TOPICS")
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _FIND_UNCONSUMED,
            {
                "header": REQUEUES_HEADER,
                "topic": flow.topic,
                "born_after": now - timedelta(seconds=max_age_seconds),
                "published_before": now - timedelta(seconds=older_than_seconds),
                "consumer": flow.consumer,
                "limit": limit,
            },
        )
        found = cursor.fetchall()
    owed = [
        (message_id, tenant_id, published_at)
        for message_id, requeues, tenant_id, published_at in found
        if requeues < max_requeues
    ]
    used_up = [str(message_id) for message_id, requeues, _, _ in found if requeues >= max_requeues]
    if used_up:
        logger.error(
            "lost messages not sent again: resends used up",
            extra={"flow": flow.flow, "message_ids": used_up, "max_requeues": max_requeues},
        )
    if not owed:
        return 0, len(used_up)
    with connection.cursor() as cursor:
        cursor.execute(_SEND_AGAIN, {"now": now, "header": REQUEUES_HEADER, "ids": [m for m, _, _ in owed]})
    for message_id, tenant_id, published_at in owed:
        audit_record(
            action=REQUEUE_AUDIT_ACTION,
            tenant_id=tenant_id,
            actor_label=f"lost-message sweep: {flow.flow}",
            target_type="outbox_message",
            target_id=str(message_id),
            data={"topic": flow.topic, "consumer": flow.consumer, "published_at": published_at.isoformat()},
        )
    logger.warning("lost messages sent again", extra={"flow": flow.flow, "count": len(owed)})
    transaction.on_commit(partial(count_requeued, flow.flow, len(owed)))
    return len(owed), len(used_up)
