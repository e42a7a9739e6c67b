"""An operator's second try at a refund the provider refused (`failed`).

A failed refund is money the shopper paid and was promised back (alert:
`darkroom_refunds{status="failed"}`). Once the operator has fixed the cause (the provider
account, a dispute, a balance too low to refund from), `refund_retry` puts it back to
`requested` and queues its `payment.refund_requested` message again, as the first request did.

The provider call carries a new idempotency key (`<first key>:retry-<n>`): providers remember a
key's answer (Stripe for 24 hours, errors included), so the first key would only fetch the
first refusal again. A new key cannot refund twice: the refusal means nothing was refunded, and
providers refuse to refund more than was charged.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from apps.commerce.models import Refund
from apps.commerce.services.payment import TOPIC_REFUND_REQUESTED
from apps.outbox.services import outbox_publish
from apps.tenancy.models import User
from apps.tenancy.services import audit_record

RETRY_KEY_MARK = ":retry-"


def _retry_key(idempotency_key: str, attempt: int) -> str:
    return f"{idempotency_key.split(RETRY_KEY_MARK)[0]}{RETRY_KEY_MARK}{attempt}"


@transaction.atomic
def refund_retry(*, refund_id: int, actor_label: str, actor_user: User | None = None) -> bool:
    """Queue a `failed` refund again (status `requested`, a new provider idempotency key, its
    message, one `refund.retry` audit row), in the caller's transaction. False, writing nothing,
    for a refund that is not `failed` (already requested again, or submitted)."""
    refund = Refund.objects.select_for_update().filter(pk=refund_id).first()
    if refund is None or refund.status != Refund.Status.FAILED:
        return False
    previous_key = refund.idempotency_key
    refund.status = Refund.Status.REQUESTED
    refund.idempotency_key = _retry_key(previous_key, refund.attempts)
    refund.queued_at = timezone.now()
    refund.save(update_fields=["status", "idempotency_key", "queued_at"])
    outbox_publish(
        topic=TOPIC_REFUND_REQUESTED,
        tenant_id=refund.tenant_id,
        aggregate_type="refund",
        aggregate_id=refund.pk,
        payload={"refund_id": refund.pk},
    )
    audit_record(
        action="refund.retry",
        tenant_id=refund.tenant_id,
        actor_user=actor_user,
        actor_label=actor_label,
        target_type="refund",
        target_id=str(refund.pk),
        data={
            "amount_minor": refund.amount_minor,
            "currency": refund.currency,
            "last_error": refund.last_error[:500],
            "previous_key": previous_key,
            "key": refund.idempotency_key,
        },
    )
    return True
