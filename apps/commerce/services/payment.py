"""The payment state machine and what follows from it: fulfilment (entitlements, wallet
credits, receipt), refunds of payments Darkroom must not keep, revocation after a refund.

Facts, not transitions. A provider event becomes a `PaymentFact` (paid, failed, expired,
refunded). The first time a fact is seen its timestamp is recorded on the `Transaction`; the
status is then DERIVED with a fixed precedence, refunded > paid > failed > expired > pending.
Hence duplicates change nothing and arrival order does not matter: a refund seen before the
payment ends `refunded`, and the later payment changes nothing. Effects run only on a change of
the derived status, under the checkout's row lock, and every effect is also guarded by a
database key, so each happens exactly once:

* → paid, checkout still open and the amount right: checkout `paid`; one entitlement per
  (transaction, photo) or (transaction, event) for bulk; one ledger credit per sale line to the
  photographer's wallet, net of PLATFORM_FEE_BPS, idempotency key `sale:<checkout>:<line>`; one
  `Receipt` plus a `checkout.paid` outbox message (the email goes out after commit).
* → paid, but the checkout expired, failed or was refunded meanwhile, or the amount differs:
  a `Refund` (unique per transaction and reason) plus a `payment.refund_requested` outbox
  message; its consumer calls the provider's refund with the refund's idempotency key.
* paid again, by another charge (a payment id other than the one stored, for a payment charged
  already: Flutterwave's hosted page takes a second successful transaction under one tx_ref): a
  `duplicate_charge` refund of all of that charge, naming it (unique per transaction and charge),
  plus its `payment.refund_requested` message; audited (`refund.second_charge`), counted
  (`darkroom_refunds_second_charge_total`), e-mailed once it lands. Nothing of the order changes:
  its status, payment, entitlements, wallet credits and stock stay as the first charge left
  them, and none of the order's sums counts that refund (`Refund.SECOND_CHARGE`). Its refund
  made in the provider's dashboard (even before Darkroom saw that charge paid) is recorded on
  it; one that fails, even after it landed, is `failed`, that charge's alone.
* → paid, checkout open and the amount right, but a photo of a confirmed line is withdrawn: the
  checkout closes unpaid (`expired`, `closed_reason` `photo_withdrawn`, stock released) and
  the whole payment is refunded (`photo_withdrawn`); nothing is granted or credited. The photo
  rows are read FOR KEY SHARE (pk order) after the checkout and transaction rows, and a
  withdrawal (`apps.catalog.withdrawal.photo_withdraw`) locks its photo FOR UPDATE, which
  conflicts: the row lock orders the two. A withdrawal committed first is seen here and the
  payment refused; one that comes after waits for this transaction's commit, and the sale
  stands as a purchase made before the withdrawal. Never paid for a photo withdrawn before the
  payment. Event-scope (bulk) lines name no photo: a bulk purchase just does not cover the
  withdrawn photos. A payment that lands after the withdrawal's consumer closed the checkout
  (`checkout_close_for_withdrawn_photo`) is refunded as a late one would be, with the
  `photo_withdrawn` reason.
* → failed / expired / refunded while open: the checkout closes and its stock is released
  (once: reservations move confirmed → released under their row locks).
* → refunded after fulfilment: entitlements revoked, and each wallet credit reversed by a debit
  with key `refund:<checkout>:<line>` (the line's net in its currency, whatever the refunds
  add up to; a payment given back unfulfilled, e.g. one charged in another currency, reverses
  nothing: `charged_currency`).
* → refunded, whatever came before: a `checkout.refunded` message, whose consumer e-mails the
  shopper (`refund_mail.py`).

A studio refunds a paid order (`checkout_refund_request`) through the same path: a `studio`
refund of the whole amount and its message; the money side lands with the provider's refund
webhook, as above. Or some items of it: a `studio_partial` refund of their lines (each line
names it). A provider's event for less than the whole payment (`transaction_apply_refund`)
lands the item refunds it confirms: their downloads revoked, their credits reversed (the same
`refund:<checkout>:<line>` keys), their prints restocked if asked, the shopper told; the
checkout stays `paid` until the refunds add up to the whole payment, which is then `refunded`
as above.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, Q
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from apps.catalog.models import Photo, ProductKind
from apps.commerce.errors import (
    CheckoutNotFound,
    CheckoutNotRefundable,
    PaidWithoutAmount,
    PartialRefundUnnamed,
    PaymentForUnknownCheckout,
    PrintsNotRestockable,
    RefundAlreadyRequested,
    RefundAmountUnreadable,
    RefundCurrencyMismatch,
    RefundExceedsPayment,
    RefundLinesInvalid,
    RefundNotRecordedYet,
    RefundNotSettleable,
    RefundTotalAmbiguous,
    SecondChargeRefundedInPart,
)
from apps.commerce.inventory import get_strategy
from apps.commerce.models import (
    PROVIDER_REFERENCE_FIELD,
    Checkout,
    CheckoutLine,
    CheckoutShipping,
    Entitlement,
    InventoryReservation,
    Receipt,
    Refund,
    Transaction,
)
from apps.commerce.services.refund_mail import TOPIC_CHECKOUT_REFUNDED
from apps.core.mail import mail_message_id
from apps.ledger.models import LedgerAccount
from apps.ledger.services import EntryIn, ledger_account_create, ledger_entries_append
from apps.outbox.requeue import RequeueAudit, requeue_stale
from apps.outbox.services import outbox_publish
from apps.payments.providers.base import ProviderError, money_text
from apps.payments.providers.registry import PROVIDER_CLASSES, get_provider
from apps.tenancy.models import Organization, User
from apps.tenancy.services import audit_record

logger = logging.getLogger("darkroom.commerce.payment")

TOPIC_CHECKOUT_PAID = "checkout.paid"
TOPIC_REFUND_REQUESTED = "payment.refund_requested"
TOPIC_CAPTURE_REQUESTED = "payment.capture_requested"
TOPIC_RESTOCK_REQUESTED = "refund.restock_requested"

# What the currency check constraints take (`CURRENCY_PATTERN`), matched whole.
_CURRENCY_CODE = re.compile(r"[A-Z]{3}")

FactStatus = Literal["paid", "failed", "expired", "refunded"]
_FACT_FIELD: dict[str, str] = {
    "paid": "paid_at",
    "failed": "failed_at",
    "expired": "expired_at",
    "refunded": "refunded_at",
}
_CLOSED_BY: dict[str, str] = {
    Transaction.Status.FAILED: Checkout.Status.FAILED,
    Transaction.Status.EXPIRED: Checkout.Status.EXPIRED,
    Transaction.Status.REFUNDED: Checkout.Status.REFUNDED,
}


@dataclass(frozen=True)
class PaymentFact:
    """What a provider (or Darkroom's own expiry) says about a checkout's payment.

    `amount_minor`/`currency`: what was charged (paid) or refunded (refunded), when known.
    `source` names where the fact came from (provider:event id), for logs and outcomes.
    """

    status: FactStatus
    source: str
    amount_minor: int | None = None
    currency: str | None = None
    payment_id: str | None = None
    reference: str | None = None


@dataclass
class FactOutcome:
    before: str | None
    after: str | None
    effects: list[str] = field(default_factory=list)

    def describe(self) -> str:
        change = f"{self.before} -> {self.after}" if self.before != self.after else f"{self.after} (no change)"
        return f"{change}; {', '.join(self.effects) or 'no effect'}"


def derive_status(txn: Transaction) -> str:
    """The transaction's status from its recorded facts (precedence: see the module docstring)."""
    if txn.refunded_at is not None:
        return Transaction.Status.REFUNDED
    if txn.paid_at is not None:
        return Transaction.Status.PAID
    if txn.failed_at is not None:
        return Transaction.Status.FAILED
    if txn.expired_at is not None:
        return Transaction.Status.EXPIRED
    return Transaction.Status.PENDING


@transaction.atomic
def transaction_apply_fact(*, tenant_id: int, checkout_id: uuid.UUID | str, fact: PaymentFact) -> FactOutcome:
    """Record a payment fact for a checkout and run the effects of any status change.

    Joins the caller's transaction (the webhook consumer's, which also holds its inbox row), in
    the checkout's tenant context. Locks the checkout row, then its transaction row (FOR UPDATE),
    so concurrent facts for one checkout apply one after the other; a payment that would fulfil
    the checkout then reads its lines' photos FOR KEY SHARE (no sale of a withdrawn photo: see
    the module docstring). Idempotent. Raises PaymentForUnknownCheckout.
    """
    checkout = Checkout.objects.select_for_update().filter(tenant_id=tenant_id, pk=checkout_id).first()
    if checkout is None:
        raise PaymentForUnknownCheckout(f"Checkout {checkout_id} does not exist.")
    return apply_fact_locked(checkout=checkout, fact=fact, now=timezone.now())


def apply_fact_locked(
    *, checkout: Checkout, fact: PaymentFact, now: datetime, event_refund_known: bool = False
) -> FactOutcome:
    """`transaction_apply_fact` for a checkout whose row the caller has locked (its transaction).
    `event_refund_known`: a "refunded" fact comes from an event about one of Darkroom's own
    refunds, which brings no money Darkroom has no row for (`_on_refunded`).

    Raises PaidWithoutAmount for a paid fact that does not say what was charged (nothing is
    written): no amount and currency, or ones no charge has (`_readable_charge`).
    """
    if fact.status == "paid" and not _readable_charge(fact):
        raise PaidWithoutAmount(
            f"{fact.source} says paid without a readable amount and currency "
            f"({fact.amount_minor!r} {str(fact.currency)[:20]!r}): checkout {checkout.pk} is left as it is."
        )
    if fact.reference:
        _remember_reference(checkout=checkout, reference=fact.reference)
    txn = Transaction.objects.select_for_update().filter(checkout_id=checkout.pk).first()
    if txn is None:
        # Never payable (still reserving, or sold out): no session exists, nothing was charged.
        outcome = FactOutcome(before=None, after=None)
        if fact.status in ("expired", "failed") and checkout.status in Checkout.OPEN_STATUSES:
            outcome.effects += _close(checkout=checkout, status=Checkout.Status.EXPIRED, now=now)
        return outcome
    if fact.status == "paid" and _second_charge(txn=txn, fact=fact):
        return _refund_second_charge(checkout=checkout, txn=txn, fact=fact, now=now)
    before = txn.status
    column = _FACT_FIELD[fact.status]
    update = ["status", "updated_at"]
    if getattr(txn, column) is None:
        setattr(txn, column, now)
        update.append(column)
    if fact.payment_id and not txn.payment_id:
        txn.payment_id = fact.payment_id
        update.append("payment_id")
    txn.status = derive_status(txn)
    outcome = FactOutcome(before=before, after=txn.status)
    if txn.status != before:
        if txn.status == Transaction.Status.PAID:
            outcome.effects += _on_paid(checkout=checkout, txn=txn, fact=fact, now=now)
            update += ["fulfilled_at", "refund_requested_at"]
        elif txn.status == Transaction.Status.REFUNDED:
            outcome.effects += _on_refunded(checkout=checkout, txn=txn, now=now, event_refund_known=event_refund_known)
        elif checkout.status in Checkout.OPEN_STATUSES:
            outcome.effects += _close(checkout=checkout, status=_CLOSED_BY[txn.status], now=now)
    txn.save(update_fields=update)
    logger.info(
        "payment fact applied",
        extra={
            "checkout_id": str(checkout.pk),
            "fact": fact.status,
            "source": fact.source,
            "outcome": outcome.describe(),
        },
    )
    return outcome


_BIGINT_MAX = 2**63 - 1


def _readable_charge(fact: PaymentFact) -> bool:
    """Whether a paid fact says what was charged: a positive amount of minor units a bigint holds,
    in a three-letter code. Anything else (nothing, or less, charged; an amount or currency no
    `Refund` row could hold) is no charge to compare with the checkout nor to give back."""
    currency = fact.currency
    if not _storable_amount(fact.amount_minor):
        return False
    return isinstance(currency, str) and _CURRENCY_CODE.fullmatch(currency.upper()) is not None


def _storable_amount(amount: object) -> bool:
    """A positive amount of minor units a bigint (an `amount_minor` column) holds."""
    return isinstance(amount, int) and not isinstance(amount, bool) and 0 < amount <= _BIGINT_MAX


def _second_charge(*, txn: Transaction, fact: PaymentFact) -> bool:
    """Whether a paid fact is another charge than the payment's own: it names a payment id other
    than the one stored, for a payment charged already (paid; or refunded, since a refund names
    the charge it gives back). A fact naming no id, or a payment whose id was never stored, is
    taken for the payment's own charge."""
    charged_already = txn.paid_at is not None or txn.refunded_at is not None
    return bool(fact.payment_id and txn.payment_id and fact.payment_id != txn.payment_id and charged_already)


def _refund_second_charge(*, checkout: Checkout, txn: Transaction, fact: PaymentFact, now: datetime) -> FactOutcome:
    """Give back a second charge (`_second_charge`): a `duplicate_charge` refund of all of it, in
    the currency it was charged in, naming it (`payment_id`; its refund call refunds that charge),
    its `payment.refund_requested` message and one `refund.second_charge` audit row, once per
    charge (a database key; a redelivered or replayed event finds it). Nothing of the order
    changes: the transaction, checkout, entitlements, wallet credits and stock are the first
    charge's, and `refund_requested_at` (the order's payment going back) stays as it is. Checkout
    and transaction rows locked."""
    assert fact.payment_id and fact.amount_minor is not None and fact.currency is not None, "a readable charge"
    charged, currency = fact.amount_minor, fact.currency.upper()
    outcome = FactOutcome(before=txn.status, after=txn.status)
    refund, created = Refund.objects.get_or_create(
        tenant_id=txn.tenant_id,
        transaction=txn,
        reason=Refund.Reason.DUPLICATE_CHARGE,
        payment_id=fact.payment_id,
        defaults={
            "amount_minor": charged,
            "currency": currency,
            "idempotency_key": _second_charge_key(checkout=checkout, payment_id=fact.payment_id),
            "queued_at": now,
        },
    )
    if not created:
        if refund.landed_at is not None and (refund.amount_minor, refund.currency) != (charged, currency):
            # Refunded at the provider before this event came (`_second_charge_refunded_first`), for
            # another figure than the charge's.
            logger.error(
                "a second charge was refunded at the provider for another amount than it charged: for an operator",
                extra={"checkout_id": str(checkout.pk), "refund_id": refund.pk, "payment_id": fact.payment_id},
            )
        given = "given back already" if refund.landed_at is not None else "refund already requested"
        outcome.effects.append(f"second charge {fact.payment_id}: {given}")
        return outcome
    _publish_refund_requested(refund)
    audit_record(
        action="refund.second_charge",
        tenant_id=txn.tenant_id,
        actor_label=f"provider:{checkout.provider}",
        target_type="checkout",
        target_id=str(checkout.pk),
        data={
            "refund_id": refund.pk,
            "payment_id": fact.payment_id,
            "first_payment_id": txn.payment_id,
            "amount_minor": charged,
            "currency": currency,
            "source": fact.source,
        },
    )
    logger.warning(
        "a checkout already paid was charged again: the second charge is refunded",
        extra={"checkout_id": str(checkout.pk), "refund_id": refund.pk, "payment_id": fact.payment_id},
    )
    outcome.effects.append(f"second charge {fact.payment_id} of {charged} {currency}: refund requested")
    return outcome


def _remember_reference(*, checkout: Checkout, reference: str) -> None:
    """Store the provider reference a webhook names if the session's reference was never stored
    (e.g. the session was created but storing it failed): a refund needs it."""
    column = PROVIDER_REFERENCE_FIELD[checkout.provider]
    if getattr(checkout, column) is None:
        setattr(checkout, column, reference)
        checkout.save(update_fields=[column, "updated_at"])


# --- effects -------------------------------------------------------------------------------


def _close(*, checkout: Checkout, status: str, now: datetime, closed_reason: str = "") -> list[str]:
    """Close an open checkout unpaid and give its stock back (once). Checkout row locked.
    `closed_reason` (with `expired` only, a check constraint): why it closed before its expiry."""
    checkout.status = status
    update = ["status", "updated_at"]
    if closed_reason:
        checkout.closed_reason = closed_reason
        update.append("closed_reason")
    checkout.save(update_fields=update)
    reservations = list(InventoryReservation.objects.select_for_update().filter(checkout_id=checkout.pk).order_by("pk"))
    released = get_strategy().release(reservations=reservations, now=now) if reservations else 0
    CheckoutLine.objects.filter(
        checkout_id=checkout.pk,
        state__in=[CheckoutLine.State.CONFIRMED, CheckoutLine.State.RESERVED],
        reservation__status=InventoryReservation.Status.RELEASED,
    ).update(state=CheckoutLine.State.RELEASED)
    return [f"checkout {status}", f"{released} reservation(s) released"]


def _on_paid(*, checkout: Checkout, txn: Transaction, fact: PaymentFact, now: datetime) -> list[str]:
    assert fact.amount_minor is not None and fact.currency is not None, "apply_fact_locked refuses them"
    charged, currency = fact.amount_minor, fact.currency.upper()
    if charged != txn.amount_minor or currency != txn.currency:
        effects = [f"amount mismatch: charged {charged} {currency}, expected {txn.amount_minor} {txn.currency}"]
        if checkout.status in Checkout.OPEN_STATUSES:
            effects += _close(checkout=checkout, status=Checkout.Status.FAILED, now=now)
        if charged > 0:
            effects += _request_refund(
                txn=txn, reason=Refund.Reason.AMOUNT_MISMATCH, amount_minor=charged, currency=currency, now=now
            )
        return effects
    if checkout.status not in (Checkout.Status.AWAITING_PAYMENT, Checkout.Status.AWAITING_PAYMENT_SESSION):
        # Expired (stock released), failed, or otherwise closed: the money goes back.
        reason = _late_refund_reason(checkout)
        return [
            f"checkout is {checkout.status}",
            *_request_refund(txn=txn, reason=reason, amount_minor=charged, currency=currency, now=now),
        ]
    lines = list(checkout.lines.filter(state=CheckoutLine.State.CONFIRMED).order_by("position"))
    withdrawn = _withdrawn_photos_key_share(tenant_id=checkout.tenant_id, lines=lines)
    if withdrawn:
        return [
            f"photo(s) {', '.join(map(str, withdrawn))} withdrawn",
            *_close(
                checkout=checkout,
                status=Checkout.Status.EXPIRED,
                now=now,
                closed_reason=Checkout.ClosedReason.PHOTO_WITHDRAWN,
            ),
            *_request_refund(
                txn=txn, reason=Refund.Reason.PHOTO_WITHDRAWN, amount_minor=charged, currency=currency, now=now
            ),
        ]
    return _fulfil(checkout=checkout, txn=txn, lines=lines, now=now)


def _late_refund_reason(checkout: Checkout) -> str:
    """Why a payment for a checkout that no longer awaits it is given back."""
    if checkout.status != Checkout.Status.EXPIRED:
        return Refund.Reason.NOT_FULFILLABLE
    if checkout.closed_reason == Checkout.ClosedReason.PHOTO_WITHDRAWN:
        return Refund.Reason.PHOTO_WITHDRAWN
    return Refund.Reason.LATE_PAYMENT


# FOR KEY SHARE: conflicts with the withdrawal's FOR UPDATE (and with deleting the row), not with
# the drop-in run's FOR NO KEY UPDATE nor with other payments' locks on the same photo. Ordered by
# id, so two payments lock shared photos in the same order.
_PHOTOS_KEY_SHARE_SQL = f"""
    SELECT id, withdrawn_at IS NOT NULL
      FROM {Photo._meta.db_table}
     WHERE tenant_id = %s AND id = ANY(%s::bigint[])
     ORDER BY id
       FOR KEY SHARE
"""


def _withdrawn_photos_key_share(*, tenant_id: int, lines: list[CheckoutLine]) -> list[int]:
    """Ids of the withdrawn photos among those the `lines` name (bulk lines name none), reading
    every one of those photo rows under a FOR KEY SHARE lock held to the end of the caller's
    transaction: a withdrawal committed before is seen, and one after waits for that commit (see
    the module docstring). In the caller's transaction, after the checkout and transaction rows
    are locked (lock order: checkout → transaction → photos → reservations → stock)."""
    photo_ids = sorted({line.photo_id for line in lines if line.photo_id is not None})
    if not photo_ids:
        return []
    with connection.cursor() as cursor:
        cursor.execute(_PHOTOS_KEY_SHARE_SQL, [tenant_id, photo_ids])
        return [photo_id for photo_id, withdrawn in cursor.fetchall() if withdrawn]


def _fulfil(*, checkout: Checkout, txn: Transaction, lines: list[CheckoutLine], now: datetime) -> list[str]:
    """Grant and credit the confirmed `lines` of an open checkout paid in full (none of whose
    photos is withdrawn, `_on_paid` checked under the photos' row locks): an entitlement per
    download and bulk line (prints are shipped, not downloaded), a wallet credit per line, a
    receipt. Checkout row locked."""
    checkout.status = Checkout.Status.PAID
    checkout.save(update_fields=["status", "updated_at"])
    Entitlement.objects.bulk_create(
        [
            Entitlement(
                tenant_id=checkout.tenant_id,
                transaction=txn,
                checkout=checkout,
                scope=Entitlement.Scope.PHOTO if line.photo_id else Entitlement.Scope.EVENT,
                event_id=line.event_id,
                photo_id=line.photo_id,
                email=checkout.email,
                granted_at=now,
            )
            for line in lines
            # A print is the printed photo, shipped; its original is the download's to sell.
            if line.kind != ProductKind.PRINT
        ],
        ignore_conflicts=True,  # (transaction, photo) and (transaction, event) are unique
    )
    credits = _wallet_entries(checkout=checkout, lines=lines, kind="credit", prefix="sale")
    appended = ledger_entries_append(tenant=_organization(checkout.tenant_id), entries=credits) if credits else None
    Receipt.objects.create(
        tenant_id=checkout.tenant_id,
        checkout=checkout,
        email=checkout.email,
        message_id=mail_message_id(f"receipt-{checkout.pk}"),
        queued_at=now,
    )
    _publish_checkout_paid(tenant_id=checkout.tenant_id, checkout_id=checkout.pk)
    txn.fulfilled_at = now
    return [
        "checkout paid",
        f"{Entitlement.objects.filter(transaction=txn).count()} entitlement(s)",
        f"{appended.created if appended else 0} wallet credit(s)",
        "receipt queued",
    ]


def _publish_checkout_paid(*, tenant_id: int, checkout_id: uuid.UUID) -> None:
    """The message that sends the receipt (`receipt_send` is its consumer)."""
    outbox_publish(
        topic=TOPIC_CHECKOUT_PAID,
        tenant_id=tenant_id,
        aggregate_type="checkout",
        aggregate_id=checkout_id,
        payload={"checkout_id": str(checkout_id)},
    )


def _publish_refunded(checkout: Checkout, *, refund_id: int | None = None, back_at: datetime | None = None) -> None:
    """The message that e-mails the shopper (`refunded_mail_send`): about the whole payment, or
    about the item refund `refund_id`. `back_at`: the whole payment is back since then because
    an operator paid its last part back outside the provider (no provider event says so: the
    e-mail tells what the shopper was not told before that moment)."""
    payload: dict[str, object] = {"checkout_id": str(checkout.pk)}
    if refund_id is not None:
        payload["refund_id"] = refund_id
    if back_at is not None:
        payload["back_at"] = back_at.isoformat()
    outbox_publish(
        topic=TOPIC_CHECKOUT_REFUNDED,
        tenant_id=checkout.tenant_id,
        aggregate_type="checkout",
        aggregate_id=checkout.pk,
        payload=payload,
    )


def _publish_restock(checkout: Checkout, *, line_ids: list[int] | None = None) -> None:
    """The message that puts refunded prints back in stock (`refunded_prints_restock`): the
    print lines `line_ids` (an item refund), else the whole order's."""
    payload: dict[str, object] = {"tenant_id": checkout.tenant_id, "checkout_id": str(checkout.pk)}
    if line_ids is not None:
        payload["line_ids"] = line_ids
    outbox_publish(
        topic=TOPIC_RESTOCK_REQUESTED,
        tenant_id=checkout.tenant_id,
        aggregate_type="checkout",
        aggregate_id=checkout.pk,
        payload=payload,
    )


def _on_refunded(
    *,
    checkout: Checkout,
    txn: Transaction,
    now: datetime,
    paid_outside: bool = False,
    event_refund_known: bool = False,
) -> list[str]:
    """The whole payment is back: at the provider, or (`paid_outside`) once an operator recorded
    the refund that completes it paid back outside the provider (`refund_settle_outside`). The
    studio's item refunds not landed yet land now (their own prints back in stock; one e-mail
    for all, this one), then every refund of it is `landed`, and any the provider refused is
    `not_needed`. One that landed and then failed at the provider and is owed still is
    `not_needed` too when the whole payment covers it: the provider's event is about money
    Darkroom has no refund row for (a whole refund in its dashboard), or the refunds that gave
    money back add up to the payment without it; not when the event is about one of Darkroom's
    refunds (`event_refund_known`; so is an operator's settle) whose rows do not add up (a stale
    provider total).

    A provider's refund of a payment Darkroom already counts as all paid back outside it
    changes nothing more here: an operator's transfer, then a refund in the provider's
    dashboard (the shopper got it twice: logged as an error), or a late event about one of
    Darkroom's refunds landed already (nothing new)."""
    # What decides below, read once: `gave_back` does not change with the updates on the way.
    given_by = [r for r in Refund.objects.filter(transaction=txn).exclude(Refund.SECOND_CHARGE) if gave_back(r)]
    whole = whole_refund_minor(txn=txn)
    if not paid_outside and _paid_back_outside_already(given_by, whole=whole, before=now):
        if event_refund_known:
            return ["paid back already, partly outside the provider: nothing new"]
        logger.error(
            "the provider refunded a payment already paid back outside it: the shopper got it twice",
            extra={"checkout_id": str(checkout.pk)},
        )
        return ["paid back outside the provider already: nothing more to do (the shopper got it twice)"]
    effects: list[str] = ["shopper told (checkout.refunded)"]
    _publish_refunded(checkout, back_at=now if paid_outside else None)
    for refund in _partial_refunds_locked(txn):
        if refund.landed_at is None and refund.status in Refund.LIVE_STATUSES:
            effects += _land_items_refund(checkout=checkout, txn=txn, refund=refund, now=now, tell_shopper=False)
    # (a second charge's refund is no part of the payment: it lands with its own event)
    order_refunds = Refund.objects.filter(transaction=txn).exclude(Refund.SECOND_CHARGE)
    order_refunds.filter(landed_at__isnull=True, status__in=Refund.LIVE_STATUSES).update(landed_at=now)
    # A refund the provider refused is moot now that the whole payment is back (the refusal was
    # most likely because of it): nothing is owed, so it no longer alerts as `failed`.
    refused = order_refunds.filter(status=Refund.Status.FAILED).update(status=Refund.Status.NOT_NEEDED)
    if refused:
        effects.append(f"{refused} refused refund(s) not needed any more")
    # An owed refund is owed no more once the provider gave back money no row records (a whole
    # refund in its dashboard), or the refunds that gave money back add up to the payment
    # without it (the order's last refund gave back what was left, its amount included). Not
    # when an event about one of Darkroom's refunds says the whole is back while they do not
    # (that refund was sized before the other failed: a stale total): it stays owed.
    if not event_refund_known or sum(r.amount_minor for r in given_by) >= whole:
        covered = order_refunds.filter(Refund.STILL_OWED).update(status=Refund.Status.NOT_NEEDED)
        if covered:
            effects.append(f"{covered} refund(s) failed after landing covered by the whole payment back")
    if checkout.status in Checkout.OPEN_STATUSES:
        effects += _close(checkout=checkout, status=Checkout.Status.REFUNDED, now=now)
    elif checkout.status == Checkout.Status.PAID:
        checkout.status = Checkout.Status.REFUNDED
        checkout.save(update_fields=["status", "updated_at"])
        effects.append("checkout refunded")
    if (
        Refund.objects.filter(transaction=txn, reason=Refund.Reason.STUDIO, restock_prints=True)
        .filter(status__in=Refund.LIVE_STATUSES)
        .exists()
    ):
        _publish_restock(checkout)
        effects.append("prints to go back in stock (refund.restock_requested)")
    if txn.fulfilled_at is not None:
        revoked = Entitlement.objects.filter(transaction=txn, revoked_at__isnull=True).update(revoked_at=now)
        lines = list(checkout.lines.filter(state=CheckoutLine.State.CONFIRMED).order_by("position"))
        debits = _wallet_entries(checkout=checkout, lines=lines, kind="debit", prefix="refund")
        appended = ledger_entries_append(tenant=_organization(checkout.tenant_id), entries=debits) if debits else None
        effects += [f"{revoked} entitlement(s) revoked", f"{appended.created if appended else 0} credit(s) reversed"]
    return effects


def _partial_refunds_locked(txn: Transaction) -> list[Refund]:
    """The partial refunds of a payment (`Refund.PARTIAL_REASONS`), locked, oldest first (after the
    checkout and transaction rows: the lock order of `checkout_refund_request`)."""
    return list(
        Refund.objects.select_for_update().filter(transaction=txn, reason__in=Refund.PARTIAL_REASONS).order_by("pk")
    )


def _land_items_refund(
    *, checkout: Checkout, txn: Transaction, refund: Refund, now: datetime, tell_shopper: bool
) -> list[str]:
    """The money side of a studio refund of some items, once the provider confirmed it: their
    downloads revoked (a download line's photo, a bulk line's event; prints grant none), each
    line's wallet credit reversed (key `refund:<checkout>:<line>`, the key the whole refund uses,
    so nothing is reversed twice), their prints back in stock if asked (a
    `refund.restock_requested` message naming the lines), and, with `tell_shopper`, a
    `checkout.refunded` message naming the refund. Marks the refund landed. Rows locked."""
    lines = list(refund.lines.filter(state=CheckoutLine.State.CONFIRMED).order_by("position"))
    photo_ids = [line.photo_id for line in lines if line.kind == ProductKind.DOWNLOAD and line.photo_id]
    event_ids = [line.event_id for line in lines if line.kind == ProductKind.BULK]
    revoked = (
        Entitlement.objects.filter(transaction=txn, revoked_at__isnull=True)
        .filter(
            Q(scope=Entitlement.Scope.PHOTO, photo_id__in=photo_ids)
            | Q(scope=Entitlement.Scope.EVENT, event_id__in=event_ids)
        )
        .update(revoked_at=now)
    )
    debits = _wallet_entries(checkout=checkout, lines=lines, kind="debit", prefix="refund")
    appended = ledger_entries_append(tenant=_organization(checkout.tenant_id), entries=debits) if debits else None
    effects = [
        f"refund {refund.pk} landed ({len(lines)} item(s))",
        f"{revoked} entitlement(s) revoked",
        f"{appended.created if appended else 0} credit(s) reversed",
    ]
    prints = [line.pk for line in lines if line.kind == ProductKind.PRINT]
    if refund.restock_prints and prints:
        _publish_restock(checkout, line_ids=prints)
        effects.append(f"{len(prints)} print line(s) to go back in stock")
    if tell_shopper:
        _publish_refunded(checkout, refund_id=refund.pk)
        effects.append("shopper told (checkout.refunded)")
    refund.landed_at = now
    refund.save(update_fields=["landed_at"])
    return effects


def whole_refund_minor(*, txn: Transaction) -> int:
    """What a provider's refunds must add up to for the whole payment to be back: what Darkroom
    asked it to give back for a payment it must not keep (the amount actually charged, which is
    not the checkout's total after an amount mismatch), else the checkout's amount (a paid
    order, refunded by the studio in one go or item by item, or at the provider). A second
    charge's refund is no part of it."""
    requested = (
        Refund.objects.filter(transaction=txn)
        .exclude(reason__in=[*Refund.PARTIAL_REASONS, Refund.Reason.STUDIO, Refund.Reason.DUPLICATE_CHARGE])
        .aggregate(most=Max("amount_minor"))["most"]
    )
    return int(requested) if requested is not None else txn.amount_minor


@transaction.atomic
def transaction_apply_refund(
    *,
    tenant_id: int,
    checkout_id: uuid.UUID | str,
    fact: PaymentFact,
    provider_refund_id: str | None = None,
    refund_amount_minor: int | None = None,
) -> FactOutcome:
    """A provider says (some of) a payment was refunded (`fact.status` "refunded";
    `fact.amount_minor` what was refunded, cumulative where the provider reports a total;
    `provider_refund_id` the one refund the event is about, and `refund_amount_minor` that
    refund's own amount, where it says it).

    The whole payment back (the amount reaches `whole_refund_minor` while that total cannot be
    stale, `_whole_back`; an event with no amount; or the partial refunds landed so far add up to
    it): the `refunded` fact, as `transaction_apply_fact`. Less: the studio's item refund it names lands
    (`_land_items_refund`). A refund it names that is none of Darkroom's was made in the
    provider's dashboard: it is recorded as a landed `provider_partial` refund
    (`_record_refunded_at_provider`), which revokes nothing (Darkroom cannot tell which items it
    was for) but counts toward the whole payment and leaves less of it for the studio's later
    refunds.

    An event about the refund of a second charge (`duplicate_charge`: it names that refund, or
    that charge) lands that refund alone (`_second_charge_refund_event`), also one made in the
    provider's dashboard; one naming a charge Darkroom has not seen yet, at a provider that can
    charge a session twice, records that charge's refund, given back (`_refund_of_unseen_charge`,
    `_second_charge_refunded_first`). None of the order's sums below counts it.

    Joins the caller's transaction (the webhook consumer's), in the tenant's context; locks the
    checkout, its transaction, then its partial refunds. A total naming no refund for a payment
    refunded whole already changes nothing (whatever it says, the whole includes it). Raises
    PaymentForUnknownCheckout, PartialRefundUnnamed (nothing written) for less than the whole
    payment naming no refund, RefundTotalAmbiguous (nothing written) for a whole total naming no
    refund after a refund of the payment failed at the provider, or for a refund Darkroom does
    not know named with only the total (no own amount), and RefundNotRecordedYet (retryable: the
    consumer's retries, then the stale-event sweep) for an event naming a refund id Darkroom has
    not stored yet while a refund of the payment (an item refund, the whole order's) awaits the
    provider's answer, or for part of a payment whose "paid" event has not been applied yet.
    Raises, nothing written, RefundAmountUnreadable for an amount (the fact's or the refund's
    own) outside 1..2^63-1, and RefundCurrencyMismatch for a fact in a currency other than the
    payment's, or with an amount and no currency (`_refund_checked`).
    """
    for amount in (fact.amount_minor, refund_amount_minor):
        if amount is not None and not _storable_amount(amount):
            raise RefundAmountUnreadable(
                f"{fact.source} reports a refund of {str(amount)[:40]} minor units, which no refund can be: "
                f"checkout {checkout_id} is left as it is."
            )
    checkout = Checkout.objects.select_for_update().filter(tenant_id=tenant_id, pk=checkout_id).first()
    if checkout is None:
        raise PaymentForUnknownCheckout(f"Checkout {checkout_id} does not exist.")
    now = timezone.now()
    txn = Transaction.objects.select_for_update().filter(checkout_id=checkout.pk).first()
    # Every refund of the payment, locked in the order `checkout_refund_request` locks them.
    refunds = list(Refund.objects.select_for_update().filter(transaction=txn).order_by("pk")) if txn else []
    second = _second_charge_refund_of(refunds=refunds, fact=fact, provider_refund_id=provider_refund_id)
    if txn is not None and second is not None:
        return _second_charge_refund_event(
            checkout=checkout,
            txn=txn,
            refund=second,
            fact=fact,
            provider_refund_id=provider_refund_id,
            refund_amount_minor=refund_amount_minor,
            now=now,
        )
    if txn is not None and _refund_of_unseen_charge(
        checkout=checkout, txn=txn, refunds=refunds, fact=fact, provider_refund_id=provider_refund_id
    ):
        return _second_charge_refunded_first(
            checkout=checkout,
            txn=txn,
            fact=fact,
            provider_refund_id=provider_refund_id,
            refund_amount_minor=refund_amount_minor,
            now=now,
        )
    # From here on the order's own payment: a second charge's refund is none of it.
    refunds = [r for r in refunds if r.reason != Refund.Reason.DUPLICATE_CHARGE]
    if txn is not None:
        _refund_checked(checkout=checkout, txn=txn, fact=fact)
    if txn is not None and provider_refund_id and _failed_attempt(refunds, provider_refund_id):
        # An attempt the provider reported failed: its "succeeded" event, sent before the failure,
        # was delivered late. Its money did not go back.
        return FactOutcome(
            before=txn.status,
            after=txn.status,
            effects=[f"refund {provider_refund_id} failed at the provider: its earlier success changes nothing"],
        )
    if txn is None or fact.amount_minor is None:
        return apply_fact_locked(checkout=checkout, fact=fact, now=now)
    whole = whole_refund_minor(txn=txn)
    if _whole_back(
        fact=fact,
        whole=whole,
        refunds=refunds,
        provider_refund_id=provider_refund_id,
        refund_amount_minor=refund_amount_minor,
    ):
        known = bool(provider_refund_id) and any(r.provider_refund_id == provider_refund_id for r in refunds)
        return apply_fact_locked(checkout=checkout, fact=fact, now=now, event_refund_known=known)
    if not provider_refund_id:
        if txn.status == Transaction.Status.REFUNDED:  # a total of what the whole payment includes
            return FactOutcome(
                before=txn.status,
                after=txn.status,
                effects=[f"refund total {fact.amount_minor} of {whole}, naming no refund: refunded whole already"],
            )
        if fact.amount_minor >= whole:
            raise RefundTotalAmbiguous(
                f"{fact.source} reports the whole payment refunded ({fact.amount_minor} of {whole}) without "
                "naming the refund, after a refund of it failed at the provider: its total may predate that "
                f"failure. Look the payment up in the {checkout.provider} dashboard."
            )
        raise PartialRefundUnnamed(
            f"{fact.source} reports {fact.amount_minor} of {whole} refunded without naming the refund: "
            "Darkroom cannot tell which refund completed."
        )
    if txn.paid_at is None:
        # The provider's "paid" event has not been applied yet (the checkout may have expired or
        # failed meanwhile: a late payment): its refunds come after it.
        raise RefundNotRecordedYet(
            f"{fact.source} reports part of a payment refunded before the payment is recorded: trying again later."
        )
    outcome = FactOutcome(before=txn.status, after=txn.status)
    if txn.status != Transaction.Status.PAID:  # refunded whole already: a part changes nothing
        outcome.effects.append(f"partial refund {fact.amount_minor} of {whole}: nothing to land")
        return outcome
    # Charged and not refunded whole: a sale, or a payment Darkroom gives back (late, mismatched).
    partials = [r for r in refunds if r.reason in Refund.PARTIAL_REASONS]
    # A refund of the payment (an item refund, the whole order's) awaits the provider's answer:
    # money an event reports beyond the known refunds may be its.
    awaited = any(r.status == Refund.Status.REQUESTED for r in refunds)
    landing = _refunds_confirmed(
        partials=partials, fact=fact, provider_refund_id=provider_refund_id, answer_awaited=awaited
    )
    back = sum(r.amount_minor for r in partials if (r.landed_at is not None and gave_back(r)) or r in landing)
    at_provider = _refunded_at_provider_minor(
        refunds=refunds,
        fact=fact,
        provider_refund_id=provider_refund_id,
        refund_amount_minor=refund_amount_minor,
    )
    if not landing and not at_provider:
        outcome.effects.append(f"partial refund {fact.amount_minor} of {whole}: nothing to land")
        return outcome
    if at_provider:
        outcome.effects += _record_refunded_at_provider(
            checkout=checkout,
            txn=txn,
            amount_minor=at_provider,
            fact=fact,
            provider_refund_id=provider_refund_id,
            now=now,
            # (a payment Darkroom gives back whole gets one e-mail once it is all back)
            tell_shopper=back + at_provider < whole and checkout.status == Checkout.Status.PAID,
        )
    if back + at_provider >= whole:  # the order's last items, or the rest of it: the whole payment is back
        whole_outcome = apply_fact_locked(checkout=checkout, fact=fact, now=now, event_refund_known=not at_provider)
        whole_outcome.effects[:0] = outcome.effects
        return whole_outcome
    for refund in landing:
        outcome.effects += _land_items_refund(checkout=checkout, txn=txn, refund=refund, now=now, tell_shopper=True)
    logger.info(
        "partial refund landed",
        extra={"checkout_id": str(checkout.pk), "source": fact.source, "outcome": outcome.describe()},
    )
    return outcome


@transaction.atomic
def refund_apply_provider_failure(
    *, tenant_id: int, checkout_id: uuid.UUID | str, provider_refund_id: str | None, reason: str, source: str
) -> FactOutcome:
    """A provider says a refund it had accepted did not complete (Stripe `refund.failed`): the
    money went back to the merchant's balance, not to the shopper.

    Darkroom's refund with that id, accepted and not landed, turns `failed` with the provider's
    reason, as a refusal does: `darkroom_refunds{status="failed"}` alerts (runbook "Refund
    failed"), and its items can be refunded again. One that landed already (its downloads were
    revoked and its credits reversed) keeps its state and effects, for an operator, but no longer
    counts as money given back (`gave_back`) until an operator settles it
    (`refund_settle_outside`): its `provider_failed_at` and `last_error` say so
    (`darkroom_refunds_failed_after_landing_total`), `refund.failed_after_landing` is audited, and
    a `refund.failed_after_landing` message e-mails the shopper that it did not reach them. A
    second charge's refund (`duplicate_charge`) that landed is `failed` instead, no longer landed
    (audited and e-mailed the same way): nothing of the order ever counted it, so nothing is left
    standing, and it alerts, is retried (`refund_retry`) or settled as a refused refund is. A
    failed attempt's id moves to `failed_provider_refund_ids`, so its late "succeeded" event
    lands nothing and records no dashboard refund (`transaction_apply_refund`), and a retry gets
    its own. An id Darkroom has not stored while a refund of the payment awaits the provider's
    answer raises RefundNotRecordedYet
    (retried, as for a refund event); any other id (a refund made in the provider's dashboard
    and failed before it was ever recorded) changes nothing. Redelivered, it changes nothing
    more. Locks the checkout, its transaction, then its refunds, as the refund paths do.
    """
    checkout = Checkout.objects.select_for_update().filter(tenant_id=tenant_id, pk=checkout_id).first()
    if checkout is None:
        raise PaymentForUnknownCheckout(f"Checkout {checkout_id} does not exist.")
    txn = Transaction.objects.select_for_update().filter(checkout_id=checkout.pk).first()
    outcome = FactOutcome(before=txn.status if txn else None, after=txn.status if txn else None)
    refunds = list(Refund.objects.select_for_update().filter(transaction=txn).order_by("pk")) if txn else []
    reason = (reason or "failed")[:500]
    if not provider_refund_id:
        outcome.effects.append("a refund failed at the provider, naming none: nothing to change")
        return outcome
    if _failed_attempt(refunds, provider_refund_id):
        outcome.effects.append(f"refund {provider_refund_id} failed at the provider already: nothing to change")
        return outcome
    named = next((r for r in refunds if r.provider_refund_id == provider_refund_id), None)
    if named is None:
        if any(r.status == Refund.Status.REQUESTED for r in refunds):
            raise RefundNotRecordedYet(
                f"{source} says refund {provider_refund_id} failed, not recorded yet while a refund "
                "awaits the provider's answer: trying again later."
            )
        outcome.effects.append(f"refund {provider_refund_id} failed at the provider: not one of Darkroom's refunds")
        return outcome
    landed = named.landed_at is not None
    second = named.reason == Refund.Reason.DUPLICATE_CHARGE
    if (
        named.provider_failed_at is not None or (second and named.status != Refund.Status.SUBMITTED)
        if landed
        else named.status != Refund.Status.SUBMITTED
    ):
        outcome.effects.append(f"refund {named.pk} ({named.status}): nothing to change")
        return outcome
    named.provider_failed_at = timezone.now()
    named.last_error = f"The payment provider could not complete this refund after accepting it ({reason})."
    update = ["status", "last_error", "provider_failed_at", "provider_refund_id", "failed_provider_refund_ids"]
    if not landed or second:
        # Failed like a refusal. The attempt's id moves aside: the next attempt gets its own, and
        # this one's late "succeeded" event is known for a failed attempt's. A second charge's
        # refund too, landed or not: its landing changed nothing but the shopper's e-mail, so it
        # is simply not back (no longer landed), `failed` as a refused refund is (alerting, retried
        # or settled like one), and none of the order's refunds, lines or sums ever counts it.
        named.status = Refund.Status.FAILED
        named.failed_provider_refund_ids = [*named.failed_provider_refund_ids, provider_refund_id]
        named.provider_refund_id = None
        if second:
            named.landed_at = None
            update.append("landed_at")
    named.save(update_fields=update)
    audit_record(
        action="refund.failed_after_landing" if landed else "refund.failed_at_provider",
        tenant_id=tenant_id,
        actor_label=f"provider:{checkout.provider}",
        target_type="checkout",
        target_id=str(checkout.pk),
        data={
            "refund_id": named.pk,
            "provider_refund_id": provider_refund_id,
            "reason": reason,
            "source": source,
            **({"payment_id": named.payment_id} if second else {}),
        },
    )
    if landed:
        # The shopper was e-mailed that this money came back: tell them it did not. Once: a
        # redelivered failure returned above (`provider_failed_at` is set, or the attempt failed).
        _publish_failed_after_landing(checkout, refund_id=named.pk)
        if second:
            logger.error(
                "a second charge's landed refund failed at the provider: it is failed, for an operator to "
                "retry or settle (README runbook 'Refund failed'); the order is not concerned",
                extra={"checkout_id": str(checkout.pk), "refund_id": named.pk, "reason": reason},
            )
            outcome.effects.append(
                f"refund {named.pk} of second charge {named.payment_id} landed, then failed at the provider: failed"
            )
        else:
            logger.error(
                "a landed refund failed at the provider: the shopper has not got the money back; an operator "
                "settles it (README runbook 'Refund failed')",
                extra={"checkout_id": str(checkout.pk), "refund_id": named.pk, "reason": reason},
            )
            outcome.effects.append(f"refund {named.pk} landed, then failed at the provider: left for an operator")
        outcome.effects.append("shopper told (refund.failed_after_landing)")
    else:
        logger.error(
            "refund failed at the provider after it was accepted",
            extra={"checkout_id": str(checkout.pk), "refund_id": named.pk, "reason": reason},
        )
        outcome.effects.append(f"refund {named.pk} failed at the provider ({reason})")
    return outcome


# Beside its one producer (refund_mail.py, its consumer's module, is imported by this one).
TOPIC_REFUND_FAILED_AFTER_LANDING = "refund.failed_after_landing"


def _publish_failed_after_landing(checkout: Checkout, *, refund_id: int) -> None:
    """The message that e-mails the shopper that the landed refund `refund_id` did not reach them
    (`refund_failed_mail_send`). Joins the caller's transaction."""
    outbox_publish(
        topic=TOPIC_REFUND_FAILED_AFTER_LANDING,
        tenant_id=checkout.tenant_id,
        aggregate_type="checkout",
        aggregate_id=checkout.pk,
        payload={"checkout_id": str(checkout.pk), "refund_id": refund_id},
    )


def _refund_checked(*, checkout: Checkout, txn: Transaction, fact: PaymentFact) -> None:
    """Raise RefundCurrencyMismatch unless a refund fact is in its payment's currency (codes
    compared whatever their case: PayPal and Flutterwave may write `eur`). A refund is always in
    its payment's currency (Stripe's refund carries its charge's, PayPal's refund its capture's,
    Flutterwave's its transaction's; one naming none was read in the payment's currency by the
    caller), so one in another is not a refund of this payment, and an amount naming no currency
    cannot be counted against it. The payment's currency is the one it was charged in: a charge
    in another currency than the checkout's (`_on_paid`'s amount mismatch) is given back in its
    own, which its refund's events name."""
    if fact.currency is None and fact.amount_minor is None:
        return  # the whole payment back, saying no figure (see `transaction_apply_refund`)
    charged = charged_currency(txn=txn)
    if fact.currency is not None and fact.currency.upper() == charged.upper():
        return
    said = f"in {fact.currency[:20]!r}" if fact.currency is not None else "naming no currency"
    logger.error(
        "refund event in a currency other than its payment's: not counted",
        extra={"checkout_id": str(checkout.pk), "source": fact.source, "currency": str(fact.currency)[:20]},
    )
    raise RefundCurrencyMismatch(
        f"{fact.source} reports a refund {said}, but checkout {checkout.pk} was paid in {charged}: "
        f"nothing counted. Look the refund up in the {checkout.provider} dashboard."
    )


def charged_currency(*, txn: Transaction) -> str:
    """The currency `txn`'s payment was charged in, which its refunds are in: that of the refund
    of a charge in another currency than the checkout's (`_on_paid`'s amount mismatch, requested
    in the transaction that recorded the charge), else the checkout's. Every refund of the
    payment (Darkroom's, parts made at the provider) is stored and counted in it, so the sums
    of its refunds (`whole_refund_minor`, what is left, the shopper's e-mails) hold one currency.

    The ledger never reverses a refund's amount: a refund reverses what the sale credited, each
    line's net in the line's currency (the checkout's). A charge in another currency (or of
    another amount) is never fulfilled, so it credits nothing and its refund, whole or in parts,
    reverses nothing; a fulfilled payment was charged in the checkout's currency."""
    mismatch = Refund.objects.filter(transaction=txn, reason=Refund.Reason.AMOUNT_MISMATCH)
    return mismatch.values_list("currency", flat=True).first() or txn.currency


def _whole_back(
    *,
    fact: PaymentFact,
    whole: int,
    refunds: list[Refund],
    provider_refund_id: str | None,
    refund_amount_minor: int | None,
) -> bool:
    """Whether a refund event shows the whole payment (`whole`, `whole_refund_minor`) back by its
    figure (`fact.amount_minor`; `refunds`: the payment's, read under its row lock). If not, the
    refund it names counts by its own amount against the rows (`transaction_apply_refund`).

    A provider's refunded total is what had gone back when it made the event, and events arrive
    in any order, a retried one days late. Totals only grow while no refund of the payment fails,
    so a total that reached the whole payment is true whatever came after it: it counts, named or
    not, until a refund of the payment failed at the provider (`_failed_at_provider`: the money
    went back to the merchant and the provider's total went down). From then on a total may
    predate the failure, and only a refund the event names whose own amount (the event's, else
    Darkroom's row of it) is the whole payment shows it back. Provider event timestamps are not
    compared: they have second resolution, a redelivery keeps the first one, and Flutterwave's
    are the refund's, not the event's."""
    assert fact.amount_minor is not None
    if fact.amount_minor < whole:
        return False
    if not _failed_at_provider(refunds):
        return True
    if not provider_refund_id:
        return False
    own = refund_amount_minor
    if own is None:
        own = next((r.amount_minor for r in refunds if r.provider_refund_id == provider_refund_id), None)
    return own is not None and own >= whole


def _failed_at_provider(refunds: Iterable[Refund]) -> bool:
    """Whether a refund of a payment (`refunds`: all of them) failed at the provider after it
    accepted it, landed or not, settled or retried since."""
    return any(r.provider_failed_at is not None or r.failed_provider_refund_ids for r in refunds)


def _failed_attempt(refunds: Iterable[Refund], provider_refund_id: str) -> bool:
    """Whether `provider_refund_id` names an attempt of one of `refunds` (a payment's) that the
    provider reported failed before it landed (`Refund.failed_provider_refund_ids`)."""
    return any(provider_refund_id in r.failed_provider_refund_ids for r in refunds)


def _second_charge_refund_of(
    *, refunds: list[Refund], fact: PaymentFact, provider_refund_id: str | None
) -> Refund | None:
    """The second charge's refund a refund event is about (`refunds`: the payment's), or None
    when it is about the order's own payment: the one it names (its refund id, now or of a failed
    attempt), else the one of the charge it names (`fact.payment_id`). Raises
    RefundNotRecordedYet (retried) for an event that names neither a refund Darkroom knows nor a
    charge while a second charge's refund awaits the provider's answer: it may be that refund's,
    whose id is not stored yet, and must never be taken for the order's."""
    seconds = [r for r in refunds if r.reason == Refund.Reason.DUPLICATE_CHARGE]
    if not seconds:
        return None
    if provider_refund_id:
        for refund in refunds:
            if (
                refund.provider_refund_id == provider_refund_id
                or provider_refund_id in refund.failed_provider_refund_ids
            ):
                return refund if refund in seconds else None
    of_charge = next((r for r in seconds if fact.payment_id and r.payment_id == fact.payment_id), None)
    if of_charge is not None:
        return of_charge
    if not fact.payment_id and any(r.status == Refund.Status.REQUESTED for r in seconds):
        raise RefundNotRecordedYet(
            f"{fact.source} names neither a refund Darkroom knows nor a charge while the refund of a second "
            "charge awaits the provider's answer: trying again later."
        )
    return None


def _second_charge_refund_event(
    *,
    checkout: Checkout,
    txn: Transaction,
    refund: Refund,
    fact: PaymentFact,
    provider_refund_id: str | None,
    refund_amount_minor: int | None,
    now: datetime,
) -> FactOutcome:
    """A refund event about the second charge `refund` gives back. The one Darkroom asked for
    lands (`_land_second_charge`); a failed attempt's late success, or one landed already, changes
    nothing. Another refund of that charge (made in the provider's dashboard) gives it back as
    well: `_second_charge_refunded_elsewhere`. Raises RefundCurrencyMismatch for an event in a
    currency other than the charge's. Rows locked."""
    outcome = FactOutcome(before=txn.status, after=txn.status)
    if provider_refund_id and provider_refund_id in refund.failed_provider_refund_ids:
        outcome.effects.append(
            f"refund {provider_refund_id} failed at the provider, or was set aside: its success changes nothing"
        )
        return outcome
    _second_charge_currency_checked(refund=refund, fact=fact)
    if not provider_refund_id or refund.provider_refund_id != provider_refund_id:
        outcome.effects += _second_charge_refunded_elsewhere(
            checkout=checkout,
            txn=txn,
            refund=refund,
            fact=fact,
            provider_refund_id=provider_refund_id,
            refund_amount_minor=refund_amount_minor,
            now=now,
        )
        return outcome
    if refund.landed_at is not None or refund.status not in Refund.LIVE_STATUSES:
        outcome.effects.append(f"refund {refund.pk} of second charge {refund.payment_id}: nothing more to land")
        return outcome
    outcome.effects += _land_second_charge(checkout=checkout, refund=refund, now=now)
    return outcome


def _land_second_charge(*, checkout: Checkout, refund: Refund, now: datetime) -> list[str]:
    """A second charge's refund came back (the provider confirmed it, or an operator paid it back
    outside it): landed, and the shopper told (a `checkout.refunded` message naming it). Nothing
    else: the order is not its business. Rows locked."""
    refund.landed_at = now
    refund.save(update_fields=["landed_at"])
    _publish_refunded(checkout, refund_id=refund.pk)
    return [f"refund {refund.pk} of second charge {refund.payment_id} landed", "shopper told (checkout.refunded)"]


def _second_charge_currency_checked(*, refund: Refund, fact: PaymentFact) -> None:
    """Raise RefundCurrencyMismatch unless a refund event about the second charge `refund` gives
    back is in the currency it was charged in (or names none)."""
    if fact.currency is not None and fact.currency.upper() != refund.currency:
        raise RefundCurrencyMismatch(
            f"{fact.source} reports the refund of second charge {refund.payment_id} in {fact.currency[:20]!r}, "
            f"but it was charged in {refund.currency}: nothing counted."
        )


def _second_charge_refunded_elsewhere(
    *,
    checkout: Checkout,
    txn: Transaction,
    refund: Refund,
    fact: PaymentFact,
    provider_refund_id: str | None,
    refund_amount_minor: int | None,
    now: datetime,
) -> list[str]:
    """A refund event about the second charge `refund` gives back that names another refund than
    Darkroom's (made in the provider's dashboard, or naming none). While Darkroom's own call may
    have made it (`requested` and sent at least once: its answer is not stored yet), it waits:
    RefundNotRecordedYet (retried). Once the charge is given back (landed, or paid back outside
    the provider) it changes nothing (another refund: the shopper got it back twice, logged as an
    error). Else,
    Darkroom's refund not sent yet, refused, failed, or accepted and not landed, that charge came
    back through this one: recorded on `refund` (`_record_second_charge_at_provider`), so that
    Darkroom never sends its own or stops alerting for it. Raises SecondChargeRefundedInPart,
    nothing written, for less than all of the charge. Rows locked."""
    if refund.status == Refund.Status.REQUESTED and refund.attempts > 0:
        raise RefundNotRecordedYet(
            f"{fact.source} reports a refund of second charge {refund.payment_id} while Darkroom's refund of it "
            "awaits the provider's answer: trying again later."
        )
    if refund.landed_at is not None or refund.status not in (*Refund.OWED_STATUSES, Refund.Status.FAILED):
        if provider_refund_id:  # (one naming no refund may be a redelivery of the one that gave it back)
            logger.error(
                "a second charge given back already was refunded at the provider again: the shopper got it twice",
                extra={
                    "checkout_id": str(checkout.pk),
                    "refund_id": refund.pk,
                    "provider_refund_id": provider_refund_id,
                },
            )
        return [
            f"refund {provider_refund_id} of second charge {refund.payment_id}, given back already "
            f"({refund.status}): nothing changes"
        ]
    own = refund_amount_minor if refund_amount_minor is not None else fact.amount_minor
    if own is not None and own < refund.amount_minor:
        raise SecondChargeRefundedInPart(
            f"{fact.source} reports {money_text(own, refund.currency)} of the second charge {refund.payment_id} "
            f"({money_text(refund.amount_minor, refund.currency)}) refunded at the provider, not by Darkroom: "
            "Darkroom gives a second charge back whole, so nothing is recorded. Look the charge up in the "
            f"{checkout.provider} dashboard: once all of it is back there, resolve this event and settle "
            "Darkroom's refund of it (admin: paid back outside the provider) when it fails."
        )
    return _record_second_charge_at_provider(
        checkout=checkout, txn=txn, refund=refund, fact=fact, provider_refund_id=provider_refund_id, now=now
    )


def _refund_of_unseen_charge(
    *, checkout: Checkout, txn: Transaction, refunds: list[Refund], fact: PaymentFact, provider_refund_id: str | None
) -> bool:
    """Whether a refund event is about a charge other than the order's payment that Darkroom has
    not seen (no `duplicate_charge` refund names it: its paid event has not come, or never will):
    it names a payment id other than the one stored for a payment charged already
    (`_second_charge`), and no refund of the order's, at a provider whose session can take a
    second charge (`charges_a_session_twice`: Flutterwave). Elsewhere it is read as before, as
    about the order's payment. `refunds`: the payment's."""
    provider = PROVIDER_CLASSES.get(checkout.provider)
    if provider is None or not provider.charges_a_session_twice or not _second_charge(txn=txn, fact=fact):
        return False
    return not provider_refund_id or not any(
        r.provider_refund_id == provider_refund_id or provider_refund_id in r.failed_provider_refund_ids
        for r in refunds
    )


def _second_charge_refunded_first(
    *,
    checkout: Checkout,
    txn: Transaction,
    fact: PaymentFact,
    provider_refund_id: str | None,
    refund_amount_minor: int | None,
    now: datetime,
) -> FactOutcome:
    """A refund of a charge Darkroom has not seen (`_refund_of_unseen_charge`: refunded in the
    provider's dashboard before its paid event came): that charge is a second charge, given back
    already. Its `duplicate_charge` refund is recorded, of what this refund gave back, under the
    key the charge's detection looks it up by (`_refund_second_charge` then finds it, and asks the
    provider nothing), as given back at the provider (`_record_second_charge_at_provider`).
    Nothing of the order changes. Raises RefundAmountUnreadable or RefundCurrencyMismatch, nothing
    written, for an event that does not say how much in which currency. Rows locked."""
    assert fact.payment_id is not None, "_second_charge"
    amount = refund_amount_minor if refund_amount_minor is not None else fact.amount_minor
    if amount is None:
        raise RefundAmountUnreadable(
            f"{fact.source} reports a refund of charge {fact.payment_id}, which is not the order's payment, "
            f"without its amount: nothing recorded. Look it up in the {checkout.provider} dashboard."
        )
    currency = (fact.currency or "").upper()
    if not _CURRENCY_CODE.fullmatch(currency):
        raise RefundCurrencyMismatch(
            f"{fact.source} reports a refund of charge {fact.payment_id}, which is not the order's payment, in no "
            f"currency Darkroom can read ({str(fact.currency)[:20]!r}): nothing recorded."
        )
    refund = Refund.objects.create(
        tenant_id=txn.tenant_id,
        transaction=txn,
        reason=Refund.Reason.DUPLICATE_CHARGE,
        payment_id=fact.payment_id,
        amount_minor=amount,
        currency=currency,
        idempotency_key=_second_charge_key(checkout=checkout, payment_id=fact.payment_id),
    )
    outcome = FactOutcome(before=txn.status, after=txn.status)
    outcome.effects += _record_second_charge_at_provider(
        checkout=checkout, txn=txn, refund=refund, fact=fact, provider_refund_id=provider_refund_id, now=now, seen=False
    )
    return outcome


def _record_second_charge_at_provider(
    *,
    checkout: Checkout,
    txn: Transaction,
    refund: Refund,
    fact: PaymentFact,
    provider_refund_id: str | None,
    now: datetime,
    seen: bool = True,
) -> list[str]:
    """The second charge `refund` gives back came back through a refund made at the provider,
    outside Darkroom (its dashboard), `provider_refund_id`: `refund` records it as given back
    there, as a part refunded at the provider is (`submitted`, that refund's id, landed), so it is
    never sent, no longer alerts, and its events (a redelivery, that refund's failure) are that
    refund's. Darkroom's own attempt, if the provider accepted one, is set aside with the failed
    ones (its events change nothing; if it completes too, the shopper got the charge back twice:
    logged as an error). One `refund.second_charge_at_provider` audit row; the shopper is told
    (`_land_second_charge`). `seen`: Darkroom had recorded the charge (else this event is how it
    learns of it). Rows locked."""
    before = refund.status if seen else None
    error_before = refund.last_error[:500]
    set_aside = refund.provider_refund_id if provider_refund_id and refund.provider_refund_id else None
    if set_aside:
        refund.failed_provider_refund_ids = [*refund.failed_provider_refund_ids, set_aside]
        logger.error(
            "a second charge was refunded at the provider while Darkroom's accepted refund of it is under way: "
            "if that one completes too, the shopper got the charge back twice",
            extra={"checkout_id": str(checkout.pk), "refund_id": refund.pk, "provider_refund_id": set_aside},
        )
    if provider_refund_id:
        refund.provider_refund_id = provider_refund_id
    refund.status = Refund.Status.SUBMITTED
    refund.submitted_at = now
    refund.last_error = ""  # (a refusal of Darkroom's attempt: in the audit row)
    refund.provider_failed_at = None  # (a failure of Darkroom's attempt: this refund's own outcome counts now)
    refund.save(
        update_fields=[
            "status",
            "provider_refund_id",
            "failed_provider_refund_ids",
            "submitted_at",
            "last_error",
            "provider_failed_at",
        ]
    )
    audit_record(
        action="refund.second_charge_at_provider",
        tenant_id=txn.tenant_id,
        actor_label=f"provider:{checkout.provider}",
        target_type="checkout",
        target_id=str(checkout.pk),
        data={
            "refund_id": refund.pk,
            "payment_id": refund.payment_id,
            "first_payment_id": txn.payment_id,
            "amount_minor": refund.amount_minor,
            "currency": refund.currency,
            "provider_refund_id": provider_refund_id,
            "status_before": before,
            "last_error_before": error_before,
            "set_aside": set_aside,
            "source": fact.source,
        },
    )
    logger.warning(
        "a second charge was refunded at the provider, outside Darkroom: recorded on its refund",
        extra={"checkout_id": str(checkout.pk), "refund_id": refund.pk, "payment_id": refund.payment_id},
    )
    return [
        f"second charge {refund.payment_id} refunded at the provider"
        + (f" ({provider_refund_id})" if provider_refund_id else "")
        + ("" if seen else ", before Darkroom saw it"),
        *_land_second_charge(checkout=checkout, refund=refund, now=now),
    ]


def _second_charge_key(*, checkout: Checkout, payment_id: str) -> str:
    """The idempotency key of the refund of a second charge `payment_id` (the charge's id, or its
    digest when longer than a key may hold)."""
    named = payment_id if len(payment_id) <= 120 else hashlib.sha256(payment_id.encode()).hexdigest()
    return f"refund:{checkout.pk}:charge:{named}"


def _refunded_at_provider_minor(
    *, refunds: list[Refund], fact: PaymentFact, provider_refund_id: str, refund_amount_minor: int | None
) -> int:
    """How much of a partial refund event no refund of Darkroom's explains (0: all of it is
    explained), i.e. what the studio refunded in the provider's dashboard: the named refund's
    own amount when Darkroom has no refund with its id (`_refunds_confirmed` has already asked
    to wait while a refund awaits the provider's answer). `refunds`: the payment's.

    Never the payment's refunded total less what Darkroom counts: the refunds it counts may have
    been made after the named one (their events came first), and the difference would count
    them twice. Raises RefundTotalAmbiguous for an event that gives no own amount."""
    if any(r.provider_refund_id == provider_refund_id for r in refunds):
        return 0
    if refund_amount_minor is None:
        raise RefundTotalAmbiguous(
            f"{fact.source} names refund {provider_refund_id}, which Darkroom does not know, with only the "
            f"payment's refunded total ({fact.amount_minor}): its own amount cannot be told from it. Look it "
            "up in the provider's dashboard."
        )
    return refund_amount_minor


def _record_refunded_at_provider(
    *,
    checkout: Checkout,
    txn: Transaction,
    amount_minor: int,
    fact: PaymentFact,
    provider_refund_id: str,
    now: datetime,
    tell_shopper: bool,
) -> list[str]:
    """A landed `provider_partial` refund of `amount_minor` in the currency the payment was
    charged in (`charged_currency`: the provider refunds in it, also after a charge in another
    currency than the checkout's), keyed by the provider's refund id (a redelivered event records
    nothing twice), one `refund.at_provider` audit row, and, with `tell_shopper`, the shopper's
    e-mail about it. Nothing of the order is revoked and no wallet credit reversed."""
    currency = charged_currency(txn=txn)
    named = (
        provider_refund_id
        if len(provider_refund_id) <= 120
        else hashlib.sha256(provider_refund_id.encode()).hexdigest()
    )
    key = f"refund:{checkout.pk}:provider:{named}"
    refund, created = Refund.objects.get_or_create(
        idempotency_key=key,
        defaults={
            "tenant_id": txn.tenant_id,
            "transaction": txn,
            "reason": Refund.Reason.PROVIDER_PARTIAL,
            "amount_minor": amount_minor,
            "currency": currency,
            "status": Refund.Status.SUBMITTED,
            "provider_refund_id": provider_refund_id,
            "submitted_at": now,
            "landed_at": now,
        },
    )
    if not created:
        return []
    audit_record(
        action="refund.at_provider",
        tenant_id=txn.tenant_id,
        actor_label=f"provider:{checkout.provider}",
        target_type="checkout",
        target_id=str(checkout.pk),
        data={
            "refund_id": refund.pk,
            "amount_minor": amount_minor,
            "currency": currency,
            "provider_refund_id": provider_refund_id,
            "source": fact.source,
        },
    )
    logger.warning(
        "part of a payment refunded at the provider",
        extra={"checkout_id": str(checkout.pk), "refund_id": refund.pk, "amount_minor": amount_minor},
    )
    effects = [f"refund {refund.pk} recorded: {amount_minor} refunded at the provider"]
    if tell_shopper:
        _publish_refunded(checkout, refund_id=refund.pk)
        effects.append("shopper told (checkout.refunded)")
    return effects


def _refunds_confirmed(
    *, partials: list[Refund], fact: PaymentFact, provider_refund_id: str, answer_awaited: bool
) -> list[Refund]:
    """The studio's item refund a partial refund event confirms: the one it names, if it has not
    landed yet (see `transaction_apply_refund`). `answer_awaited`: a refund of the payment is
    still `requested` (its provider call has not answered), so an id no refund holds yet may be
    its: RefundNotRecordedYet."""
    pending = [r for r in partials if r.landed_at is None and r.status in Refund.LIVE_STATUSES]
    named = [r for r in pending if r.provider_refund_id == provider_refund_id]
    if named:
        return named
    known = any(r.provider_refund_id == provider_refund_id for r in partials)
    if not known and answer_awaited:
        raise RefundNotRecordedYet(
            f"{fact.source} names refund {provider_refund_id}, not recorded yet while a refund "
            "awaits the provider's answer: trying again later."
        )
    return []


def _request_refund(*, txn: Transaction, reason: str, amount_minor: int, currency: str, now: datetime) -> list[str]:
    """A refund row (unique per transaction and reason) and its outbox message, once."""
    refund, created = Refund.objects.get_or_create(
        tenant_id=txn.tenant_id,
        transaction=txn,
        reason=reason,
        defaults={
            "amount_minor": amount_minor,
            "currency": currency,
            "idempotency_key": f"refund:{txn.checkout_id}:{reason}",
            "queued_at": now,
        },
    )
    if created:
        _publish_refund_requested(refund)
    if txn.refund_requested_at is None:
        txn.refund_requested_at = now
    return [f"refund requested ({reason})" if created else "refund already requested"]


def _publish_refund_requested(refund: Refund) -> None:
    outbox_publish(
        topic=TOPIC_REFUND_REQUESTED,
        tenant_id=refund.tenant_id,
        aggregate_type="refund",
        aggregate_id=refund.pk,
        payload={"refund_id": refund.pk},
    )


# --- an operator's second try at a refund the provider refused (`failed`) -----------------
#
# A failed refund is money the shopper paid and was promised back (alert:
# `darkroom_refunds{status="failed"}`). Once the operator has fixed the cause (the provider
# account, a dispute, a balance too low to refund from), `refund_retry` puts it back to
# `requested` and queues its `payment.refund_requested` message again, as the first request did.
#
# The provider call carries a new idempotency key (`<first key>:retry-<n>`): providers remember a
# key's answer (Stripe for 24 hours, errors included), so the first key would only fetch the
# first refusal again. A new key cannot refund twice: the refusal means nothing was refunded, and
# providers refuse to refund more than was charged.

RETRY_KEY_MARK = ":retry-"


@transaction.atomic
def checkout_refund_request(
    *,
    tenant_id: int,
    checkout_id: uuid.UUID | str,
    actor_label: str,
    actor_user: User | None = None,
    restock_prints: bool = False,
    line_ids: Sequence[int] | None = None,
) -> Refund:
    """Refund a paid order, or some of its items, as the studio decided: a refund and its
    `payment.refund_requested` message (its consumer asks the provider, with the refund's
    idempotency key), and one `checkout.refund_request` audit row. Nothing changes for the
    shopper until the provider's refund webhook arrives; then the refunded downloads stop and
    their wallet credits are reversed (`_on_refunded`, `_land_items_refund`).

    `line_ids` None: everything not refunded yet. The whole order (no item refunded before) is a
    `studio` refund of the charged amount. Otherwise a `studio_partial` refund of the named
    confirmed lines, each line marked with it: their amounts, or, for the order's last items,
    what is left of the payment. With `restock_prints` (prints not shipped
    yet), the refund's prints go back in stock once it lands (a `refund.restock_requested`
    message); without, they stay sold (one may have been made).

    Joins the caller's transaction (the API's Idempotency-Key protocol or the studio form's
    `submit_once`), in the tenant's context; locks the checkout row, its transaction, then its
    refunds. A refund the provider refused (`failed`) is asked for again (`refund_retry`) when
    the same items are asked for. Raises CheckoutNotFound (also another studio's checkout),
    CheckoutNotRefundable (not paid), RefundLinesInvalid (items that are not the order's
    charged items), PrintsNotRestockable (`restock_prints` with no print of the refund waiting to
    be shipped), RefundAlreadyRequested (the items' refund, or the whole order's, is under way)
    and RefundExceedsPayment (the items come to more than is left of the payment).
    """
    checkout = Checkout.objects.select_for_update().filter(tenant_id=tenant_id, pk=checkout_id).first()
    if checkout is None:
        raise CheckoutNotFound(f"Checkout {checkout_id} does not exist.")
    txn = Transaction.objects.select_for_update().filter(checkout_id=checkout.pk).first()
    if checkout.status != Checkout.Status.PAID or txn is None or txn.status != Transaction.Status.PAID:
        raise CheckoutNotRefundable(
            f"Only a paid order can be refunded; this one is {checkout.get_status_display().lower()}."
        )
    refunds = list(Refund.objects.select_for_update().filter(transaction=txn).order_by("pk"))
    if other_refund_under_way(refunds):
        raise RefundAlreadyRequested("A refund of this order is already under way.")
    lines = list(checkout.lines.filter(state=CheckoutLine.State.CONFIRMED).order_by("position"))
    chosen = _refund_lines_chosen(lines=lines, refunds=refunds, line_ids=line_ids)
    if restock_prints and not (_prints_waiting(checkout) and any(line.kind == ProductKind.PRINT for line in chosen)):
        raise PrintsNotRestockable("This refund has no prints waiting to be shipped to put back in stock.")
    partials = [r for r in refunds if r.reason in Refund.PARTIAL_REASONS]
    if not partials and len(chosen) == len(lines):
        refund = _request_whole_studio_refund(txn=txn, actor_label=actor_label, actor_user=actor_user)
    else:
        refund = _request_items_refund(
            txn=txn, lines=lines, chosen=chosen, refunds=refunds, actor_label=actor_label, actor_user=actor_user
        )
    if refund.restock_prints != restock_prints:
        refund.restock_prints = restock_prints
        refund.save(update_fields=["restock_prints"])
    audit_record(
        action="checkout.refund_request",
        tenant_id=tenant_id,
        actor_user=actor_user,
        actor_label=actor_label,
        target_type="checkout",
        target_id=str(checkout.pk),
        data={
            "refund_id": refund.pk,
            "amount_minor": refund.amount_minor,
            "currency": refund.currency,
            "restock_prints": restock_prints,
            "line_ids": [line.pk for line in chosen],
        },
    )
    return refund


def _refund_lines_chosen(
    *, lines: list[CheckoutLine], refunds: list[Refund], line_ids: Sequence[int] | None
) -> list[CheckoutLine]:
    """The confirmed lines a studio refund covers: the named ones (each once, each a confirmed
    line of the order, none in a refund under way or landed), or with `line_ids` None every
    line not refunded yet (no refund names it, or only one the provider refused). A line in a
    refund the provider refused may be named again (`_request_items_refund` retries that refund
    or supersedes it)."""
    refund_of = {r.pk: r for r in refunds}
    if line_ids is None:
        chosen = refundable_lines(lines, refunds)
        if not chosen:
            raise RefundAlreadyRequested("Every item of this order is refunded or being refunded.")
        return chosen
    wanted = list(line_ids)
    by_id = {line.pk: line for line in lines}
    unknown = [line_id for line_id in wanted if line_id not in by_id]
    if not wanted or len(set(wanted)) != len(wanted) or unknown:
        raise RefundLinesInvalid(
            "Name each item to refund once, among the order's charged items"
            + (f" (not one of them: {', '.join(map(str, unknown))})." if unknown else "."),
            extra={"refundable_line_ids": [line.pk for line in refundable_lines(lines, refunds)]},
        )
    chosen = [by_id[line_id] for line_id in sorted(wanted, key=lambda i: by_id[i].position)]
    taken = [line for line in chosen if line.refund_id is not None]
    live = [line for line in taken if refund_of[line.refund_id].status in Refund.LIVE_STATUSES]  # type: ignore[index]
    if live:
        raise RefundAlreadyRequested(
            "Item(s) "
            + ", ".join(f"{line.position + 1} (line {line.pk})" for line in live)
            + " are refunded or being refunded already."
        )
    return chosen


def _refused(refunds: Iterable[Refund]) -> set[int]:
    return {r.pk for r in refunds if r.status == Refund.Status.FAILED}


def refundable_lines(lines: Iterable[CheckoutLine], refunds: Iterable[Refund]) -> list[CheckoutLine]:
    """The charged lines of `lines` not refunded yet: no refund names them, or only one the
    provider refused (they may be asked for again). The sale page offers the same."""
    refused = _refused(refunds)
    return [
        line
        for line in lines
        if line.state == CheckoutLine.State.CONFIRMED and (line.refund_id is None or line.refund_id in refused)
    ]


def _last_items(*, lines: list[CheckoutLine], chosen_ids: set[int], refunds: list[Refund]) -> bool:
    """Whether the lines `chosen_ids` are the order's last items: every other confirmed line is
    in a refund under way or landed."""
    refused = _refused(refunds)
    return all(
        line.refund_id is not None and line.refund_id not in refused for line in lines if line.pk not in chosen_ids
    )


def items_refund_minor(
    *, payment_minor: int, lines: list[CheckoutLine], chosen_ids: set[int], refunds: list[Refund]
) -> int:
    """What a studio refund of the lines `chosen_ids` gives back (`lines`: the order's confirmed
    lines; `refunds`: the payment's): the order's last items take what is left of the payment,
    others their amounts. The sale page names it with the same arithmetic."""
    if _last_items(lines=lines, chosen_ids=chosen_ids, refunds=refunds):
        return payment_minor - partial_refunds_taken_minor(refunds)
    return sum(line.amount_minor for line in lines if line.pk in chosen_ids)


def other_refund_under_way(refunds: Iterable[Refund]) -> bool:
    """Whether a payment's refunds hold one that is not a partial refund (the whole order's, a
    late payment's; not a second charge's, which is none of the order's) and was not refused:
    no item refund may be asked for then."""
    return any(
        r.reason not in (*Refund.PARTIAL_REASONS, Refund.Reason.DUPLICATE_CHARGE) and r.status in Refund.LIVE_STATUSES
        for r in refunds
    )


def gave_back(refund: Refund) -> bool:
    """Whether a refund gives (or gave) money back: asked for, accepted or settled outside the
    provider (`LIVE_STATUSES`), and not reported failed by the provider after it landed unless
    settled since (that money went back to the merchant: it is owed to the shopper until an
    operator pays it back another way, `refund_settle_outside`)."""
    return refund.status in Refund.LIVE_STATUSES and (
        refund.provider_failed_at is None or refund.status == Refund.Status.SETTLED
    )


def _paid_back_outside_already(refunds: Iterable[Refund], *, whole: int, before: datetime) -> bool:
    """Whether Darkroom counted a payment (`refunds`, its refunds; `whole`, `whole_refund_minor`)
    as all given back before the refund event at hand (by the refunds landed `before` it: a part
    of it recorded by the event itself lands at its time), a refund paid back outside the
    provider (`settled`) among them."""
    landed = [r for r in refunds if r.landed_at is not None and r.landed_at < before and gave_back(r)]
    return any(r.status == Refund.Status.SETTLED for r in landed) and sum(r.amount_minor for r in landed) >= whole


def partial_refunds_taken_minor(refunds: Iterable[Refund]) -> int:
    """What the partial refunds of a payment (the studio's item refunds, every one but the
    refused and those that failed after landing, and the parts refunded in the provider's
    dashboard) take from it: the order's last items get the payment less this, and no other
    item refund may ask for more."""
    return sum(r.amount_minor for r in refunds if r.reason in Refund.PARTIAL_REASONS and gave_back(r))


def _request_whole_studio_refund(*, txn: Transaction, actor_label: str, actor_user: User | None) -> Refund:
    """The `studio` refund of the whole charged amount, or its second try after a refusal."""
    failed = Refund.objects.filter(transaction=txn, reason=Refund.Reason.STUDIO).first()
    if failed is not None:  # the provider refused it before: ask again, with a new key
        retried = refund_retry(refund_id=failed.pk, actor_label=actor_label, actor_user=actor_user)
        if not retried and failed.status == Refund.Status.FAILED:
            raise RefundAlreadyRequested(
                "Items of this order were refunded since the provider refused this refund: refund the items left."
            )
    else:
        _request_refund(
            txn=txn,
            reason=Refund.Reason.STUDIO,
            amount_minor=txn.amount_minor,
            currency=txn.currency,
            now=timezone.now(),
        )
        txn.save(update_fields=["refund_requested_at", "updated_at"])
    return Refund.objects.get(transaction=txn, reason=Refund.Reason.STUDIO)


def _request_items_refund(
    *,
    txn: Transaction,
    lines: list[CheckoutLine],
    chosen: list[CheckoutLine],
    refunds: list[Refund],
    actor_label: str,
    actor_user: User | None,
) -> Refund:
    """A `studio_partial` refund of the `chosen` lines, or the second try of the refused one
    they all are (with a new provider key: `refund_retry`). The order's last items take what is
    left of the payment (`items_refund_minor`; a refused refund of them is resized to it), and
    no refund may ask for more. Refused refunds some of whose lines are chosen with others are
    superseded (`not_needed`, their other lines free again), and so is every refused refund of
    the payment once this one takes what is left. Raises RefundExceedsPayment."""
    chosen_ids = {line.pk for line in chosen}
    left = txn.amount_minor - partial_refunds_taken_minor(refunds)
    amount = items_refund_minor(payment_minor=txn.amount_minor, lines=lines, chosen_ids=chosen_ids, refunds=refunds)
    last = _last_items(lines=lines, chosen_ids=chosen_ids, refunds=refunds)
    if amount > left or amount <= 0:
        raise RefundExceedsPayment(
            f"These items come to {money_text(amount, txn.currency)}, but only {money_text(left, txn.currency)} of "
            "the payment is left to refund (part of it went back already). Refund every item left at once "
            "(tick them all, or through the API name no lines): together they give back what is left, "
            f"{money_text(left, txn.currency)}."
        )
    refused = {r.pk: r for r in refunds if r.status == Refund.Status.FAILED}
    again = {line.refund_id for line in chosen if line.refund_id in refused}
    if len(again) == 1 and {line.pk for line in lines if line.refund_id in again} == chosen_ids:
        [retry_of] = again
        if refused[retry_of].amount_minor != amount:  # the last items: what is left now
            Refund.objects.filter(pk=retry_of).update(amount_minor=amount)
        refund_retry(refund_id=retry_of, actor_label=actor_label, actor_user=actor_user)
        superseded = set(refused) - again if last else set()
        refund = Refund.objects.get(pk=retry_of)
    else:
        superseded = set(refused) if last else again
        now = timezone.now()
        # Named by its smallest line; a line refunded again after a refused refund (superseded)
        # also by how many refunds the payment had: a key is never reused at the provider.
        key = f"refund:{txn.checkout_id}:items:{min(chosen_ids)}"
        if any(r.idempotency_key == key or r.idempotency_key.startswith(f"{key}:") for r in refunds):
            key = f"{key}:{len(refunds) + 1}"
        refund = Refund.objects.create(
            tenant_id=txn.tenant_id,
            transaction=txn,
            reason=Refund.Reason.STUDIO_PARTIAL,
            amount_minor=amount,
            currency=txn.currency,
            idempotency_key=key,
            queued_at=now,
        )
        CheckoutLine.objects.filter(pk__in=chosen_ids).update(refund=refund)
        _publish_refund_requested(refund)
        if txn.refund_requested_at is None:
            txn.refund_requested_at = now
            txn.save(update_fields=["refund_requested_at", "updated_at"])
    if superseded:
        CheckoutLine.objects.filter(refund_id__in=superseded).exclude(pk__in=chosen_ids).update(refund=None)
        Refund.objects.filter(pk__in=superseded).update(status=Refund.Status.NOT_NEEDED, superseded_by=refund)
    return refund


def _prints_waiting(checkout: Checkout) -> bool:
    """Whether the paid checkout has confirmed prints not shipped yet."""
    return (
        CheckoutShipping.objects.filter(
            checkout_id=checkout.pk, fulfilment_status=CheckoutShipping.FulfilmentStatus.UNFULFILLED
        ).exists()
        and checkout.lines.filter(kind=ProductKind.PRINT, state=CheckoutLine.State.CONFIRMED).exists()
    )


def _retry_key(idempotency_key: str, attempt: int) -> str:
    return f"{idempotency_key.split(RETRY_KEY_MARK)[0]}{RETRY_KEY_MARK}{attempt}"


@transaction.atomic
def refund_retry(*, refund_id: int, actor_label: str, actor_user: User | None = None) -> bool:
    """Queue a `failed` refund again (status `requested`, a new provider idempotency key, its
    message, one `refund.retry` audit row), in the caller's transaction; locks its checkout,
    transaction, then the refund. False, writing nothing, for a refund that is not `failed`
    (already requested again, or submitted), of a payment already refunded whole, or that no longer
    fits in the payment: with the order's other live refunds (item refunds made since) it
    would give back more than was charged (`whole_refund_minor`), which the provider refuses. A
    second charge's refund gives back its own charge: neither the order's state nor its refunds
    bear on it."""
    checkout_id = Refund.objects.filter(pk=refund_id).values_list("transaction__checkout_id", flat=True).first()
    if checkout_id is None:
        return False
    # The lock order of every refund path: checkout, transaction, refund.
    Checkout.objects.select_for_update().filter(pk=checkout_id).first()
    txn = Transaction.objects.select_for_update().filter(checkout_id=checkout_id).first()
    refund = Refund.objects.select_for_update(of=("self",)).filter(pk=refund_id).select_related("transaction").first()
    if refund is None or refund.status != Refund.Status.FAILED or txn is None:
        return False
    if refund.reason != Refund.Reason.DUPLICATE_CHARGE:
        if txn.refunded_at is not None:
            return False
        others = sum(
            r.amount_minor
            for r in Refund.objects.filter(transaction_id=refund.transaction_id).exclude(Refund.SECOND_CHARGE)
            if r.pk != refund.pk and gave_back(r)
        )
        # What the payment's refunds may add up to: what was charged (a refund of an overcharge
        # gives back more than the checkout's total), as for landing (`whole_refund_minor`).
        if others + refund.amount_minor > whole_refund_minor(txn=txn):
            return False
    previous_key = refund.idempotency_key
    refund.status = Refund.Status.REQUESTED
    refund.idempotency_key = _retry_key(previous_key, refund.attempts)
    refund.queued_at = timezone.now()
    refund.provider_failed_at = None  # a new provider refund: its own outcome counts
    refund.save(update_fields=["status", "idempotency_key", "queued_at", "provider_failed_at"])
    _publish_refund_requested(refund)
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


SETTLE_NOTE_MAX_CHARS = 1000


@transaction.atomic
def refund_settle_outside(*, refund_id: int, note: str, actor_label: str, actor_user: User | None = None) -> list[str]:
    """Record that an operator paid a shopper back outside the provider (a bank transfer, say)
    for a refund the provider did not complete, and how (`note`). The refund turns `settled`
    (`settled_outside_at`, `settled_outside_note`; one `refund.settled_outside` audit row), in
    the caller's transaction; locks its checkout, transaction, then the payment's refunds (the
    refund paths' order). Returns what it did.

    * A `failed` refund (refused, or failed at the provider before it landed): its effects land
      now, as if the provider had confirmed it: an item refund's (`_land_items_refund`, the
      shopper told), or the whole order's once the payment's refunds add up to all of it, or
      for a whole-payment refund (`_on_refunded`). `darkroom_refunds{status="failed"}` no longer
      counts it.
    * A landed refund the provider reported failed afterwards (`Refund.still_owed`): its effects landed
      already; it counts as money given back again (`gave_back`).
    * A second charge's refund (`duplicate_charge`) lands alone, whatever the order's refunds:
      the shopper is told it was paid back (`_land_second_charge`).

    The transaction keeps the provider's view (paid): the provider still holds that money.
    Raises RefundNotSettleable, writing nothing, for any other refund, a blank note, a failed
    refund of a payment refunded whole at the provider since or one that would give back more
    than was charged with the payment's other refunds, or while another refund of the payment
    awaits the provider (asked for, or accepted and not landed: settle once it has landed or
    failed).
    """
    note = note.strip()
    if not note:
        raise RefundNotSettleable("Say how the shopper was paid back (a transfer's reference, say).")
    if len(note) > SETTLE_NOTE_MAX_CHARS:
        raise RefundNotSettleable(f"The note is longer than {SETTLE_NOTE_MAX_CHARS} characters.")
    checkout_id = Refund.objects.filter(pk=refund_id).values_list("transaction__checkout_id", flat=True).first()
    if checkout_id is None:
        raise RefundNotSettleable(f"Refund {refund_id} does not exist.")
    checkout = Checkout.objects.select_for_update().get(pk=checkout_id)
    txn = Transaction.objects.select_for_update().get(checkout_id=checkout_id)
    refunds = list(Refund.objects.select_for_update().filter(transaction=txn).order_by("pk"))
    refund = next(r for r in refunds if r.pk == refund_id)
    unpaid = refund.status == Refund.Status.FAILED and refund.landed_at is None
    second = refund.reason == Refund.Reason.DUPLICATE_CHARGE
    if not unpaid and not refund.still_owed:
        raise RefundNotSettleable(
            f"Refund {refund.pk} ({refund.get_status_display()}) is not one the provider left unpaid: "
            "only a failed refund, or one that failed at the provider after it landed, can be settled."
        )
    if unpaid and txn.refunded_at is not None and not second:
        raise RefundNotSettleable(f"The payment of refund {refund.pk} was refunded whole at the provider.")
    # The order's refunds do not bear on a second charge's, nor it on theirs.
    refunds = [r for r in refunds if (r.reason == Refund.Reason.DUPLICATE_CHARGE) == second]
    if not second and any(
        r.status == Refund.Status.REQUESTED or (r.status == Refund.Status.SUBMITTED and r.landed_at is None)
        for r in refunds
    ):
        raise RefundNotSettleable(
            f"Another refund of the payment of refund {refund.pk} awaits the provider's answer: settle this "
            "one once it has landed or failed."
        )
    # What the payment's refunds may add up to: what was charged (`whole_refund_minor`). An owed
    # refund the order's last refund gave back is `not_needed` (`_on_refunded`); this holds
    # whatever came first.
    charged = refund.amount_minor if second else whole_refund_minor(txn=txn)
    others = 0 if second else sum(r.amount_minor for r in refunds if r.pk != refund.pk and gave_back(r))
    if others + refund.amount_minor > charged:
        raise RefundNotSettleable(
            f"Refund {refund.pk} would give back more than was charged, with the payment's other refunds."
        )
    now = timezone.now()
    previous = refund.status
    refund.status = Refund.Status.SETTLED
    refund.settled_outside_at = now
    refund.settled_outside_note = note
    refund.save(update_fields=["status", "settled_outside_at", "settled_outside_note"])
    effects = [f"refund {refund.pk} settled outside the provider"]
    whole = (
        not second
        and (refund.reason not in Refund.PARTIAL_REASONS or partial_refunds_taken_minor(refunds) >= charged)
        and checkout.status != Checkout.Status.REFUNDED
    )
    if second and unpaid:
        effects += _land_second_charge(checkout=checkout, refund=refund, now=now)
    elif whole:  # the whole payment is back now
        # (no provider money without a refund row here: an owed refund is covered only if the
        # refunds add up)
        effects += _on_refunded(checkout=checkout, txn=txn, now=now, paid_outside=True, event_refund_known=True)
    elif unpaid:
        effects += _land_items_refund(checkout=checkout, txn=txn, refund=refund, now=now, tell_shopper=True)
    else:  # landed before: its effects stand; the shopper hears it was paid back
        _publish_refunded(checkout, refund_id=refund.pk)
        effects.append("shopper told (checkout.refunded)")
    audit_record(
        action="refund.settled_outside",
        tenant_id=refund.tenant_id,
        actor_user=actor_user,
        actor_label=actor_label,
        target_type="refund",
        target_id=str(refund.pk),
        data={
            "amount_minor": refund.amount_minor,
            "currency": refund.currency,
            "previous_status": previous,
            "landed_before": not unpaid,
            "note": note,
        },
    )
    logger.info("refund settled outside the provider", extra={"refund_id": refund.pk, "effects": effects})
    return effects


@transaction.atomic(durable=True)
def refunds_requeue_stale(*, older_than_seconds: float, limit: int = 500) -> list[int]:
    """Queue again the refunds still `requested` more than `older_than_seconds` after their
    message was queued (`apps.outbox.requeue`: the broker lost it). One audit row per refund;
    returns their ids.

    Outermost transaction, in the system context (the beat task's): refunds of every studio.
    Harmless when the message was only slow: the provider call carries the refund's
    idempotency key.
    """
    refunds = requeue_stale(
        Refund.objects.filter(status=Refund.Status.REQUESTED),
        queued_field="queued_at",
        fallback_field="created_at",
        older_than_seconds=older_than_seconds,
        limit=limit,
        requeue=_publish_refund_requested,
        flow="refunds",
        audit=RequeueAudit(
            action="refund.requeue",
            target_type="refund",
            data=lambda refund: {
                "reason": refund.reason,
                "amount_minor": refund.amount_minor,
                "currency": refund.currency,
            },
        ),
    )
    return [refund.pk for refund in refunds]


@transaction.atomic(durable=True)
def receipts_requeue_stale(*, older_than_seconds: float, limit: int = 500) -> list[int]:
    """Queue again the receipts still unsent more than `older_than_seconds` after their
    `checkout.paid` message was queued: `pending` ones (the broker lost the message, or the
    sender ran out of retries) and `sending` ones whose claim lapsed (the sender died). Returns
    their ids. Only receipts of checkouts still paid (not refunded since), and fewer than
    RECEIPT_MAX_ATTEMPTS send attempts: past that a receipt waits for an operator.

    Outermost transaction, in the system context (the beat task's): receipts of every studio.
    Harmless when the message was only slow: `receipt_send` sends a receipt once.
    """
    unsent = Receipt.objects.filter(
        Q(status=Receipt.Status.PENDING) | Q(status=Receipt.Status.SENDING, claimed_until__lt=timezone.now()),
        checkout__status=Checkout.Status.PAID,
        attempts__lt=settings.RECEIPT_MAX_ATTEMPTS,
    )
    receipts = requeue_stale(
        unsent,
        queued_field="queued_at",
        fallback_field="created_at",
        older_than_seconds=older_than_seconds,
        limit=limit,
        requeue=lambda receipt: _publish_checkout_paid(tenant_id=receipt.tenant_id, checkout_id=receipt.checkout_id),
        flow="receipts",
    )
    return [receipt.pk for receipt in receipts]


@transaction.atomic(durable=True)
def captures_requeue_stale(*, older_than_seconds: float, limit: int = 500) -> list[uuid.UUID]:
    """Ask again for the capture of approved payments (PayPal) whose checkout still awaits payment
    more than `older_than_seconds` after the capture was asked for and no attempt concluded (the
    broker lost the message, or the consumer ran out of retries). One audit row per checkout;
    returns their ids.

    Outermost transaction, in the system context (the beat task's): checkouts of every studio.
    Harmless when the message was only slow: the capture carries the key `capture:<checkout>`,
    so the provider answers a second request with the first capture.
    """
    checkouts = requeue_stale(
        Checkout.objects.filter(
            status=Checkout.Status.AWAITING_PAYMENT,
            capture_requested_at__isnull=False,
            expires_at__gt=timezone.now(),  # the overdue ones expire instead
        ),
        queued_field="capture_requested_at",
        fallback_field="created_at",
        older_than_seconds=older_than_seconds,
        limit=limit,
        requeue=lambda checkout: _publish_capture_requested(
            tenant_id=checkout.tenant_id, checkout_id=checkout.pk, reference=checkout.provider_reference or ""
        ),
        flow="payment_captures",
        audit=RequeueAudit(
            action="checkout.capture_requeue",
            target_type="checkout",
            data=lambda checkout: {
                "provider": checkout.provider,
                "amount_minor": checkout.amount_minor,
                "currency": checkout.currency,
            },
        ),
    )
    return [checkout.pk for checkout in checkouts]


# --- wallets -------------------------------------------------------------------------------


def platform_fee_minor(amount_minor: int) -> int:
    """The platform's share of a sale line: PLATFORM_FEE_BPS of it, rounded half up."""
    return (amount_minor * int(settings.PLATFORM_FEE_BPS) + 5_000) // 10_000


def _organization(tenant_id: int) -> Organization:
    return Organization.objects.get(pk=tenant_id)


def wallet_for(*, tenant_id: int, owner_id: int, currency: str) -> LedgerAccount:
    """The photographer's wallet in `currency`, created on first sale.

    In the caller's transaction. A transaction-level advisory lock on (tenant, owner, currency)
    makes concurrent first sales of one photographer create one wallet, not two.
    """
    key = int.from_bytes(
        hashlib.sha256(f"wallet:{tenant_id}:{owner_id}:{currency}".encode()).digest()[:8], "big", signed=True
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
    wallet = (
        LedgerAccount.objects.filter(
            tenant_id=tenant_id, kind=LedgerAccount.Kind.WALLET, owner_id=owner_id, currency=currency, client_id=""
        )
        .order_by("pk")
        .first()
    )
    if wallet is None:
        wallet = ledger_account_create(
            tenant=_organization(tenant_id),
            kind=LedgerAccount.Kind.WALLET,
            currency=currency,
            owner=User.objects.get(pk=owner_id),
        )
    return wallet


def _wallet_entries(
    *, checkout: Checkout, lines: list[CheckoutLine], kind: Literal["credit", "debit"], prefix: str
) -> list[EntryIn]:
    entries = []
    for line in lines:
        net = line.amount_minor - platform_fee_minor(line.amount_minor)
        if net <= 0 or line.photographer_id is None:
            continue
        wallet = wallet_for(tenant_id=checkout.tenant_id, owner_id=line.photographer_id, currency=line.currency)
        entries.append(
            EntryIn(
                account_id=wallet.pk,
                amount_minor=net,
                currency=line.currency,
                idempotency_key=f"{prefix}:{checkout.pk}:{line.pk}",
                kind=kind,
                reference=f"checkout:{checkout.pk}",
            )
        )
    return entries


# --- refunds -------------------------------------------------------------------------------


def refund_submit(*, refund_id: int) -> Refund:
    """Ask the provider to refund (outside any transaction; in the refund's tenant context).

    Only a `requested` refund is sent: a submitted one is returned untouched, and a refused one
    goes back to `requested` only through `refund_retry` (a late or redelivered message sends
    nothing). The refund's idempotency key goes to the provider, so a retry after a timeout
    never refunds twice. A retryable provider error is recorded and re-raised (ProviderError)
    for the consumer's backoff; a final one marks the refund `failed` for an operator. The
    money side lands with the provider's refund webhook.

    A refund that landed before it was ever sent (the whole payment came back otherwise:
    refunded in the provider's dashboard, or by another refund) is not sent, and turns
    `not_needed`; so does one the provider refuses once the whole payment is back. The answer
    is written back only while the refund is still `requested` under the key the call used: a
    refund superseded or asked again meanwhile keeps its state (a refund the provider made
    anyway is logged, and its webhook records it as a part refunded at the provider).
    """
    if connection.in_atomic_block:
        raise TransactionManagementError("the provider must not be called inside a transaction")
    refund = Refund.objects.select_related("transaction__checkout").get(pk=refund_id)
    if refund.status != Refund.Status.REQUESTED:
        return refund
    if refund.landed_at is not None and refund.attempts == 0:
        with transaction.atomic(durable=True):
            locked = Refund.objects.select_for_update().get(pk=refund_id)
            if locked.status == Refund.Status.REQUESTED and locked.attempts == 0:
                locked.status = Refund.Status.NOT_NEEDED
                locked.save(update_fields=["status"])
        logger.info("refund not sent: the whole payment was back already", extra={"refund_id": refund_id})
        return locked
    key = refund.idempotency_key
    # Counted before the call: a call whose worker dies after the provider made the refund still
    # counts, so the refund is never taken for one never sent.
    if not Refund.objects.filter(pk=refund_id, status=Refund.Status.REQUESTED, idempotency_key=key).update(
        attempts=F("attempts") + 1
    ):
        return Refund.objects.get(pk=refund_id)
    checkout = refund.transaction.checkout
    reference = checkout.provider_reference or refund.transaction.payment_id
    provider = get_provider(checkout.provider)
    try:
        # The charge to refund: a second charge's own, else the payment's (a Flutterwave tx_ref may
        # name several charges).
        result = provider.refund(
            reference=reference,
            amount_minor=refund.amount_minor,
            idempotency_key=key,
            payment_id=refund.payment_id or refund.transaction.payment_id or None,
        )
    except ProviderError as exc:
        with transaction.atomic(durable=True):
            locked = Refund.objects.select_for_update().get(pk=refund_id)
            if locked.status != Refund.Status.REQUESTED or locked.idempotency_key != key:
                logger.info("refund changed while its call ran: answer ignored", extra={"refund_id": refund_id})
                return locked
            locked.last_error = str(exc)[:2000]
            if not exc.retryable:
                back = locked.landed_at is not None  # the whole payment came back meanwhile
                locked.status = Refund.Status.NOT_NEEDED if back else Refund.Status.FAILED
            locked.save(update_fields=["last_error", "status"])
        if exc.retryable:
            raise
        if locked.status == Refund.Status.NOT_NEEDED:
            logger.info("refund refused once the whole payment was back", extra={"refund_id": refund_id})
        else:
            logger.error("refund refused by the provider", extra={"refund_id": refund_id, "error": str(exc)})
        return locked
    with transaction.atomic(durable=True):
        locked = Refund.objects.select_for_update().get(pk=refund_id)
        if locked.status == Refund.Status.REQUESTED and locked.idempotency_key == key:
            locked.status = Refund.Status.SUBMITTED
            locked.provider_refund_id = result.refund_id
            locked.submitted_at = timezone.now()
            locked.last_error = ""
            locked.save(update_fields=["status", "provider_refund_id", "submitted_at", "last_error"])
        elif locked.provider_refund_id != result.refund_id:
            logger.error(
                "the provider made a refund no longer asked for (superseded or asked again meanwhile); its "
                "webhook records it as a part refunded at the provider",
                extra={"refund_id": refund_id, "provider_refund_id": result.refund_id, "status": locked.status},
            )
    if checkout.provider == "sandbox":
        # The sandbox plays the provider: it announces the refund by webhook, as Stripe would.
        from apps.payments.sandbox import sandbox_announce_refund

        sandbox_announce_refund(reference=reference, refund_id=result.refund_id)
    return locked


# --- capture (providers where approval is not payment) -------------------------------------


def _record_payment_error(*, checkout: Checkout, error: str) -> None:
    """Tell the shopper why the approved payment was not taken (its own short transaction; only
    while the checkout still awaits payment)."""
    message = f"{error}. The payment was not taken: approve it again, with another funding source if needed."
    with transaction.atomic(durable=True):
        Checkout.objects.filter(pk=checkout.pk, status=Checkout.Status.AWAITING_PAYMENT).update(
            payment_error=message[:2000], updated_at=timezone.now()
        )


def _publish_capture_requested(*, tenant_id: int, checkout_id: uuid.UUID, reference: str) -> None:
    outbox_publish(
        topic=TOPIC_CAPTURE_REQUESTED,
        tenant_id=tenant_id,
        aggregate_type="checkout",
        aggregate_id=checkout_id,
        payload={"checkout_id": str(checkout_id), "reference": reference},
    )


def checkout_capture_request(*, tenant_id: int, checkout_id: uuid.UUID, reference: str) -> bool:
    """The provider says the buyer approved the payment (PayPal): ask for its capture after commit,
    if the checkout still awaits payment and is not overdue. Returns whether it asked: an order
    approved after its checkout closed is never captured (`checkout_capture` checks again), so the
    buyer is never charged for it.

    Joins the caller's transaction (the webhook event's processing). Stamps the checkout's
    `capture_requested_at`, which `checkout_capture` clears when its attempt concludes, so that
    `captures_requeue_stale` can find a capture whose message the broker lost.
    """
    now = timezone.now()
    stamped = Checkout.objects.filter(
        tenant_id=tenant_id, pk=checkout_id, status=Checkout.Status.AWAITING_PAYMENT, expires_at__gt=now
    ).update(capture_requested_at=now)
    if stamped:
        _publish_capture_requested(tenant_id=tenant_id, checkout_id=checkout_id, reference=reference)
    return bool(stamped)


def _capture_concluded(*, checkout: Checkout) -> None:
    """Clear the capture marker this attempt started with, unless a newer approval stamped it
    while the attempt ran (compared as stored, so no two processes' clocks are compared)."""
    if checkout.capture_requested_at is not None:
        Checkout.objects.filter(pk=checkout.pk, capture_requested_at=checkout.capture_requested_at).update(
            capture_requested_at=None
        )


def checkout_capture(*, checkout_id: uuid.UUID | str) -> FactOutcome | None:
    """Capture an approved payment (PayPal) and apply what the capture says.

    Outside any transaction (provider call), in the checkout's tenant context. The capture's
    idempotency key is `capture:<checkout id>`, so a retry returns the first capture. A PAID or
    FAILED capture is applied as a fact in its own transaction; anything else waits for the
    provider's webhook. A checkout that no longer awaits payment, or is past its expiry, is not
    captured at all (returns None): an expired checkout's order is never charged. Retryable
    ProviderErrors are raised. A capture refused for good (e.g.
    PayPal's 422 ORDER_ALREADY_CAPTURED or INSTRUMENT_DECLINED) is not taken at its word: the
    order's own status is fetched and applied when it is PAID or FAILED (already captured
    elsewhere: the shopper paid); otherwise the refusal is logged and stored in the checkout's
    `payment_error` (the API shows it while the checkout awaits payment), and the order waits
    for the buyer, the provider's webhook or the reservation's expiry. Every outcome but a raised
    error clears the checkout's `capture_requested_at` (the attempt concluded).
    """
    if connection.in_atomic_block:
        raise TransactionManagementError("the provider must not be called inside a transaction")
    checkout = Checkout.objects.get(pk=checkout_id)
    if not _capturable(checkout):
        # Never charge an order whose checkout expired (its stock is released) or closed: an
        # approval moves no money, so leaving the order uncaptured means no charge at all.
        logger.warning(
            "approved order not captured: the checkout is closed or overdue",
            extra={"checkout_id": str(checkout.pk), "status": checkout.status},
        )
        outcome = None
    else:
        outcome = _capture(checkout=checkout)
    _capture_concluded(checkout=checkout)
    return outcome


def _capturable(checkout: Checkout) -> bool:
    """A capture may charge the buyer only while the checkout still awaits payment and is not
    past its expiry (an overdue checkout is about to expire and release its stock). Read just
    before the capture; a capture in flight while the checkout expires can still succeed, and
    that payment is refunded as a late one (`_on_paid`)."""
    return (
        checkout.status in (Checkout.Status.AWAITING_PAYMENT, Checkout.Status.AWAITING_PAYMENT_SESSION)
        and checkout.expires_at > timezone.now()
    )


def _capture(*, checkout: Checkout) -> FactOutcome | None:
    provider = get_provider(checkout.provider)
    capture = getattr(provider, "capture", None)
    reference = checkout.provider_reference
    if capture is None or not reference:
        return None
    source = f"{checkout.provider}:capture"
    refusal: str | None = None
    try:
        state = capture(reference=reference, idempotency_key=f"capture:{checkout.pk}")
    except ProviderError as exc:
        if exc.retryable:
            raise
        logger.warning("capture refused", extra={"checkout_id": str(checkout.pk), "error": str(exc)})
        refusal = str(exc)
        try:
            state = provider.fetch_status(reference=reference)
        except ProviderError as status_exc:
            if status_exc.retryable:
                raise
            logger.warning(
                "order status unavailable after a refused capture",
                extra={"checkout_id": str(checkout.pk), "error": str(status_exc)},
            )
            return None
        source = f"{checkout.provider}:order-status"
    if str(state.status) not in ("paid", "failed"):
        if refusal is not None:
            _record_payment_error(checkout=checkout, error=refusal)
        return None
    fact = PaymentFact(
        status="paid" if str(state.status) == "paid" else "failed",
        source=source,
        amount_minor=state.amount_minor,
        currency=state.currency,
        payment_id=state.payment_id,
    )
    try:
        with transaction.atomic(durable=True):
            return transaction_apply_fact(tenant_id=checkout.tenant_id, checkout_id=checkout.pk, fact=fact)
    except PaidWithoutAmount:
        # Grant nothing; the provider's capture webhook, which carries the amount, settles it.
        logger.exception("provider reports paid without an amount", extra={"checkout_id": str(checkout.pk)})
        return None
