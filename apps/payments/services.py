"""Writes of the webhook event ledger: record a delivery, process it, replay it.

Record first, process after (DESIGN "Known traps": ATOMIC_REQUESTS would roll the ledger row
back with a failing handler and the provider would retry into the same failure):

1. `webhook_event_record` (the endpoint, after the signature check on the raw bytes): ONE short
   transaction, `INSERT ... ON CONFLICT DO NOTHING` (the (provider, event id) key) plus, only for a new
   row, a `webhook.received` outbox message. 20 concurrent deliveries of one event id make one
   row and one message: the losers wait on the unique index and then do nothing.
2. `webhook_event_process` (the outbox consumer): in one transaction with its inbox row, re-parses
   the raw body, finds the checkout across tenants (system context), stamps the event with that
   tenant, then applies the payment fact in the tenant's context
   (`apps.commerce.services.transaction_apply_fact`); a payout event (a transfer or payout item)
   settles its payout instead (`apps.payouts.services.payout_apply_provider_event`, the code path
   the settle task uses). A failure rolls all of it back and is then
   recorded on the event (`failed`, error, traceback) in its own transaction; the consumer
   retries with backoff, an operator can replay.
3. `webhook_events_replay` (admin action, `manage.py webhooks_replay`): audited; publishes a
   fresh `webhook.received` message per event. Processing is idempotent by construction
   (derived state, unique keys), so replaying a processed event changes nothing.
"""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps.commerce.errors import (
    PaidWithoutAmount,
    PartialRefundUnnamed,
    PaymentForUnknownCheckout,
    RefundAmountUnreadable,
    RefundCurrencyMismatch,
    RefundNotRecordedYet,
    SecondChargeRefundedInPart,
)
from apps.commerce.models import PROVIDER_REFERENCE_FIELD, Checkout, Refund, Transaction
from apps.commerce.services import (
    PaymentFact,
    charged_currency,
    checkout_capture_request,
    refund_apply_provider_failure,
    transaction_apply_fact,
    transaction_apply_refund,
)
from apps.core.problems import PROVIDER_NOTIFICATION_WHAT_TO_DO, DomainError
from apps.outbox.requeue import RequeueAudit, requeue_stale
from apps.outbox.services import consume_once, outbox_publish
from apps.payments.models import WebhookEvent
from apps.payments.providers.base import (
    PaymentStatus,
    PayoutEvent,
    WebhookEnvelope,
    WebhookPayloadError,
    major_to_minor,
)
from apps.payments.providers.registry import get_provider
from apps.payouts.services import payout_apply_provider_event
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import User
from apps.tenancy.services import audit_record

logger = logging.getLogger("darkroom.payments.webhooks")

TOPIC_WEBHOOK_RECEIVED = "webhook.received"
# The longest provider event id recorded. Never cut to fit: two events sharing their first
# characters would be one (provider, event id) and the second dropped as a duplicate.
EVENT_ID_MAX_LENGTH: int = WebhookEvent._meta.get_field("event_id").max_length or 255
CONSUMER = "payments.process_webhook"
SYSTEM_REASON = "webhook processing"
# Headers worth keeping with a delivery (signatures, ids, content type); never cookies or
# credentials, which a provider does not send and an attacker's probe should not plant.
_DROPPED_HEADERS = frozenset({"cookie", "authorization", "proxy-authorization"})
_FACT_OF_STATUS: dict[PaymentStatus, str] = {
    PaymentStatus.PAID: "paid",
    PaymentStatus.FAILED: "failed",
    PaymentStatus.EXPIRED: "expired",
    PaymentStatus.REFUNDED: "refunded",
}


class ProviderMismatch(DomainError):
    """A provider's event names a checkout paid through another provider: never act on it."""

    status_code = 409
    slug = "webhook-provider-mismatch"
    title = "Event from another provider"
    when_it_happens = (
        "A payment provider's notification names an order that is paid through another provider. "
        "Darkroom does not act on it."
    )
    what_to_do = PROVIDER_NOTIFICATION_WHAT_TO_DO


class SessionMismatch(DomainError):
    """A paid event names a checkout (the id the provider echoes) but a provider session other
    than the one stored on it: whatever it was charged is not that checkout's payment. Never
    applied; failed for good, for an operator to refund at the provider."""

    status_code = 409
    slug = "webhook-session-mismatch"
    title = "Payment for another session"
    when_it_happens = (
        "A payment provider reported a payment for an order, made on a payment page other than the one "
        "Darkroom made for that order. Darkroom does not count it as the order's payment: what was charged "
        "is for Darkroom's support team to refund at the provider."
    )
    what_to_do = PROVIDER_NOTIFICATION_WHAT_TO_DO


NON_RETRYABLE: tuple[type[Exception], ...] = (
    WebhookPayloadError,
    ProviderMismatch,
    SessionMismatch,
    PaidWithoutAmount,
    PartialRefundUnnamed,
    RefundCurrencyMismatch,
    RefundAmountUnreadable,
    SecondChargeRefundedInPart,
)


@dataclass(frozen=True)
class RecordResult:
    webhook_event_id: uuid.UUID
    created: bool


def storable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.lower() not in _DROPPED_HEADERS}


def _uuid_or_none(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


# No conflict target on purpose: naming one makes Postgres require SELECT on the new row, and the
# tenant SELECT policy refuses an untenanted row. The only other unique key is the random id.
_INSERT_SQL = f"""
INSERT INTO {WebhookEvent._meta.db_table}
    (id, tenant_id, provider, event_id, event_type, payment_status, reference, checkout_id, raw_body,
     headers, received_at, queued_at, status, attempts, outcome, error, traceback, processed_at,
     payout_id, payout_outcome)
VALUES (%s, NULL, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'received', 0, '', '', '', NULL, NULL, '')
ON CONFLICT DO NOTHING
"""


@transaction.atomic(durable=True)
def webhook_event_record(
    *, provider: str, envelope: WebhookEnvelope, body: bytes, headers: Mapping[str, str]
) -> RecordResult:
    """Record an authenticated delivery once per (provider, event id), with its outbox message.

    Outermost transaction, short: one insert (no row is read, nothing else is locked) and, for
    a new event, one outbox row; both commit together. Runs with no tenant context: the row is
    untenanted until processing (RLS `untenanted_insert`), hence no RETURNING (the runtime role
    may not read an untenanted row) and an id made here. `created` is False for a duplicate.
    Raises WebhookPayloadError, nothing written, for an event id longer than EVENT_ID_MAX_LENGTH
    (`event_id_problem`).
    """
    problem = event_id_problem(envelope.event_id)
    if problem:
        raise WebhookPayloadError(problem)
    event_pk = uuid.uuid4()
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            _INSERT_SQL,
            [
                event_pk,
                provider,
                envelope.event_id,
                envelope.event_type[:100],
                f"payout:{envelope.payout.result.status}" if envelope.payout else str(envelope.status),
                (envelope.reference or "")[:255],
                _uuid_or_none(envelope.checkout_id),
                body,
                json.dumps(storable_headers(headers)),
                now,
                now,
            ],
        )
        created = cursor.rowcount == 1
    if created:
        _publish_received(event_pk)
    return RecordResult(webhook_event_id=event_pk, created=created)


def event_id_problem(event_id: str) -> str:
    """Why a provider event id cannot be recorded as it is ("" if it can): longer than
    EVENT_ID_MAX_LENGTH. Real ids are short (Stripe `evt_` + 24, PayPal `WH-` + 25, Flutterwave's
    derived `<event>:<id>:<status>` or `<event>:sha256:<hex>` under 100): only forged or broken input
    is this long."""
    if len(event_id) <= EVENT_ID_MAX_LENGTH:
        return ""
    return f"the event id is {len(event_id)} characters long; at most {EVENT_ID_MAX_LENGTH} are recorded"


# --- processing ----------------------------------------------------------------------------


def _resolve_checkout(*, envelope: WebhookEnvelope) -> tuple[int, uuid.UUID, str] | None:
    """(tenant id, checkout id, provider) of the checkout an event is about, across tenants.

    Caller is in the system context. By the checkout id the provider echoes back, else by the
    provider reference stored on the checkout, else by the provider's payment id recorded on its
    transaction (a PayPal refund event may name only the capture it refunds), or on the refund of
    a second charge (a Flutterwave refund event names only the transaction it refunds). A payment
    id that two transactions of the provider share names neither (None)."""
    checkout_id = _uuid_or_none(envelope.checkout_id)
    row = None
    if checkout_id is not None:
        row = Checkout.objects.filter(pk=checkout_id).values_list("tenant_id", "pk", "provider").first()
    if row is None and envelope.reference and envelope.provider in PROVIDER_REFERENCE_FIELD:
        column = PROVIDER_REFERENCE_FIELD[envelope.provider]
        row = Checkout.objects.filter(**{column: envelope.reference}).values_list("tenant_id", "pk", "provider").first()
    if row is None and envelope.payment_id:
        matches = list(
            Transaction.objects.filter(provider=envelope.provider, payment_id=envelope.payment_id).values_list(
                "tenant_id", "checkout_id", "provider"
            )[:2]
        )
        if not matches:
            matches = list(
                Refund.objects.filter(
                    Refund.SECOND_CHARGE, payment_id=envelope.payment_id, transaction__provider=envelope.provider
                )
                .values_list("tenant_id", "transaction__checkout_id", "transaction__provider")
                .distinct()[:2]
            )
        row = matches[0] if len(matches) == 1 else None
    return row


def _foreign_session(*, tenant_id: int, checkout_id: uuid.UUID, envelope: WebhookEnvelope) -> str:
    """Why the event is not about the checkout's own provider session, or "" when it is (or
    cannot be told: the event names no session, or the checkout has none stored yet, which
    `apply_fact_locked` then stores).

    A checkout has one session (`PROVIDER_REFERENCE_FIELD`, set once by `_session_created`: the
    checkout id is the provider's idempotency key, so a retry gets the same session back). An
    event echoing the checkout's id but naming another session (Stripe session, PayPal order,
    Flutterwave tx_ref, sandbox reference) is of another session: one made for the checkout id
    outside that key (a duplicate the provider made), or a contradiction. Its facts are not the
    checkout's. In the caller's transaction and tenant context; locks the checkout row (FOR
    UPDATE, the lock `transaction_apply_fact` takes next), so a session stored meanwhile is seen.
    """
    if not envelope.reference:
        return ""
    column = PROVIDER_REFERENCE_FIELD[envelope.provider]
    stored = (
        Checkout.objects.select_for_update()
        .filter(tenant_id=tenant_id, pk=checkout_id)
        .values_list(column, flat=True)
        .first()
    )
    if stored is None or stored == envelope.reference:
        return ""
    return f"another {envelope.provider} session: {envelope.reference}, the checkout's is {stored}"


def _in_payment_currency(*, checkout_id: uuid.UUID, amount_major: str) -> tuple[int | None, str | None]:
    """(minor units, currency) of a refund amount an event wrote in major units without naming
    its currency: a refund is in the currency its payment was charged in (`charged_currency`).
    (None, None) for a checkout never charged. Raises WebhookPayloadError for an amount the
    currency cannot hold exactly."""
    txn = Transaction.objects.filter(checkout_id=checkout_id).first()
    if txn is None:
        return None, None
    currency = charged_currency(txn=txn)
    try:
        return major_to_minor(amount_major, currency), currency
    except ValueError as exc:
        raise WebhookPayloadError(f"refund amount {amount_major!r} {currency}: {exc}") from exc


def _finish(event: WebhookEvent, *, status: str, outcome: str) -> str:
    event.status = status
    event.outcome = outcome[:200]
    event.error = ""
    event.traceback = ""
    event.processed_at = timezone.now()
    with system_context(SYSTEM_REASON):
        event.save(
            update_fields=[
                "tenant",
                "checkout_id",
                "payout_id",
                "payout_outcome",
                "status",
                "attempts",
                "outcome",
                "error",
                "traceback",
                "processed_at",
            ]
        )
    return outcome


def _confirmed_envelope(*, webhook_event_id: uuid.UUID | str) -> WebhookEnvelope | None:
    """The recorded event as its provider's API confirms it (`PaymentProvider.confirm_payment`:
    Flutterwave's verify-by-API step), or None for an event that does not exist. Outside any
    transaction: it may call the provider. Raises ProviderError, WebhookPayloadError."""
    with system_context(SYSTEM_REASON):
        event = WebhookEvent.objects.filter(pk=webhook_event_id).only("provider", "raw_body", "headers").first()
    if event is None:
        return None
    adapter = get_provider(event.provider)
    envelope = adapter.parse_webhook(body=bytes(event.raw_body), headers=event.headers)
    return adapter.confirm_payment(envelope=envelope)


def _process(*, webhook_event_id: uuid.UUID | str, envelope: WebhookEnvelope | None = None) -> str:
    """Apply one recorded event (in the caller's transaction; the event row is locked), as
    `envelope` says when given (the event confirmed by its provider), else as its body says."""
    with system_context(SYSTEM_REASON):
        event = WebhookEvent.objects.select_for_update().get(pk=webhook_event_id)
    if event.status == WebhookEvent.Status.RESOLVED:
        # An operator dealt with it (`apps.payments.resolution`): a message queued before that
        # (a replay) must not apply it or fail it again.
        return "resolved by an operator: not processed"
    event.attempts += 1
    if envelope is None:
        envelope = get_provider(event.provider).parse_webhook(body=bytes(event.raw_body), headers=event.headers)
    if envelope.payout is not None:
        return _process_payout(event, payout_event=envelope.payout)
    if envelope.status in (PaymentStatus.UNKNOWN, PaymentStatus.PENDING):
        return _finish(event, status=WebhookEvent.Status.IGNORED, outcome=f"ignored: {envelope.status} event")
    with system_context(SYSTEM_REASON):
        resolved = _resolve_checkout(envelope=envelope)
    if resolved is None:
        raise PaymentForUnknownCheckout(
            f"No checkout for {event.provider} event {event.event_id} "
            f"(checkout {envelope.checkout_id!r}, reference {envelope.reference!r})."
        )
    tenant_id, checkout_id, checkout_provider = resolved
    if checkout_provider != event.provider:
        raise ProviderMismatch(f"Checkout {checkout_id} is paid through {checkout_provider}, not {event.provider}.")
    event.tenant_id = tenant_id
    event.checkout_id = checkout_id
    with tenant_context(tenant_id):
        foreign = _foreign_session(tenant_id=tenant_id, checkout_id=checkout_id, envelope=envelope)
        if foreign and envelope.status == PaymentStatus.PAID:
            logger.error(
                "payment for a provider session that is not its checkout's: not applied, refund it at the provider",
                extra={
                    "webhook_event_id": str(event.pk),
                    "provider": event.provider,
                    "event_id": event.event_id,
                    "checkout_id": str(checkout_id),
                    "session": envelope.reference,
                },
            )
            raise SessionMismatch(
                f"checkout {checkout_id} paid in {foreign}: not applied. If {event.provider} charged it, "
                f"refund it in the {event.provider} dashboard (its payment is not this checkout's)."
            )
        if foreign:
            return _finish(event, status=WebhookEvent.Status.IGNORED, outcome=f"ignored: {foreign}")
        if envelope.status == PaymentStatus.REFUND_FAILED:
            failed = refund_apply_provider_failure(
                tenant_id=tenant_id,
                checkout_id=checkout_id,
                provider_refund_id=envelope.refund_id,
                reason=envelope.refund_failure,
                source=f"{event.provider}:{event.event_id}",
            )
            return _finish(event, status=WebhookEvent.Status.PROCESSED, outcome=failed.describe())
        if envelope.status == PaymentStatus.APPROVED:
            reference = envelope.reference or ""
            if checkout_capture_request(tenant_id=tenant_id, checkout_id=checkout_id, reference=reference):
                return _finish(event, status=WebhookEvent.Status.PROCESSED, outcome="approved: capture requested")
            return _finish(
                event, status=WebhookEvent.Status.PROCESSED, outcome="approved after its checkout closed: not captured"
            )
        amount_minor, currency, refund_amount_minor = (
            envelope.amount_minor,
            envelope.currency,
            envelope.refund_amount_minor,
        )
        if envelope.status == PaymentStatus.REFUNDED and amount_minor is None and envelope.amount_major is not None:
            amount_minor, currency = _in_payment_currency(checkout_id=checkout_id, amount_major=envelope.amount_major)
            refund_amount_minor = amount_minor
        fact = PaymentFact(
            status=_FACT_OF_STATUS[envelope.status],  # type: ignore[arg-type]
            source=f"{event.provider}:{event.event_id}",
            amount_minor=amount_minor,
            currency=currency,
            payment_id=envelope.payment_id,
            reference=envelope.reference,
        )
        if fact.status == "refunded":
            outcome = transaction_apply_refund(
                tenant_id=tenant_id,
                checkout_id=checkout_id,
                fact=fact,
                provider_refund_id=envelope.refund_id,
                refund_amount_minor=refund_amount_minor,
            )
        else:
            outcome = transaction_apply_fact(tenant_id=tenant_id, checkout_id=checkout_id, fact=fact)
    return _finish(event, status=WebhookEvent.Status.PROCESSED, outcome=outcome.describe())


def _process_payout(event: WebhookEvent, *, payout_event: PayoutEvent) -> str:
    """A payout event: settle the payout it names through the payouts app (in the caller's
    transaction, with the inbox row). One for a payout Darkroom does not know is recorded as
    `ignored` (logged and counted by the payouts app), never retried into a failure."""
    applied = payout_apply_provider_event(
        provider=event.provider, event=payout_event, source=f"{event.provider} webhook {event.event_id}"
    )
    event.tenant_id = applied.tenant_id
    event.payout_id = applied.payout_id
    # The first processing's outcome stays (a replay finds the payout moved already): the metric
    # counting events by outcome never goes down.
    event.payout_outcome = event.payout_outcome or applied.outcome
    status = WebhookEvent.Status.IGNORED if applied.payout_id is None else WebhookEvent.Status.PROCESSED
    return _finish(event, status=status, outcome=applied.describe())


def _record_failure(*, webhook_event_id: uuid.UUID | str, exc: BaseException) -> None:
    """Note a failed attempt on the event, in its own transaction (processing rolled back)."""
    with system_context(SYSTEM_REASON), transaction.atomic(durable=True):
        event = WebhookEvent.objects.select_for_update().filter(pk=webhook_event_id).first()
        if event is None or event.status == WebhookEvent.Status.RESOLVED:
            return
        event.status = WebhookEvent.Status.FAILED
        event.attempts += 1
        event.error = f"{type(exc).__name__}: {exc}"[:4000]
        event.traceback = "".join(traceback.format_exception(exc))[-20_000:]
        event.save(update_fields=["status", "attempts", "error", "traceback"])


def webhook_event_process(*, webhook_event_id: uuid.UUID | str, message_id: uuid.UUID | str) -> str:
    """Process a recorded event once per outbox message; returns the outcome.

    Must run outside any transaction. First asks the provider to confirm the event where its
    adapter requires it (`_confirmed_envelope`, no transaction open), then opens one (via
    `consume_once`) holding the inbox row of (`payments.process_webhook`, message id), the
    event's row lock and every effect; a redelivered message is a no-op. On failure everything
    rolls back, the failure is recorded on the event, and the error is re-raised for the
    consumer's retry, except for errors no retry can fix (malformed body, provider mismatch),
    which are recorded and returned.
    """
    with system_context(SYSTEM_REASON):
        pass  # audit the reason outside the processing transaction, which may roll back
    try:
        envelope = _confirmed_envelope(webhook_event_id=webhook_event_id)
        with consume_once(consumer=CONSUMER, message_id=message_id) as first:
            if not first:
                return "duplicate message: skipped"
            return _process(webhook_event_id=webhook_event_id, envelope=envelope)
    except NON_RETRYABLE as exc:
        _record_failure(webhook_event_id=webhook_event_id, exc=exc)
        logger.error("webhook event failed for good", extra={"webhook_event_id": str(webhook_event_id)})
        return f"failed: {exc}"
    except Exception as exc:
        _record_failure(webhook_event_id=webhook_event_id, exc=exc)
        raise


@transaction.atomic(durable=True)
def webhook_events_replay(
    *,
    ids: Iterable[uuid.UUID | str] | None = None,
    failed: bool = False,
    actor: User | None = None,
    actor_label: str = "",
) -> list[uuid.UUID]:
    """Queue events for processing again; one audit row per event. Returns the replayed ids.

    Outermost transaction; the caller acts in the system context (admin, CLI). Replays the
    events among `ids`, or every `failed` one with `failed=True`, never a `resolved` one (an
    operator dealt with it: final). Each gets a fresh
    `webhook.received` outbox message (a new message id, so the consumer's inbox lets it
    through); processing is idempotent, so a replay of a processed event changes nothing.
    """
    if ids is None and not failed:
        raise ValueError("name the events to replay, or pass failed=True")
    queryset = WebhookEvent.objects.all()
    if ids is not None:
        queryset = queryset.filter(pk__in=[uuid.UUID(str(i)) for i in ids])
    if failed:
        queryset = queryset.filter(status=WebhookEvent.Status.FAILED)
    queryset = queryset.exclude(status=WebhookEvent.Status.RESOLVED)
    events = list(queryset.select_for_update().order_by("received_at", "pk"))
    for event in events:
        _queue_again(event, payload={"replay": True})
        webhook_event_audit(
            event, action="webhook_event.replay", actor=actor, actor_label=actor_label, status=event.status
        )
    return [event.pk for event in events]


def webhook_event_audit(
    event: WebhookEvent, *, action: str, actor: User | None, actor_label: str, **data: object
) -> None:
    """One audit row of an operator's act on a webhook event: the event's provider, id and error
    (its first 500 characters), and `data`."""
    audit_record(
        action=action,
        tenant_id=event.tenant_id,
        actor_user=actor,
        actor_label=actor_label,
        target_type="webhook_event",
        target_id=str(event.pk),
        data={"provider": event.provider, "event_id": event.event_id, "error": event.error[:500], **data},
    )


def _publish_received(event_id: uuid.UUID, *, payload: dict[str, object] | None = None) -> None:
    """A `webhook.received` message for an event, in the caller's transaction (each one a new
    message id, so the consumer's inbox lets a replay or requeue through)."""
    outbox_publish(
        topic=TOPIC_WEBHOOK_RECEIVED,
        tenant_id=None,
        aggregate_type="webhook_event",
        aggregate_id=event_id,
        payload={"webhook_event_id": str(event_id), **(payload or {})},
    )


def _queue_again(event: WebhookEvent, *, payload: dict[str, object]) -> None:
    """`_publish_received`, and the event's `queued_at`."""
    _publish_received(event.pk, payload=payload)
    event.queued_at = timezone.now()
    event.save(update_fields=["queued_at"])


@transaction.atomic(durable=True)
def webhook_events_requeue_stale(*, older_than_seconds: float, limit: int = 500) -> list[uuid.UUID]:
    """Queue again the events still `received` more than `older_than_seconds` after their message
    was queued (`apps.outbox.requeue`: the broker lost it), and those that `failed` only because
    a refund they are about was not recorded yet (`RefundNotRecordedYet`: the consumer's retries
    ran out before the provider's answer to the refund call was stored; once it is, they land).
    One audit row per event; returns their ids.

    Outermost transaction, in the system context (the beat task's). Harmless when the message
    was only slow: processing is idempotent.
    """
    events = requeue_stale(
        WebhookEvent.objects.filter(
            Q(status=WebhookEvent.Status.RECEIVED)
            | Q(status=WebhookEvent.Status.FAILED, error__startswith=f"{RefundNotRecordedYet.__name__}:")
        ),
        queued_field="queued_at",
        fallback_field="received_at",
        older_than_seconds=older_than_seconds,
        limit=limit,
        requeue=lambda event: _publish_received(event.pk, payload={"requeued": True}),
        flow="webhook_events",
        audit=RequeueAudit(
            action="webhook_event.requeue",
            target_type="webhook_event",
            data=lambda event: {
                "provider": event.provider,
                "event_id": event.event_id,
                "received_at": event.received_at.isoformat(),
            },
        ),
    )
    return [event.pk for event in events]
