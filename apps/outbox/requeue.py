"""Find the work whose outbox message the broker lost, and hand it back to the caller to queue again.

The relay marks a message published once Redis has it; Redis here keeps nothing across a
restart, so a message can be gone with its outbox row saying `published`. A flow whose rows
carry a "waiting" status and a "last queued" timestamp (webhook events, photo renders, refunds)
finds its lost messages by age: a delivered message moves the row out of the waiting status
within seconds, so a row still waiting `older_than_seconds` after it was queued lost its message
(or sits behind a backlog that long, when queueing it again is harmless: every consumer is
idempotent).

Each flow counts what it queued again in Redis (after commit), exported on /metrics as
`darkroom_outbox_requeued_total{flow="..."}`: a rise means the broker lost messages (a Redis
restart) or consumers fall far behind, and is worth an alert.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

logger = logging.getLogger("darkroom.outbox")

REQUEUED_COUNTER_KEY = "outbox:requeued_total"  # a Redis hash: flow -> messages queued again
# The flows whose sweeps exist: /metrics reports each, at 0 until it counts (and again after Redis
# forgot the counters), so that an alert on `increase()` sees the first loss too.
REQUEUE_FLOWS = (
    "webhook_events",
    "refunds",
    "payment_captures",
    "photo_renders",
    "receipts",
    "checkout_settlements",
    "payment_sessions",
    "payment_session_closes",
    "payouts",
    "announcement_emails",
    "announcement_fanouts",
    "dropin_faces",
    "dropin_jobs",
    # Found by their consumer's missing inbox row (apps/outbox/unconsumed.py).
    "order_link_emails",
    "shipping_emails",
    "refund_emails",
    "member_invitations",
    "refund_restocks",
    "photo_withdrawals",
    "password_reset_emails",
    "attendee_link_emails",
    "refund_failed_emails",
    "dropin_face_forgets",
    "api_key_revocations",
)

M = TypeVar("M", bound=models.Model)


@dataclass(frozen=True)
class RequeueAudit:
    """One audit row per row queued again (the flows that move money): `action` on
    `target_type` <pk>, in the row's tenant, recording `data(row)`."""

    action: str
    target_type: str
    data: Callable[[Any], dict[str, Any]]


def requeue_stale(
    waiting: models.QuerySet[M],
    *,
    queued_field: str,
    fallback_field: str,
    older_than_seconds: float,
    limit: int,
    requeue: Callable[[M], object],
    flow: str,
    audit: RequeueAudit | None = None,
) -> list[M]:
    """Lock up to `limit` rows of `waiting` (skipping rows another transaction holds) whose
    `queued_field` is older than `older_than_seconds` (rows written before that column existed:
    `fallback_field`), oldest first; call `requeue(row)` on each, then set its `queued_field` to
    now, so the next pass leaves it alone for another `older_than_seconds`; with `audit`, write
    its audit row (actor "lost-message sweep: <flow>"). Each row has its own savepoint: a row
    whose requeue raises is rolled back alone, logged and left for the next pass, and does not
    hold up the others.

    Must run inside the caller's transaction: `requeue` writes the new outbox message there, and
    it commits with the new timestamps. Returns the rows requeued; when there were any, logs a
    warning naming `flow` and, once the transaction commits, adds them to the flow's counter.
    """
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError("requeue_stale runs inside the caller's transaction")
    now = timezone.now()
    cutoff = now - timedelta(seconds=older_than_seconds)
    stale = Q(**{f"{queued_field}__lt": cutoff}) | Q(
        **{f"{queued_field}__isnull": True, f"{fallback_field}__lt": cutoff}
    )
    candidates = waiting.select_for_update(skip_locked=True).filter(stale).order_by(fallback_field, "pk")[:limit]
    rows: list[M] = []
    for row in candidates:
        try:
            with transaction.atomic():
                requeue(row)
                if audit is not None:
                    _audit(row, audit, flow)
                setattr(row, queued_field, now)
                row.save(update_fields=[queued_field])
        except Exception:
            logger.exception("lost message could not be asked for again", extra={"flow": flow, "pk": str(row.pk)})
        else:
            rows.append(row)
    if rows:
        logger.warning(
            "lost messages asked for again",
            extra={"flow": flow, "count": len(rows), "older_than_seconds": older_than_seconds},
        )
        transaction.on_commit(partial(count_requeued, flow, len(rows)))
    return rows


def _audit(row: models.Model, audit: RequeueAudit, flow: str) -> None:
    from apps.tenancy.services import audit_record

    audit_record(
        action=audit.action,
        tenant_id=getattr(row, "tenant_id", None),
        actor_label=f"lost-message sweep: {flow}",
        target_type=audit.target_type,
        target_id=str(row.pk),
        data=audit.data(row),
    )


def count_requeued(flow: str, count: int) -> None:
    """Add `count` to the flow's requeue counter (best effort: Redis may be away). Call after commit."""
    try:
        from django_redis import get_redis_connection

        from apps.outbox.selectors import counter_key

        get_redis_connection("default").hincrby(counter_key(REQUEUED_COUNTER_KEY), flow, count)
    except Exception:
        logger.warning("could not count requeued messages", extra={"flow": flow, "count": count}, exc_info=True)
