"""Writes for payouts: destinations, the batch run (fenced) and the provider submission.

The batch run holds the lease `payouts:batch` (Redis lock + database epoch, `apps.core.locks`)
and writes each wallet's payout in its own transaction whose first statement checks that epoch:
a runner that lost its lease (TTL lapsed, Redis forgot it, the process paused) cannot commit a
payout after a newer runner took over. The newer runner finishes the same batch; the unique
(batch, wallet) constraint and the wallet's exact balance (already debited) mean nobody is paid
twice. A wallet is paid its payable balance (`_wallet_payable`): the exact balance less its
share of the refunds under way, in amounts its provider can send. The provider is called
afterwards, by `payout_submit`, with the payout id as its idempotency key.

A photographer's "pay me now" (`payout_wallet_request`, in the studio form's transaction)
publishes `payout.wallet_requested`; its consumer (`payout_wallet_run`) holds the same lease and
pays that one wallet, in a batch of its own that is opened, paid and completed in ONE
transaction together with the consumer's inbox row. A busy lease makes the consumer retry later
rather than drop the request; a batch and a request that race pay the wallet once, since each
pays the exact balance, which the first payout's debit already took. A second request of the
wallet is refused while the first is in flight (its audit row names its message, and the
consumer's inbox row ends it) or its payout is on its way; requests of one wallet take turns.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from apps.commerce.selectors import wallet_refund_holds
from apps.core.locks import FencedLease, StaleLeaseError, fenced_lock, try_fenced_lock
from apps.core.problems import DomainError, NotFound
from apps.ledger.models import LedgerAccount
from apps.ledger.partitioning import logical_partition
from apps.ledger.services import EntryIn, ledger_entries_append
from apps.ops.killswitch import capability_enabled, ensure_enabled
from apps.ops.models import Capability
from apps.outbox.models import InboxEntry, uuid7
from apps.outbox.requeue import RequeueAudit, requeue_stale
from apps.outbox.services import consume_once, outbox_publish
from apps.payments.providers.base import (
    PayoutDestinationError,
    PayoutEvent,
    PayoutResult,
    PayoutStatus,
    ProviderError,
)
from apps.payments.providers.registry import get_provider
from apps.payouts.models import Payout, PayoutBatch, PayoutDestination
from apps.payouts.selectors import (
    REQUEST_AUDIT_ACTION,
    WALLET_REQUEST_CONSUMER,
    RefusalReason,
    payout_minimum_minor,
    payout_request_standings,
)
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import Membership, Organization, User
from apps.tenancy.services import audit_record

logger = logging.getLogger("darkroom.payouts")

BATCH_LOCK = "payouts:batch"
TOPIC_PAYOUT_CREATED = "payout.created"
TOPIC_BATCH_REQUESTED = "payout.batch_requested"
TOPIC_WALLET_REQUESTED = "payout.wallet_requested"
# WALLET_REQUEST_CONSUMER (apps.payouts.selectors): the consumer of TOPIC_WALLET_REQUESTED (its Celery
# task name and its inbox name), whose inbox row ends a request's time in flight.


class NotAMember(NotFound):
    """A payout destination was set for a user who is not a member of the studio (a 404 problem
    at the API: another studio's users are as invisible as missing ones)."""

    slug = "not-a-member"
    title = "No such member in this studio"
    when_it_happens = (
        "A payout destination was set for a user who is not a member of this studio (users of other "
        "studios are answered the same way). Nothing was written."
    )
    what_to_do = "Check the user's id: GET /api/v1/tenancy/members lists the studio's members."


class WalletNotFound(NotFound):
    """The wallet asked to be paid is not the caller's (or not a wallet of this studio)."""

    slug = "wallet-not-found"
    title = "No such wallet"
    when_it_happens = (
        "A request to be paid now names a wallet that is not the signed-in member's, or not a wallet of "
        "this studio. Nothing was asked."
    )
    what_to_do = "Ask to be paid from your own wallet on the studio's wallet page."


class NoPayoutDestination(DomainError):
    """A photographer asked to be paid now, and has no payout destination yet: nowhere to send
    the money. Nothing was asked."""

    status_code = 409
    slug = "no-payout-destination"
    title = "No payout destination"
    what_to_do = (
        "A studio owner sets the photographer's payout destination on the wallet page, under Payout "
        "destinations (or with PUT /api/v1/payouts/destinations/{id}, the photographer's user id); then ask again."
    )


class BelowPayoutMinimum(DomainError):
    """A photographer asked to be paid now, and their balance, less what refunds under way will
    take from it, is below the smallest payout; `detail` gives both amounts. Nothing was asked."""

    status_code = 409
    slug = "below-payout-minimum"
    title = "Balance below the payout minimum"
    what_to_do = (
        "Ask again once sales bring the balance up to the smallest payout; sales that just happened may "
        "take a few seconds to count."
    )


class PayoutInProgress(DomainError):
    """A photographer asked to be paid now while a payout of the same wallet was just asked for
    or is being sent. Nothing was asked."""

    status_code = 409
    slug = "payout-in-progress"
    title = "A payout is already on its way"
    what_to_do = "Wait for that payout: the wallet page lists it. Ask again afterwards for what has come in since."


# --- destinations ---------------------------------------------------------------------------

SANDBOX_SWITCHED_OFF = (
    "The sandbox is switched off on this platform: it moves no real money, so nobody can be paid through it. "
    "Choose the provider that really pays this photographer."
)


def payout_destination_normalize(*, provider: str, destination: str) -> str:
    """The destination as the provider's adapter normalises it (for the studio's form, the API and
    the admin). The sandbox only while SANDBOX_ENABLED: its payouts are "paid" at once without
    moving money, so a sandbox destination elsewhere would empty a wallet into nothing (and
    `payout_submit` fails, crediting back, a payout to one set before it was switched off).
    Raises UnknownProviderError, PayoutDestinationError."""
    if provider == "sandbox" and not settings.SANDBOX_ENABLED:
        raise PayoutDestinationError(SANDBOX_SWITCHED_OFF)
    return get_provider(provider).normalize_payout_destination(destination)


@transaction.atomic
def payout_destination_set(
    *,
    tenant: Organization,
    owner: User,
    provider: str,
    destination: str,
    actor: User | None = None,
    actor_label: str = "",
) -> PayoutDestination:
    """Set where `owner` (a member of `tenant`) is paid; audited. Joins the caller's transaction
    (the admin's form save) or opens one.

    The destination is validated and normalised by the provider's adapter. Raises NotAMember,
    UnknownProviderError, PayoutDestinationError.
    """
    if not Membership.objects.filter(tenant=tenant, user=owner).exists():
        raise NotAMember(f"User {owner.pk} is not a member of this studio.")
    normalized = payout_destination_normalize(provider=provider, destination=destination)
    now = timezone.now()
    row, created = PayoutDestination.objects.select_for_update().get_or_create(
        tenant=tenant,
        owner=owner,
        defaults={"provider": provider, "destination": normalized, "created_at": now, "updated_at": now},
    )
    previous = None if created else {"provider": row.provider, "destination": row.destination}
    if not created:
        row.provider, row.destination, row.updated_at = provider, normalized, now
        row.save(update_fields=["provider", "destination", "updated_at"])
    audit_record(
        action="payout_destination.set",
        tenant_id=tenant.pk,
        actor_user=actor,
        actor_label=actor_label,
        target_type="user",
        target_id=str(owner.pk),
        data={"provider": provider, "destination": normalized, "previous": previous},
    )
    return row


# --- the batch ------------------------------------------------------------------------------


@dataclass
class BatchRunResult:
    batch_id: int | None
    epoch: int | None
    resumed: bool = False
    busy: bool = False
    paused: bool = False  # the payouts kill switch is engaged (before the run, or during it)
    payout_ids: list[uuid.UUID] = field(default_factory=list)

    def describe(self) -> str:
        if self.paused and self.batch_id is not None:
            return f"stopped batch {self.batch_id} after {len(self.payout_ids)} payout(s): the kill switch was engaged"
        if self.paused:
            return "payouts are switched off (kill switch)"
        if self.busy:
            return "another runner holds the payout lease"
        verb = "resumed" if self.resumed else "ran"
        return f"{verb} batch {self.batch_id} (epoch {self.epoch}): {len(self.payout_ids)} payout(s)"


def payout_sendable_minor(*, provider: str, amount_minor: int, currency: str) -> int:
    """The most of `amount_minor` (a payable balance) that `provider` can send in `currency`
    (`PaymentProvider.payout_sendable_minor`). The payout is this amount and its ledger debit the
    same; the rest stays in the wallet for a later payout."""
    if amount_minor <= 0:
        return amount_minor
    return get_provider(provider).payout_sendable_minor(amount_minor=amount_minor, currency=currency)


@dataclass(frozen=True)
class DueWallet:
    account_id: int
    tenant_id: int
    owner_id: int
    currency: str
    client_id: str
    provider: str
    destination: str


def payout_batch_run(*, trigger: str, batch_size: int | None = None) -> BatchRunResult:
    """Pay every due wallet once: open (or resume) the running batch, write one payout per due
    wallet, complete the batch. Returns what it did; `busy` when another runner holds the lease.

    Must be called outside any transaction (each wallet is its own transaction, fenced by the
    lease epoch). The payouts kill switch engaged before or during the run stops it before the
    next wallet (`paused`); a batch stopped so is completed, and the next one pays the rest.
    A wallet is due when it has a payout destination and its projected balance is
    at least `payout_minimum_minor()`, less its refunds under way; it is paid its payable balance
    (`_wallet_payable`) at the moment of the debit.
    Raises StaleLeaseError / LockLost if the lease is lost midway: what was written stays, and
    the next runner finishes the batch.
    """
    if connection.in_atomic_block:
        raise TransactionManagementError("payout_batch_run writes one transaction per wallet; call it outside one")
    if not capability_enabled(Capability.PAYOUTS):
        logger.warning("payout batch skipped: the payouts kill switch is engaged", extra={"trigger": trigger})
        return BatchRunResult(batch_id=None, epoch=None, paused=True)
    with try_fenced_lock(BATCH_LOCK, ttl=float(settings.PAYOUT_LEASE_TTL_SECONDS)) as lease:
        if lease is None:
            logger.info("payout batch skipped: lease busy", extra={"trigger": trigger})
            return BatchRunResult(batch_id=None, epoch=None, busy=True)
        with system_context("payout batch"):
            batch, resumed = _batch_open(lease=lease, trigger=trigger)
            result = BatchRunResult(batch_id=batch.pk, epoch=lease.epoch, resumed=resumed)
            for wallet in _due_wallets(batch_id=batch.pk, chunk=batch_size or 500):
                if not capability_enabled(Capability.PAYOUTS):
                    # Engaged midway: pay no further wallet (their destinations may be what the
                    # operator is fixing); the next batch after the release pays them.
                    logger.warning(
                        "payout batch stopped: the payouts kill switch was engaged", extra={"trigger": trigger}
                    )
                    result.paused = True
                    break
                lease.extend()
                payout = _payout_wallet(lease=lease, batch=batch, wallet=wallet)
                if payout is not None:
                    result.payout_ids.append(payout.id)
            _batch_complete(lease=lease, batch=batch, created=len(result.payout_ids))
    logger.info("payout batch done", extra={"trigger": trigger, "summary": result.describe()})
    return result


def _batch_open(*, lease: FencedLease, trigger: str) -> tuple[PayoutBatch, bool]:
    """The running batch (a crashed runner's), now under our epoch, or a new one."""
    with transaction.atomic(durable=True):
        lease.check()
        batch = PayoutBatch.objects.select_for_update().filter(status=PayoutBatch.Status.RUNNING).first()
        if batch is not None:
            batch.epoch = lease.epoch
            batch.runs += 1
            batch.save(update_fields=["epoch", "runs"])
            logger.warning("resuming an unfinished payout batch", extra={"batch_id": batch.pk, "epoch": lease.epoch})
            return batch, True
        return PayoutBatch.objects.create(trigger=trigger[:200], epoch=lease.epoch), False


def _batch_complete(*, lease: FencedLease, batch: PayoutBatch, created: int) -> None:
    with transaction.atomic(durable=True):
        lease.check()
        updated = PayoutBatch.objects.filter(pk=batch.pk, status=PayoutBatch.Status.RUNNING, epoch=lease.epoch).update(
            status=PayoutBatch.Status.COMPLETED,
            completed_at=timezone.now(),
            payouts_created=Payout.objects.filter(batch_id=batch.pk).count(),
        )
        if updated != 1:
            raise StaleLeaseError(f"payout batch {batch.pk} is no longer ours (epoch {lease.epoch})")
    logger.info("payout batch completed", extra={"batch_id": batch.pk, "created_by_this_run": created})


_DUE_WALLETS_SQL = """
SELECT a.id, a.tenant_id, a.owner_id, a.currency, a.client_id, d.provider, d.destination, b.projected
  FROM ledger_ledgeraccount a
  JOIN payouts_payoutdestination d ON d.tenant_id = a.tenant_id AND d.owner_id = a.owner_id
 CROSS JOIN LATERAL (SELECT COALESCE(sum(balance_minor), 0) AS projected
                       FROM ledger_accountbalance WHERE account_id = a.id) b
 WHERE a.kind = 'wallet' AND a.id > %(after)s
   AND b.projected >= %(minimum)s
   AND NOT EXISTS (SELECT 1 FROM payouts_payout p WHERE p.batch_id = %(batch)s AND p.account_id = a.id)
 ORDER BY a.id
 LIMIT %(chunk)s
"""


def _due_wallets(*, batch_id: int, chunk: int) -> Iterator[DueWallet]:
    """Wallets with a destination whose projected balance, less their share of the refunds under
    way (`wallet_refund_holds`, read once per chunk), reaches the minimum and that this batch has
    not paid, in id order, read `chunk` at a time (system context). The projection may lag: a
    wallet whose recent credits are not projected yet is paid by the next batch."""
    after = 0
    minimum = payout_minimum_minor()
    while True:
        with connection.cursor() as cursor:
            cursor.execute(_DUE_WALLETS_SQL, {"after": after, "minimum": minimum, "batch": batch_id, "chunk": chunk})
            rows = cursor.fetchall()
        held = wallet_refund_holds(account_ids={row[0] for row in rows}) if rows else {}
        for *wallet, projected in rows:
            if projected - held.get(wallet[0], 0) >= minimum:
                yield DueWallet(*wallet)
        if len(rows) < chunk:
            return
        after = rows[-1][0]


# The partitions a wallet's events live in: its home partition (every wallet entry is a platform
# append with the wallet's own client id: sales, refunds, payouts; the ledger API refuses to
# debit wallets) and any partition its projection has rows for (a home that moved when the
# partition count or the whale list changed, after the projection caught up as the runbook says).
_BALANCE_PARTITIONS_SQL = "SELECT DISTINCT partition FROM ledger_accountbalance WHERE account_id = %s"
# Lock those partitions' heads in partition order (as the ledger's appenders do): no event of the
# wallet can commit until this transaction ends.
_LOCK_HEADS_SQL = """
SELECT partition FROM ledger_ledgerpartitionhead WHERE partition = ANY(%s) ORDER BY partition FOR UPDATE
"""
# The exact balance in ONE statement, so one snapshot: the projection (written with its
# checkpoint in one transaction) plus the events past each partition's checkpoint, found through
# the (partition, seq) index: only the unprojected tail is read, never the wallet's history.
_EXACT_BALANCE_SQL = """
SELECT COALESCE((SELECT sum(balance_minor) FROM ledger_accountbalance WHERE account_id = %(account)s), 0)
     + COALESCE((SELECT sum(CASE WHEN e.kind = 'credit' THEN e.amount_minor ELSE -e.amount_minor END)
                   FROM unnest(%(partitions)s::int[]) AS p(partition)
                   LEFT JOIN ledger_ledgercheckpoint c ON c.partition = p.partition
                   JOIN ledger_ledgerevent e ON e.partition = p.partition AND e.seq > COALESCE(c.seq, 0)
                  WHERE e.account_id = %(account)s), 0)
"""


def wallet_exact_balance(*, account: LedgerAccount, tenant: Organization) -> int:
    """The wallet's balance including events the projector has not applied yet.

    Must run inside the caller's transaction: locks the heads of the wallet's partitions (until
    that transaction ends), so no credit or debit of the wallet commits in between and the
    figure stays true until the caller's debit commits.
    """
    if not connection.in_atomic_block:
        raise TransactionManagementError("wallet_exact_balance locks until the caller's transaction ends")
    home = logical_partition(tenant_id=tenant.pk, tenant_slug=tenant.slug, client_id=account.client_id)
    with connection.cursor() as cursor:
        cursor.execute(_BALANCE_PARTITIONS_SQL, [account.pk])
        partitions = sorted({home, *(row[0] for row in cursor.fetchall())})
        cursor.execute(_LOCK_HEADS_SQL, [partitions])
        cursor.execute(_EXACT_BALANCE_SQL, {"account": account.pk, "partitions": partitions})
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def _payout_wallet(*, lease: FencedLease, batch: PayoutBatch, wallet: DueWallet) -> Payout | None:
    """One wallet's payout: the Payout row, its ledger debit and its outbox message, in ONE
    transaction fenced by the lease epoch. The destination is read again in that transaction
    (`wallet` comes from a scan that may be minutes old): a destination changed since is the
    one paid. None when the wallet has no destination any more or its payable balance
    (`_wallet_payable`) is below the minimum. Raises StaleLeaseError (nothing written) when a
    newer runner took over."""
    with tenant_context(wallet.tenant_id), transaction.atomic(durable=True):
        lease.check()
        current = _wallet_with_destination(tenant_id=wallet.tenant_id, account_id=wallet.account_id)
        if current is None:
            return None
        tenant, account, amount = _wallet_payable(current)
        if amount < payout_minimum_minor():
            return None
        payout = _payout_write(batch=batch, wallet=current, tenant=tenant, account=account, amount=amount)
    return payout


def _wallet_payable(wallet: DueWallet) -> tuple[Organization, LedgerAccount, int]:
    """The wallet's tenant, account and what a payout takes from it now: its exact balance less
    its share of the refunds asked for and not landed yet (`wallet_refund_holds`: their landing
    debits it), cut to what the provider can send in the wallet's currency
    (`payout_sendable_minor`); the rest stays in the wallet. May be zero or negative.

    In the caller's (fenced) transaction, whose end releases the partition heads locked here:
    no event of the wallet, a refund's landing debit included, commits before. The holds are
    read after that lock, so a refund that lands meanwhile is either in the balance or held,
    never both nor neither. A refund *asked for* after the holds are read (its request writes
    no ledger event, so nothing here waits for it) is paid out by this payout: its landing
    later takes the wallet below zero, and the next credits make it up (README, "Payouts").
    """
    tenant = Organization.objects.get(pk=wallet.tenant_id)
    account = LedgerAccount.objects.get(pk=wallet.account_id)
    balance = wallet_exact_balance(account=account, tenant=tenant)
    held = wallet_refund_holds(account_ids=[account.pk]).get(account.pk, 0)
    payable = payout_sendable_minor(provider=wallet.provider, amount_minor=balance - held, currency=account.currency)
    return tenant, account, payable


def _payout_write(
    *, batch: PayoutBatch, wallet: DueWallet, tenant: Organization, account: LedgerAccount, amount: int
) -> Payout:
    """The payout of `amount` (what `_wallet_payable` found payable), its ledger debit of the
    same amount and its `payout.created` message. In the caller's fenced transaction, in the
    wallet's tenant context."""
    payout_id = uuid7()
    appended = ledger_entries_append(
        tenant=tenant,
        entries=[
            EntryIn(
                account_id=account.pk,
                amount_minor=amount,
                currency=account.currency,
                idempotency_key=f"payout:{payout_id}",
                kind="debit",
                reference=f"payout {payout_id}",
            )
        ],
    )
    debit = appended.items[0]
    assert debit.status == "created" and debit.event_id is not None, debit
    payout = Payout.objects.create(
        id=payout_id,
        tenant_id=wallet.tenant_id,
        batch=batch,
        account_id=account.pk,
        owner_id=wallet.owner_id,
        amount_minor=amount,
        currency=account.currency,
        provider=wallet.provider,
        destination=wallet.destination,
        debit_event_id=debit.event_id,
    )
    _publish_payout_created(payout)
    return payout


def _publish_payout_created(payout: Payout) -> None:
    outbox_publish(
        topic=TOPIC_PAYOUT_CREATED,
        tenant_id=payout.tenant_id,
        aggregate_type="payout",
        aggregate_id=payout.id,
        payload={"payout_id": str(payout.id)},
    )


@transaction.atomic(durable=True)
def payout_batch_request(*, actor: User | None, actor_label: str) -> None:
    """Ask for a payout batch now (operator): an outbox message the batch task consumes; audited.
    Outermost transaction, in the system context. Raises CapabilityDisabled (payouts switched off)."""
    ensure_enabled(Capability.PAYOUTS)
    with system_context("payout batch request"):
        outbox_publish(
            topic=TOPIC_BATCH_REQUESTED,
            tenant_id=None,
            aggregate_type="payout_batch",
            aggregate_id="requested",
            payload={"trigger": f"operator: {actor_label}"[:200]},
        )
        audit_record(
            action="payout_batch.request",
            tenant_id=None,
            actor_user=actor,
            actor_label=actor_label,
            target_type="payout_batch",
            target_id="next",
            data={},
        )


# --- one wallet, on request ----------------------------------------------------------------

# Each refusal of `PayoutRequestStanding.refusal` (the rule the wallet page shows) as the error raised.
_REFUSALS: dict[RefusalReason, type[DomainError]] = {
    "no_destination": NoPayoutDestination,
    "payout_requested": PayoutInProgress,
    "payout_pending": PayoutInProgress,
    "below_minimum": BelowPayoutMinimum,
}

# Requests of one wallet take turns (a transaction-level advisory lock, held until the caller's
# transaction ends): the second reads the standing after the first committed, so it sees the first
# request in flight and is refused, never both taken.
_REQUEST_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended('payouts.wallet_request:' || %s, 0))"


@transaction.atomic
def payout_wallet_request(*, tenant_id: int, account_id: int, actor: User) -> int:
    """`actor` asks to be paid the balance of their wallet `account_id` now rather than at the
    next scheduled batch: a `payout.wallet_requested` message (paid by `payout_wallet_run`) and
    an audit row. Returns what qualified (minor units): the projected balance less the wallet's
    share of the refunds under way (`wallet_refund_holds`), which a payout leaves in the wallet.

    Joins the caller's transaction (the studio form's, so the form's key row, the message and
    the audit row commit together) or opens one; in the tenant's context. Requests of one wallet
    take turns until the caller's transaction ends (`_REQUEST_LOCK_SQL`).
    The wallet must be the actor's, have a payout destination, no request in flight (the audit row
    names its message, whose consumer's inbox row ends it: `payout_request_standings`), no payout
    still pending or not yet counted in the projected balance, and reach PAYOUT_MINIMUM_MINOR in its
    projected balance less its refunds under way (what the batch reads). Raises CapabilityDisabled
    (the payouts kill switch), WalletNotFound, NoPayoutDestination, PayoutInProgress,
    BelowPayoutMinimum; nothing is written then.
    """
    ensure_enabled(Capability.PAYOUTS)
    with connection.cursor() as cursor:
        cursor.execute(_REQUEST_LOCK_SQL, [str(account_id)])
    standing = payout_request_standings(tenant_id=tenant_id, owner_id=actor.pk, account_ids=[account_id]).get(
        account_id
    )
    if standing is None:
        raise WalletNotFound("You have no such wallet in this studio.")
    refusal = standing.refusal
    if refusal is not None:
        raise _REFUSALS[refusal.reason](refusal.detail)
    message = outbox_publish(
        topic=TOPIC_WALLET_REQUESTED,
        tenant_id=tenant_id,
        aggregate_type="ledger_account",
        aggregate_id=account_id,
        payload={"tenant_id": tenant_id, "account_id": account_id, "requested_by": actor.pk},
    )
    audit_record(
        action=REQUEST_AUDIT_ACTION,
        tenant_id=tenant_id,
        actor_user=actor,
        actor_label=f"user:{actor.pk}",
        target_type="ledger_account",
        target_id=str(account_id),
        data={
            "balance_minor": standing.balance_minor,
            "held_for_refunds_minor": standing.held_minor,
            "currency": standing.currency,
            "message_id": str(message.pk),  # in flight until its consumer's inbox row exists
        },
    )
    return standing.payable_minor


@dataclass
class WalletRunResult:
    outcome: str  # "paid", "duplicate", "below_minimum", "no_destination"
    batch_id: int | None = None
    payout_id: uuid.UUID | None = None
    amount_minor: int | None = None

    def describe(self) -> str:
        if self.outcome == "paid":
            return f"paid {self.amount_minor} in payout {self.payout_id} (batch {self.batch_id})"
        return {
            "duplicate": "request already handled: skipped",
            "below_minimum": "wallet below the payout minimum: nothing paid",
            "no_destination": "wallet without a payout destination: nothing paid",
        }[self.outcome]


def payout_wallet_run(*, tenant_id: int, account_id: int, message_id: str | uuid.UUID, trigger: str) -> WalletRunResult:
    """Pay one requested wallet its payable balance (`_wallet_payable`), once per request message
    (`message_id`).

    Must be called outside any transaction: takes the lease `payouts:batch`, so it never runs
    beside a batch, then writes in ONE transaction, fenced by the lease epoch: the consumer's
    inbox row, a batch of its own (`trigger` names the request; created completed, so it never
    stays running and never resumes or blocks a crashed batch), the payout, its ledger debit and
    its `payout.created` message. No payout (logged) when the wallet's payable balance is below
    PAYOUT_MINIMUM_MINOR (a batch paid it meanwhile, or a refund took it down) or it has no
    destination any more. Either way the inbox row ends the request's time in flight, in the same
    transaction as its payout if any (`payout_request_standings`). A redelivered message changes
    nothing.
    Raises CapabilityDisabled (kill switch), LockBusy (a batch or another request holds the
    lease), StaleLeaseError / LockLost (lost it midway: nothing written): the caller retries.
    """
    if connection.in_atomic_block:
        raise TransactionManagementError("payout_wallet_run takes the batch lease; call it outside a transaction")
    # A redelivery of a request already applied need not wait for the lease (e.g. behind a batch).
    if InboxEntry.objects.filter(consumer=WALLET_REQUEST_CONSUMER, message_id=message_id).exists():
        return WalletRunResult(outcome="duplicate")
    ensure_enabled(Capability.PAYOUTS)
    log = {"tenant_id": tenant_id, "account_id": account_id, "message_id": str(message_id)}
    with (
        fenced_lock(BATCH_LOCK, ttl=float(settings.PAYOUT_LEASE_TTL_SECONDS)) as lease,
        tenant_context(tenant_id),
        transaction.atomic(durable=True),
    ):
        lease.check()
        with consume_once(consumer=WALLET_REQUEST_CONSUMER, message_id=message_id) as first:
            if not first:
                return WalletRunResult(outcome="duplicate")
            wallet = _wallet_with_destination(tenant_id=tenant_id, account_id=account_id)
            if wallet is None:
                logger.warning("payout request: the wallet has no payout destination; nothing paid", extra=log)
                return WalletRunResult(outcome="no_destination")
            tenant, account, amount = _wallet_payable(wallet)
            if amount < payout_minimum_minor():
                logger.info(
                    "payout request: the wallet is below the payout minimum; nothing paid",
                    extra={**log, "balance_minor": amount},
                )
                return WalletRunResult(outcome="below_minimum", amount_minor=amount)
            batch = PayoutBatch.objects.create(
                status=PayoutBatch.Status.COMPLETED,
                trigger=trigger[:200],
                epoch=lease.epoch,
                completed_at=timezone.now(),
                payouts_created=1,
                wallet_request=True,
            )
            payout = _payout_write(batch=batch, wallet=wallet, tenant=tenant, account=account, amount=amount)
    logger.info("payout request paid", extra={**log, "payout_id": str(payout.id), "batch_id": batch.pk})
    return WalletRunResult(outcome="paid", batch_id=batch.pk, payout_id=payout.id, amount_minor=amount)


def _wallet_with_destination(*, tenant_id: int, account_id: int) -> DueWallet | None:
    """The wallet with its current destination; None when it has none (a missing wallet raises
    LedgerAccount.DoesNotExist: a scan or a request named it, so it existed). In the caller's
    transaction, in the tenant's context: the destination row stays locked until it ends, so a
    change of destination commits either before the payout (and is the one paid) or after it."""
    account = LedgerAccount.objects.get(tenant_id=tenant_id, pk=account_id, kind=LedgerAccount.Kind.WALLET)
    destination = (
        PayoutDestination.objects.select_for_update(no_key=True)
        .filter(tenant_id=tenant_id, owner_id=account.owner_id)
        .first()
    )
    if destination is None or account.owner_id is None:
        return None
    return DueWallet(
        account_id=account.pk,
        tenant_id=tenant_id,
        owner_id=account.owner_id,
        currency=account.currency,
        client_id=account.client_id,
        provider=destination.provider,
        destination=destination.destination,
    )


# --- the provider call ----------------------------------------------------------------------


def payout_submit(*, payout_id: uuid.UUID | str) -> Payout:
    """Send a pending payout to its provider (outside any transaction; the payout's tenant context).

    Never pays twice and never credits back money that may have moved:
    * The payout id is the provider's idempotency key, and an attempt first claims the payout
      (`claimed_until`, one short transaction): an attempt that finds it claimed, or no longer
      pending, returns it untouched.
    * A payout still unsent PAYOUT_RETRY_WINDOW_HOURS after it was made goes to `needs_review`
      instead of being sent (providers forget idempotency keys after a day to a month).
    * Retryable ProviderError: recorded, the claim released, re-raised (the consumer backs off).
    * Refused for certain: the adapter refused the destination, amount or currency before
      sending (or the destination is the sandbox, switched off since it was set), or the
      provider refused the FIRST attempt with a 4xx (other than 409). The payout becomes
      `failed` and its debit is credited back to the wallet, in one transaction.
    * Any other final error (an answer that could not be read, a refusal after an earlier attempt
      whose outcome is unknown, "already paid with other parameters"): `needs_review`, the
      wallet stays debited until an operator settles it (`payout_resolve`).
    * A provider answer: paid, submitted (settled later by `payouts_settle_submitted`), or
      failed (credited back); one for another amount or currency: `needs_review`.
    * The payouts kill switch engaged: CapabilityDisabled before anything (the task retries).
    """
    if connection.in_atomic_block:
        raise TransactionManagementError("the provider must not be called inside a transaction")
    ensure_enabled(Capability.PAYOUTS)
    payout = _claim(payout_id)
    if payout is None:
        return Payout.objects.get(pk=payout_id)
    try:
        if payout.provider == "sandbox" and not settings.SANDBOX_ENABLED:
            raise PayoutDestinationError(SANDBOX_SWITCHED_OFF)  # set before it was switched off
        result = get_provider(payout.provider).payout(
            payout_id=str(payout.id),
            amount_minor=payout.amount_minor,
            currency=payout.currency,
            destination=payout.destination,
            description=f"Darkroom payout {payout.id}",
        )
    except (PayoutDestinationError, ValueError) as exc:
        return _conclude_refused(payout, error=exc, certain=True)
    except ProviderError as exc:
        if exc.retryable:
            _release(payout, error=exc)
            raise
        first_attempt = payout.attempts == 1
        refused = exc.http_status is not None and 400 <= exc.http_status < 500 and exc.http_status != 409
        return _conclude_refused(payout, error=exc, certain=first_attempt and refused)
    return _apply_answer(payout, result=result, expected=Payout.Status.PENDING)


def _apply_answer(payout: Payout, *, result: PayoutResult, expected: str) -> Payout:
    """Record what the provider says of a payout still in status `expected` (pending after a
    submit, submitted when settling): `_record_answer` in its own transaction, the payout locked.
    Returns the payout as it is now."""
    source = "submit answer" if expected == Payout.Status.PENDING else "status check"
    with transaction.atomic(durable=True):
        locked = Payout.objects.select_for_update().get(pk=payout.pk)
        _record_answer(locked, result=result, expected=(expected,), source=source)
    return locked


def _record_answer(
    locked: Payout, *, result: PayoutResult, expected: tuple[str, ...], source: str, review: str = ""
) -> None:
    """Record what the provider says of a payout: the ONE rule set of the submit answer, the
    settle task and the providers' webhooks, so they cannot disagree.

    In the caller's transaction, the payout row locked (`select_for_update`), which is the fence:
    whoever locks second sees the first one's status. For a payout still in one of the `expected`
    statuses: paid, submitted (settled later) or failed (credited back, once: `_fail`); an answer
    for another amount or currency, or one with a `review` note (the provider reports what only
    an operator can settle), goes to `needs_review`. For a payout that has moved on, nothing
    changes, except that a `paid` payout the provider now reports failed, reversed or otherwise
    in doubt goes to `needs_review`: the money may have come back, but it is never credited back
    without an operator. A `failed` payout (credited back already) the provider reports paid
    stays failed but is recorded once (`paid_after_failure_at`, its `last_error`; counted by
    `darkroom_payouts_paid_after_failure_total`): the photographer may be paid twice, as the
    credit back is paid out again, so an operator must check. Reported pending, it is only
    logged: an older event delivered late says nothing new.
    """
    log = {"payout_id": str(locked.id), "provider_status": str(result.status), "source": source}
    if locked.status not in expected:
        if locked.status == Payout.Status.PAID and (result.status == PayoutStatus.FAILED or review):
            locked.status = Payout.Status.NEEDS_REVIEW
            locked.last_error = (
                f"{locked.provider} reports the paid payout {result.status} ({source}): "
                f"{review or 'the money may have come back'}; check with the provider, then mark it "
                "paid or not paid (credit the wallet back)"
            )[:2000]
            locked.save(update_fields=["status", "last_error"])
            logger.error("provider contradicts a paid payout: needs review", extra=log)
        elif locked.status == Payout.Status.FAILED and result.status == PayoutStatus.PAID:
            if locked.paid_after_failure_at is None:
                locked.paid_after_failure_at = timezone.now()
                locked.last_error = (
                    f"{locked.provider} reports this payout paid ({source}) after it failed and was credited "
                    "back: the photographer may be paid twice; check with the provider (README runbook "
                    f"'Payouts'). Failed because: {locked.last_error}"
                )[:2000]
                locked.save(update_fields=["paid_after_failure_at", "last_error"])
            logger.error("provider reports a failed payout, credited back, as paid: check it", extra=log)
        elif locked.status == Payout.Status.FAILED and result.status != PayoutStatus.FAILED:
            logger.warning("provider reports a failed payout as pending (a late event?)", extra=log)
        return
    locked.provider_payout_id = result.provider_payout_id
    locked.claimed_until = None
    locked.last_error = ""
    fields = ["provider_payout_id", "claimed_until", "last_error", "status", "completed_at"]
    if (result.amount_minor, result.currency) != (locked.amount_minor, locked.currency):
        locked.status = Payout.Status.NEEDS_REVIEW
        locked.last_error = (
            f"{locked.provider} reports {result.amount_minor} {result.currency} ({result.status}), "
            f"not {locked.amount_minor} {locked.currency}: check with the provider"
        )
        locked.save(update_fields=fields)
        logger.error("payout amount differs at the provider", extra=log)
        return
    if review:
        locked.status = Payout.Status.NEEDS_REVIEW
        locked.last_error = f"{review} ({source})"[:2000]
        locked.save(update_fields=fields)
        logger.error("provider reports a payout only an operator can settle: needs review", extra=log)
        return
    if result.status == PayoutStatus.FAILED:
        locked.save(update_fields=["provider_payout_id", "claimed_until", "last_error"])
        _fail(locked, reason=f"{locked.provider} reports the payout failed ({source})")
        return
    locked.status = Payout.Status.PAID if result.status == PayoutStatus.PAID else Payout.Status.SUBMITTED
    locked.completed_at = timezone.now() if locked.status == Payout.Status.PAID else None
    locked.save(update_fields=fields)


# --- the providers' payout webhooks ---------------------------------------------------------

# What a payout event did (the `payout_outcome` of its WebhookEvent, a metric label).
PAYOUT_EVENT_OUTCOMES = ("paid", "submitted", "failed", "needs_review", "unchanged", "unknown_payout")


@dataclass(frozen=True)
class PayoutEventOutcome:
    """What a provider's payout event did: the payout's new status (paid, submitted, failed,
    needs_review) when it moved it, `unchanged` when it did not (final, awaiting an operator, or
    nothing new), `unknown_payout` when no payout of ours matches the event."""

    outcome: str
    payout_id: uuid.UUID | None = None
    tenant_id: int | None = None
    detail: str = ""

    def describe(self) -> str:
        if self.payout_id is None:
            return f"unknown payout: {self.detail}"
        return f"payout {self.payout_id}: {self.outcome}" + (f" ({self.detail})" if self.detail else "")


def payout_apply_provider_event(*, provider: str, event: PayoutEvent, source: str) -> PayoutEventOutcome:
    """Settle the payout a provider's webhook names (`source` says which event, for the record),
    by the settle task's own rules (`_record_answer`): a payout still pending (the webhook came
    before our submit recorded the provider's answer) or submitted takes the event's outcome; a
    final or needs_review payout stays as it is, except a paid one the event contradicts (failed,
    reversed, in doubt), which goes to needs_review, never credited back by a webhook alone.

    In the caller's transaction (the webhook consumer's, which holds its inbox row and the event
    row): the payout row is locked here, so a redelivery, a second event about the same change or
    the settle task racing it finds the payout moved and changes nothing; a credit back is keyed
    `payout-reversal:<id>` besides. The payout is found across studios (system context) by
    (provider, provider payout id), else by the payout id the provider echoes (when its provider
    payout id is not recorded yet, or is this one); it is then read and written in its studio's
    context. No matching payout: `unknown_payout`, logged, nothing written.
    """
    if not connection.in_atomic_block:
        raise TransactionManagementError("payout_apply_provider_event locks the payout in the caller's transaction")
    result = event.result
    with system_context("payout webhook"):
        found = _payout_of_event(provider=provider, event=event)
    if found is None:
        detail = f"{provider} payout {result.provider_payout_id!r} (payout id {event.payout_id!r}) is not ours"
        logger.warning(
            "payout webhook for a payout Darkroom does not know",
            extra={"provider": provider, "provider_payout_id": result.provider_payout_id, "source": source},
        )
        return PayoutEventOutcome(outcome="unknown_payout", detail=detail[:150])
    payout_pk, tenant_id = found
    with tenant_context(tenant_id):
        locked = Payout.objects.select_for_update().get(pk=payout_pk)
        before = locked.status
        _record_answer(
            locked,
            result=result,
            expected=(Payout.Status.PENDING, Payout.Status.SUBMITTED),
            source=source,
            review=event.review,
        )
    moved = locked.status != before
    logger.info(
        "payout webhook applied",
        extra={"payout_id": str(payout_pk), "from": before, "to": locked.status, "source": source},
    )
    return PayoutEventOutcome(
        outcome=str(locked.status) if moved else "unchanged",
        payout_id=payout_pk,
        tenant_id=tenant_id,
        detail=f"{provider} says {result.status}" + ("" if moved else f", payout stays {before}"),
    )


def _payout_of_event(*, provider: str, event: PayoutEvent) -> tuple[uuid.UUID, int] | None:
    """(payout id, tenant id) of the payout an event is about, across studios (system context)."""
    provider_payout_id = event.result.provider_payout_id
    payouts = Payout.objects.filter(provider=provider)
    if len(provider_payout_id) <= Payout._meta.get_field("provider_payout_id").max_length:  # type: ignore[operator]
        row = payouts.filter(provider_payout_id=provider_payout_id).values_list("pk", "tenant_id").first()
        if row is not None:
            return row
    try:
        ours = uuid.UUID(event.payout_id) if event.payout_id else None
    except ValueError:
        return None
    if ours is None:
        return None
    echoed = payouts.filter(pk=ours).values_list("pk", "tenant_id", "provider_payout_id").first()
    if echoed is None:
        return None
    if echoed[2] is not None and echoed[2] != provider_payout_id:
        logger.error(
            "payout webhook names our payout with another provider payout id: not applied",
            extra={"payout_id": str(ours), "recorded": echoed[2], "event": provider_payout_id},
        )
        return None
    return echoed[0], echoed[1]


def _claim(payout_id: uuid.UUID | str) -> Payout | None:
    """Claim a pending payout for one provider call (attempts + 1, `claimed_until`, `queued_at`
    so the lost-message sweep leaves it alone meanwhile). None when it is not pending, another
    attempt holds it, or it is past the retry window (then it goes to `needs_review`)."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        payout = Payout.objects.select_for_update().get(pk=payout_id)
        if payout.status != Payout.Status.PENDING:
            return None
        if payout.claimed_until is not None and payout.claimed_until > now:
            logger.info("payout attempt already in flight", extra={"payout_id": str(payout.id)})
            return None
        if payout.created_at < now - timedelta(hours=float(settings.PAYOUT_RETRY_WINDOW_HOURS)):
            payout.status = Payout.Status.NEEDS_REVIEW
            payout.claimed_until = None
            payout.last_error = (
                f"not sent within {settings.PAYOUT_RETRY_WINDOW_HOURS} h (last error: {payout.last_error or 'none'}); "
                "the provider may have forgotten its idempotency key: check with it before paying again"
            )[:2000]
            payout.save(update_fields=["status", "claimed_until", "last_error"])
            logger.error("payout needs review: retry window passed", extra={"payout_id": str(payout.id)})
            return None
        payout.attempts += 1
        payout.claimed_until = now + timedelta(seconds=float(settings.PAYOUT_SUBMIT_CLAIM_SECONDS))
        payout.queued_at = now
        payout.save(update_fields=["attempts", "claimed_until", "queued_at"])
    return payout


def _release(payout: Payout, *, error: BaseException) -> None:
    """A retryable failure: record it and release the claim (the consumer retries later)."""
    with transaction.atomic(durable=True):
        Payout.objects.filter(pk=payout.pk, status=Payout.Status.PENDING, attempts=payout.attempts).update(
            claimed_until=None, last_error=str(error)[:2000]
        )


def _conclude_refused(payout: Payout, *, error: BaseException, certain: bool) -> Payout:
    """A final error: `failed` and credited back when nothing can have been paid (`certain`, and
    no later attempt claimed the payout after ours lapsed: the claim is fenced by the attempt
    number), else `needs_review` with the wallet still debited."""
    with transaction.atomic(durable=True):
        locked = Payout.objects.select_for_update().get(pk=payout.pk)
        if locked.status != Payout.Status.PENDING:
            return locked
        certain = certain and locked.attempts == payout.attempts
        locked.claimed_until = None
        locked.last_error = str(error)[:2000]
        if certain:
            locked.save(update_fields=["claimed_until", "last_error"])
            _fail(locked, reason=f"refused by {payout.provider}: {error}")
            logger.error("payout refused", extra={"payout_id": str(payout.id), "error": str(error)})
        else:
            locked.status = Payout.Status.NEEDS_REVIEW
            locked.save(update_fields=["claimed_until", "last_error", "status"])
            logger.error(
                "payout needs review: the provider's answer leaves it unknown whether money moved",
                extra={"payout_id": str(payout.id), "error": str(error)},
            )
    return locked


@transaction.atomic
def payout_resolve(
    *, payout_id: uuid.UUID | str, paid: bool, actor: User | None, actor_label: str, note: str = ""
) -> Payout:
    """An operator settles a payout the platform could not settle itself, after checking with the
    provider: `paid=True` marks a `needs_review` or `submitted` payout paid; `paid=False` marks a
    `needs_review` one failed and credits the wallet back (a `submitted` one is still with the
    provider and settles when it reports failure). Audited (`payout.resolve`, with the operator's
    `note` of what the provider showed when given).
    Joins the caller's transaction (the admin action's) or opens one. Raises ValueError for a
    payout in any other status.
    """
    payout = Payout.objects.select_for_update().get(pk=payout_id)
    if payout.status not in (Payout.Status.NEEDS_REVIEW, Payout.Status.SUBMITTED):
        raise ValueError(f"payout {payout.pk} is {payout.status}; only payouts needing review or submitted settle")
    if not paid and payout.status == Payout.Status.SUBMITTED:
        # The provider still holds it (e.g. a PayPal item unclaimed for up to 30 days): crediting
        # it back now could pay twice. `payouts_settle_submitted` credits it back once the
        # provider reports it failed or returned.
        raise ValueError(f"payout {payout.pk} is still with {payout.provider}; it settles when the provider says so")
    previous = payout.status
    payout.resolved_by = actor_label[:200] or "operator"
    if paid:
        payout.status = Payout.Status.PAID
        payout.completed_at = timezone.now()
        payout.save(update_fields=["resolved_by", "status", "completed_at"])
    else:
        payout.save(update_fields=["resolved_by"])
        _fail(payout, reason=f"marked failed by {payout.resolved_by} after checking with {payout.provider}")
    audit_record(
        action="payout.resolve",
        tenant_id=payout.tenant_id,
        actor_user=actor,
        actor_label=actor_label,
        target_type="payout",
        target_id=str(payout.pk),
        data={
            "from": previous,
            "to": payout.status,
            "amount_minor": payout.amount_minor,
            "currency": payout.currency,
            **({"note": note} if note else {}),
        },
    )
    return payout


def _fail(payout: Payout, *, reason: str) -> None:
    """Mark a locked payout failed and credit its amount back to the wallet (once: the credit's
    idempotency key is `payout-reversal:<id>`). In the caller's transaction."""
    appended = ledger_entries_append(
        tenant=Organization.objects.get(pk=payout.tenant_id),
        entries=[
            EntryIn(
                account_id=payout.account_id,
                amount_minor=payout.amount_minor,
                currency=payout.currency,
                idempotency_key=f"payout-reversal:{payout.id}",
                kind="credit",
                reference=f"payout {payout.id} failed",
            )
        ],
    )
    payout.status = Payout.Status.FAILED
    payout.reversal_event_id = appended.items[0].event_id
    payout.completed_at = timezone.now()
    payout.last_error = reason[:2000]
    payout.save(update_fields=["status", "reversal_event_id", "completed_at", "last_error"])


def payouts_settle_submitted(*, limit: int = 200) -> dict[str, int]:
    """Ask the providers about `submitted` payouts (PayPal and Flutterwave settle after the call)
    not asked about for PAYOUT_SETTLE_EVERY_SECONDS, oldest first, at most `limit`: paid, failed
    (credited back), still submitted, or `needs_review` when the provider does not know the
    payout. Outside any transaction (provider calls); reads across studios in the system
    context, each payout in its studio's context. Returns counts by outcome.
    """
    if connection.in_atomic_block:
        raise TransactionManagementError("the provider must not be called inside a transaction")
    cutoff = timezone.now() - timedelta(seconds=float(settings.PAYOUT_SETTLE_EVERY_SECONDS))
    with system_context("payout settle"):
        due = list(
            Payout.objects.filter(status=Payout.Status.SUBMITTED)
            .filter(Q(checked_at__isnull=True) | Q(checked_at__lt=cutoff))
            .order_by(F("checked_at").asc(nulls_first=True), "created_at")
            .values_list("pk", "tenant_id")[:limit]
        )
    outcomes: dict[str, int] = {}
    for payout_id, tenant_id in due:
        with tenant_context(tenant_id):
            outcome = _settle_one(payout_id)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    if outcomes:
        logger.info("submitted payouts checked", extra={"outcomes": outcomes})
    return outcomes


# Status codes by which a provider refuses the caller (credentials, permissions), not the payout:
# a status check answered so says nothing about the payout, which stays submitted.
_CALLER_REFUSED = frozenset({401, 403})


def _settle_one(payout_id: uuid.UUID) -> str:
    """Ask the provider about one submitted payout and record its answer. Only an answer about
    the payout (unknown to the provider, or contradicting it) sends it to `needs_review`; a
    retryable error or a refusal of our credentials leaves it submitted ("unavailable")."""
    payout = Payout.objects.get(pk=payout_id)
    if payout.status != Payout.Status.SUBMITTED or not payout.provider_payout_id:
        return str(payout.status)
    Payout.objects.filter(pk=payout_id).update(checked_at=timezone.now())
    try:
        result = get_provider(payout.provider).payout_status(
            payout_id=str(payout.id), provider_payout_id=payout.provider_payout_id
        )
    except ProviderError as exc:
        if exc.retryable or exc.http_status in _CALLER_REFUSED:
            log = logger.warning if exc.retryable else logger.error
            log("payout status unavailable", extra={"payout_id": str(payout.id), "error": str(exc)})
            return "unavailable"
        with transaction.atomic(durable=True):
            moved = Payout.objects.filter(pk=payout_id, status=Payout.Status.SUBMITTED).update(
                status=Payout.Status.NEEDS_REVIEW, last_error=f"{payout.provider} status: {exc}"[:2000]
            )
        logger.error("payout unknown to its provider: needs review", extra={"payout_id": str(payout.id)})
        return str(Payout.Status.NEEDS_REVIEW) if moved else "moved on"
    return str(_apply_answer(payout, result=result, expected=Payout.Status.SUBMITTED).status)


@transaction.atomic(durable=True)
def payouts_requeue_stale(*, older_than_seconds: float, limit: int = 500) -> list[uuid.UUID]:
    """Queue again the payouts still `pending` more than `older_than_seconds` after their message
    was queued (`apps.outbox.requeue`: the broker lost it, or the consumer gave up retrying).
    One audit row per payout. Outermost transaction, in the system context (the beat task's).
    Harmless when the message was only slow: the provider call carries the payout id.
    """
    payouts = requeue_stale(
        Payout.objects.filter(status=Payout.Status.PENDING),
        queued_field="queued_at",
        fallback_field="created_at",
        older_than_seconds=older_than_seconds,
        limit=limit,
        requeue=_publish_payout_created,
        flow="payouts",
        audit=RequeueAudit(
            action="payout.requeue",
            target_type="payout",
            data=lambda payout: {"amount_minor": payout.amount_minor, "currency": payout.currency},
        ),
    )
    return [payout.id for payout in payouts]
