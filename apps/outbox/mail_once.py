"""Send the e-mail an outbox message asks for once, outside any transaction, with rows of the
outbox's inbox table (no table of its own): the shopper e-mails "find my orders" and "your prints
have shipped" and the studio member invitations use it (receipts keep their own `Receipt` row).

`send_once` claims the message under `<consumer>:claim` in its own short transaction (a claim
older than RECEIPT_CLAIM_SECONDS is taken over: its sender died), sends, then records
`<consumer>` as done. A message already done sends nothing; a live claim of another sender
raises MailBusy (its task retries later); a failed send gives the claim back
so a retry sends. A sender that dies between sending and recording can cause one duplicate,
which carries the same Message-ID, so mail clients collapse it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from apps.core.problems import BACKGROUND_WORK_WHAT_TO_DO, DomainError
from apps.outbox.models import InboxEntry

# The outbox-consumer options of every task that sends one e-mail per message (claim, send, mark:
# `send_once`, or the receipt's own row): the notifications queue; not `once` (mail goes out
# outside any transaction, and the claim keeps its own rows); retried with backoff, 10 tries.
# Add `autoretry_for=(MailBusy, OSError)` (a receipt: ReceiptBusy).
MAIL_CONSUMER_OPTIONS: dict[str, Any] = {
    "queue": "notifications",
    "once": False,
    "retry_backoff": 5,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 10,
}


class MailBusy(DomainError):
    """Another sender holds a live claim on this message's e-mail; retry after it lapses."""

    status_code = 409
    slug = "mail-busy"
    title = "The e-mail is being sent"
    when_it_happens = (
        "One of Darkroom's background processes is sending this e-mail right now, so another one that came "
        "to it stood back: it is sent once."
    )
    what_to_do = BACKGROUND_WORK_WHAT_TO_DO


def _claim(*, consumer: str, message_id: uuid.UUID, now: datetime) -> bool:
    table = InboxEntry._meta.db_table
    lapsed_before = now - timedelta(seconds=settings.RECEIPT_CLAIM_SECONDS)
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {table} WHERE consumer = %s AND message_id = %s", [consumer, message_id])
        if cursor.fetchone() is not None:
            return False
        # A concurrent claimer's uncommitted row makes this wait for it, then see it as live.
        cursor.execute(
            f"INSERT INTO {table} AS inbox (consumer, message_id, processed_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (consumer, message_id) DO UPDATE SET processed_at = EXCLUDED.processed_at "
            "WHERE inbox.processed_at < %s RETURNING id",
            [f"{consumer}:claim", message_id, now, lapsed_before],
        )
        if cursor.fetchone() is None:
            raise MailBusy(f"{consumer}: the e-mail of message {message_id} is being sent.")
    return True


def _release(*, consumer: str, message_id: uuid.UUID, claimed_at: datetime) -> None:
    """Give a failed send's claim back (unless another sender took it over since)."""
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {InboxEntry._meta.db_table} WHERE consumer = %s AND message_id = %s AND processed_at = %s",
            [f"{consumer}:claim", message_id, claimed_at],
        )


def _mark_sent(*, consumer: str, message_id: uuid.UUID) -> None:
    with transaction.atomic(durable=True), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {InboxEntry._meta.db_table} (consumer, message_id, processed_at) VALUES (%s, %s, now()) "
            "ON CONFLICT (consumer, message_id) DO NOTHING",
            [consumer, message_id],
        )


def send_once(*, consumer: str, message_id: uuid.UUID, send: Callable[[], None]) -> bool:
    """Run `send` (build and send the e-mail) once for the message; True if this call sent it.
    Raises TransactionManagementError inside a transaction, MailBusy while another sender's claim
    is live, and whatever `send` raises (the claim is then given back)."""
    if connection.in_atomic_block:
        raise TransactionManagementError("mail must not be sent inside a transaction")
    claimed_at = timezone.now()
    if not _claim(consumer=consumer, message_id=message_id, now=claimed_at):
        return False
    try:
        send()
    except Exception:
        _release(consumer=consumer, message_id=message_id, claimed_at=claimed_at)
        raise
    _mark_sent(consumer=consumer, message_id=message_id)
    return True
