"""Writes of commerce (a package: checkout, payment state machine, receipts)."""

from apps.commerce.services.checkout import (
    LineIn,
    checkout_create,
    checkout_expire,
    checkout_payment_session_close,
    checkout_payment_session_ensure,
    checkout_payment_session_request,
    checkout_reservations_settle,
    checkouts_expire_due,
    checkouts_requeue_stale,
)
from apps.commerce.services.payment import (
    FactOutcome,
    PaymentFact,
    captures_requeue_stale,
    checkout_capture,
    checkout_capture_request,
    derive_status,
    platform_fee_minor,
    receipts_requeue_stale,
    refund_submit,
    refunds_requeue_stale,
    transaction_apply_fact,
    wallet_for,
)
from apps.commerce.services.receipts import ReceiptBusy, receipt_send

__all__ = [
    "FactOutcome",
    "LineIn",
    "PaymentFact",
    "ReceiptBusy",
    "captures_requeue_stale",
    "checkout_capture",
    "checkout_capture_request",
    "checkout_create",
    "checkout_expire",
    "checkout_payment_session_close",
    "checkout_payment_session_ensure",
    "checkout_payment_session_request",
    "checkout_reservations_settle",
    "checkouts_expire_due",
    "checkouts_requeue_stale",
    "derive_status",
    "platform_fee_minor",
    "receipt_send",
    "receipts_requeue_stale",
    "refund_submit",
    "refunds_requeue_stale",
    "transaction_apply_fact",
    "wallet_for",
]
