"""Reads for payouts: operators' figures (metrics, admin), whether a photographer's wallet can be
paid on request now (`payout_request_standings`, the rule `payout_wallet_request` enforces), and
what each wallet entry was (`wallet_entry_sources`)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from django.conf import settings
from django.db import connection
from django.db.models import BigIntegerField, CharField, Exists, OuterRef, Q, QuerySet, Subquery, Sum, UUIDField, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from apps.commerce.models import Checkout, CheckoutLine
from apps.commerce.selectors import wallet_refund_holds
from apps.ledger.models import LedgerAccount, LedgerCheckpoint, LedgerEvent
from apps.outbox.models import InboxEntry
from apps.payments.models import WebhookEvent
from apps.payments.providers.base import money_text
from apps.payouts.models import Payout, PayoutDestination
from apps.tenancy.models import AuditLog


@dataclass(frozen=True)
class PayoutStats:
    by_status: dict[str, int]
    oldest_pending_age_seconds: float
    oldest_submitted_age_seconds: float
    running_batch_age_seconds: float | None
    last_completed_batch_age_seconds: float | None
    paid_after_failure: int


def payout_stats() -> PayoutStats:
    """Payouts per status, the ages of the oldest pending and submitted ones, how long the running batch has
    been running (None when no batch runs), how long ago the last batch over every due wallet (not a
    photographer's request) completed (None before the first), and how many failed payouts their provider
    reported paid afterwards. Across studios: call it in the system context."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT status, count(*) FROM payouts_payout GROUP BY status")
        by_status = {str(status): int(count) for status, count in cursor.fetchall()}
        cursor.execute(
            "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)"
            " FROM payouts_payout WHERE status = 'pending'"
        )
        oldest = float(cursor.fetchone()[0])
        cursor.execute(
            "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)"
            " FROM payouts_payout WHERE status = 'submitted'"
        )
        oldest_submitted = float(cursor.fetchone()[0])
        cursor.execute(
            "SELECT EXTRACT(EPOCH FROM now() - started_at) FROM payouts_payoutbatch WHERE status = 'running'"
        )
        running = cursor.fetchone()
        cursor.execute(
            "SELECT EXTRACT(EPOCH FROM now() - max(completed_at)) FROM payouts_payoutbatch"
            " WHERE status = 'completed' AND NOT wallet_request"
        )
        last_completed = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM payouts_payout WHERE paid_after_failure_at IS NOT NULL")
        paid_after_failure = int(cursor.fetchone()[0])
    return PayoutStats(
        by_status=by_status,
        oldest_pending_age_seconds=oldest,
        oldest_submitted_age_seconds=oldest_submitted,
        running_batch_age_seconds=float(running[0]) if running else None,
        last_completed_batch_age_seconds=float(last_completed) if last_completed is not None else None,
        paid_after_failure=paid_after_failure,
    )


def payout_destinations() -> QuerySet[PayoutDestination]:
    """The current tenant's destinations (RLS scopes them), by photographer."""
    return PayoutDestination.objects.order_by("owner_id")


def payouts_of_tenant(*, status: str | None = None) -> QuerySet[Payout]:
    """The current tenant's payouts (RLS scopes them), newest first."""
    payouts = Payout.objects.order_by("-created_at", "-id")
    return payouts.filter(status=status) if status else payouts


def payout_webhook_counts() -> dict[tuple[str, str], int]:
    """Processed payout webhook events by (provider, outcome) (`WebhookEvent.payout_outcome`:
    paid, submitted, failed, needs_review, unchanged, unknown_payout), through the partial index
    that holds payout events only. Across studios: call it in the system context."""
    table = WebhookEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT provider, payout_outcome, count(*) FROM {table}"
            " WHERE payout_outcome <> '' GROUP BY provider, payout_outcome"
        )
        return {(str(provider), str(outcome)): int(count) for provider, outcome, count in cursor.fetchall()}


# --- a wallet paid on request -----------------------------------------------------------------


def payout_minimum_minor() -> int:
    """The least balance a wallet is paid (minor units): PAYOUT_MINIMUM_MINOR, and never below 1,
    so a platform configured without a minimum (0, or less) pays positive balances only: an empty
    or overdrawn wallet is never "paid" a zero or negative amount."""
    return max(1, int(settings.PAYOUT_MINIMUM_MINOR))


def balance_text(amount_minor: int, currency: str) -> str:
    """A wallet's balance as people read it: `money_text`, which writes an amount below zero with
    the minus sign (U+2212) the wallet's entries show, never a hyphen: -2250, "EUR" ->
    "\u221222.50 EUR" (as the admin does)."""
    return money_text(amount_minor, currency)


# A photographer's request is recorded by its audit row (`REQUEST_AUDIT_ACTION`, naming the wallet and
# the id of its `payout.wallet_requested` message) and done with once the consumer
# (`WALLET_REQUEST_CONSUMER`) has its inbox row for that message, written in the run's transaction
# whatever the run found (paid, or nothing to pay). Until then the request is in flight, and a second
# is refused: for at most REQUEST_IN_FLIGHT_HOURS, longer than the consumer retries a busy lease or the
# kill switch (tasks.payouts.WALLET_REQUEST_RETRY, about five hours), after which the scheduled batch
# pays the wallet and a request is taken again.
REQUEST_AUDIT_ACTION = "payout.request"
WALLET_REQUEST_CONSUMER = "payouts.wallet_run_requested"
REQUEST_IN_FLIGHT_HOURS = 6

RefusalReason = Literal["no_destination", "payout_requested", "payout_pending", "below_minimum"]


@dataclass(frozen=True)
class PayoutRefusal:
    """Why a wallet cannot be paid on request now: `message` says it (the wallet page shows it),
    `detail` adds what else the request's refusal says (`payout_wallet_request` raises it)."""

    reason: RefusalReason
    message: str
    hint: str = ""

    @property
    def detail(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


@dataclass(frozen=True)
class PayoutRequestStanding:
    """What decides whether a wallet may be paid on request now: its projected balance (what the
    batch reads), its share of the refunds under way (`wallet_refund_holds`, which a payout leaves
    in it), the payout minimum, whether its owner has a payout destination, whether a request of
    it is in flight (asked for, not yet made into a payout) and whether a payout of it is still
    pending or not yet counted in the projected balance."""

    account_id: int
    currency: str
    balance_minor: int
    held_minor: int
    minimum_minor: int
    has_destination: bool
    payout_pending: bool
    payout_requested: bool = False

    @property
    def payable_minor(self) -> int:
        return self.balance_minor - self.held_minor

    @property
    def refusal(self) -> PayoutRefusal | None:
        """Why a request would be refused (the first that applies, in this order), None if it
        qualifies. `payout_wallet_request` raises it; the wallet page shows it instead of the
        button. The payouts kill switch is apart (both check it themselves)."""
        if not self.has_destination:
            return PayoutRefusal(
                "no_destination",
                "You have none yet. A studio owner (you, if you are one) sets yours on the wallet page, under "
                "Payout destinations; then ask again.",
            )
        if self.payout_requested:
            return PayoutRefusal(
                "payout_requested",
                "A payout of this wallet was just requested: it is made shortly, after any payout run in "
                "progress, and listed below.",
            )
        if self.payout_pending:
            return PayoutRefusal("payout_pending", "A payout of this wallet is already being sent; it is listed below.")
        if self.payable_minor < self.minimum_minor:
            held = money_text(self.held_minor, self.currency)
            on_hold = ""
            if self.held_minor > max(self.balance_minor, 0):  # more than the balance holds: not "of it"
                on_hold = f", and refunds under way will take {held} from it"
            elif self.held_minor:
                on_hold = f", {held} of it held for refunds under way"
            return PayoutRefusal(
                "below_minimum",
                f"Your balance is {balance_text(self.balance_minor, self.currency)}{on_hold}; payouts start at "
                f"{money_text(self.minimum_minor, self.currency)}.",
                hint="Sales that just happened may take a few seconds to count.",
            )
        return None


def _requests_in_flight(*, tenant_id: int) -> QuerySet[AuditLog]:
    """The wallet's (`OuterRef("pk")`) requests of the last REQUEST_IN_FLIGHT_HOURS whose message
    the consumer has not applied yet (no inbox row)."""
    applied = InboxEntry.objects.filter(consumer=WALLET_REQUEST_CONSUMER, message_id=OuterRef("message_uuid"))
    return (
        AuditLog.objects.filter(
            tenant_id=tenant_id,
            created_at__gte=timezone.now() - timedelta(hours=REQUEST_IN_FLIGHT_HOURS),
            action=REQUEST_AUDIT_ACTION,
            target_type="ledger_account",
            target_id=Cast(OuterRef("pk"), CharField()),
            data__has_key="message_id",
        )
        .annotate(message_uuid=Cast(KT("data__message_id"), UUIDField()))
        .filter(~Exists(applied))
    )


def _payouts_on_their_way(*, tenant_id: int) -> QuerySet[Payout]:
    """The wallet's (`OuterRef("pk")`) payouts still pending, or whose debit the projection has not
    counted yet (past its partition's checkpoint) unless they failed (their credit back is as
    uncounted): a payout the provider already paid can still leave the projected balance as it was."""
    checkpoint = LedgerCheckpoint.objects.filter(partition=OuterRef("partition")).values("seq")[:1]
    uncounted = LedgerEvent.objects.filter(
        pk=OuterRef("debit_event_id"), seq__gt=Coalesce(Subquery(checkpoint), Value(0), output_field=BigIntegerField())
    )
    return Payout.objects.filter(tenant_id=tenant_id, account_id=OuterRef("pk")).filter(
        Q(status=Payout.Status.PENDING) | (~Q(status=Payout.Status.FAILED) & Exists(uncounted))
    )


def payout_request_standings(
    *, tenant_id: int, owner_id: int, account_ids: Sequence[int] | None = None
) -> dict[int, PayoutRequestStanding]:
    """The standing of each wallet of `owner_id` in the studio (or of those of `account_ids` that
    are theirs; another's wallet is absent), by account id, in three queries however many wallets.
    The balance, the requests in flight and the payouts on their way are read in ONE statement
    (one snapshot): a request's run that commits meanwhile is seen as the request or as its
    payout, and a payout's debit the projector counts meanwhile as the payout or in the balance,
    never as neither. In the tenant's context (RLS); reads only, locks nothing."""
    accounts = LedgerAccount.objects.filter(tenant_id=tenant_id, kind=LedgerAccount.Kind.WALLET, owner_id=owner_id)
    if account_ids is not None:
        accounts = accounts.filter(pk__in=list(account_ids))
    rows = list(
        accounts.annotate(
            projected=Coalesce(Sum("balances__balance_minor"), Value(0), output_field=BigIntegerField()),
            requested=Exists(_requests_in_flight(tenant_id=tenant_id)),
            pending=Exists(_payouts_on_their_way(tenant_id=tenant_id)),
        ).values_list("pk", "currency", "projected", "requested", "pending")
    )
    if not rows:
        return {}
    ids = [pk for pk, *_ in rows]
    held = wallet_refund_holds(account_ids=ids)
    has_destination = PayoutDestination.objects.filter(tenant_id=tenant_id, owner_id=owner_id).exists()
    minimum = payout_minimum_minor()
    return {
        pk: PayoutRequestStanding(
            account_id=pk,
            currency=currency,
            balance_minor=int(projected),
            held_minor=held.get(pk, 0),
            minimum_minor=minimum,
            has_destination=has_destination,
            payout_pending=bool(pending),
            payout_requested=bool(requested),
        )
        for pk, currency, projected, requested, pending in rows
    }


# --- what a wallet entry was ------------------------------------------------------------------

# The idempotency keys (and references) the platform writes to wallets, and nothing else may
# (the ledger API refuses to debit a wallet): apps.commerce's `_wallet_entries` (a sale's credit
# `sale:<checkout>:<line>`, its refund's debit `refund:<checkout>:<line>`, both with reference
# `checkout:<checkout>`) and this app's `_payout_write` (`payout:<payout>`, reference
# `payout <payout>`) and `_fail` (`payout-reversal:<payout>`, reference `payout <payout> failed`).
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_LINE_KEY = re.compile(rf"(?P<prefix>sale|refund):(?P<checkout>{_UUID}):(?P<line>[0-9]{{1,18}})")
_CHECKOUT_REFERENCE = re.compile(rf"checkout:(?P<checkout>{_UUID})")
_PAYOUT_KEY = re.compile(rf"(?P<prefix>payout|payout-reversal):(?P<payout>{_UUID})")
_PAYOUT_REFERENCE = re.compile(rf"payout (?P<payout>{_UUID})(?P<failed> failed)?")

EntrySourceKind = Literal["sale", "refund", "payout", "payout_returned", "other"]


@dataclass(frozen=True)
class SoldItem:
    """The order line a sale's credit (or its refund's debit) is for."""

    kind: str
    size: str
    photo_id: int | None
    quantity: int
    amount_minor: int  # what the shopper paid for it, before the platform's fee
    currency: str
    event_title: str


@dataclass(frozen=True)
class EntrySource:
    """What a wallet entry was: a sale, its refund, a payout, a payout returned, or `other` (a
    shape this code does not know). `checkout_id` and `item` for a sale or refund (`item` None
    when its line is not found; `sold`: its line was found and its checkout is a sale the studio
    lists, paid or refunded); `payout` for a payout or its return (None when not found)."""

    kind: EntrySourceKind
    checkout_id: uuid.UUID | None = None
    item: SoldItem | None = None
    sold: bool = False
    payout: Payout | None = None


_OTHER = EntrySource(kind="other")


def _parse(entry: LedgerEvent) -> tuple[EntrySourceKind, uuid.UUID | None, int | None]:
    """(kind, checkout or payout id, line id) from the entry's key, else its reference."""
    key, reference = entry.idempotency_key, entry.reference
    if match := _LINE_KEY.fullmatch(key):
        kind: EntrySourceKind = "sale" if match["prefix"] == "sale" else "refund"
        if (kind == "sale") == (entry.kind == LedgerEvent.Kind.CREDIT):
            return kind, uuid.UUID(match["checkout"]), int(match["line"])
    if match := _CHECKOUT_REFERENCE.fullmatch(reference):
        return ("sale" if entry.kind == LedgerEvent.Kind.CREDIT else "refund"), uuid.UUID(match["checkout"]), None
    if match := _PAYOUT_KEY.fullmatch(key) or _PAYOUT_REFERENCE.fullmatch(reference):
        returned = match.groupdict().get("prefix") == "payout-reversal" or bool(match.groupdict().get("failed"))
        if returned == (entry.kind == LedgerEvent.Kind.CREDIT):
            return ("payout_returned" if returned else "payout"), uuid.UUID(match["payout"]), None
    return "other", None, None


def wallet_entry_sources(*, tenant_id: int, entries: Iterable[LedgerEvent]) -> dict[int, EntrySource]:
    """What each of `entries` (wallet entries of the studio) was, by entry id, from its key and
    reference, with the order line or payout it names: at most two queries for any number of
    entries (the lines with their checkout and event, the payouts). An entry of a shape not
    known, or naming a line of another checkout, is `other` or a sale/refund without its item;
    nothing here raises for an entry's text. In the tenant's context (RLS)."""
    parsed = {entry.id: (entry, *_parse(entry)) for entry in entries}
    line_ids = {line for _, kind, _, line in parsed.values() if kind in ("sale", "refund") and line is not None}
    payout_ids = {
        ref for _, kind, ref, _ in parsed.values() if kind in ("payout", "payout_returned") and ref is not None
    }
    lines: dict[int, tuple[uuid.UUID, SoldItem]] = {}
    sold: set[uuid.UUID] = set()
    if line_ids:
        found = CheckoutLine.objects.filter(tenant_id=tenant_id, pk__in=line_ids).values_list(
            "pk",
            "checkout_id",
            "checkout__status",
            "kind",
            "size",
            "photo_id",
            "quantity",
            "amount_minor",
            "currency",
            "event__title",
        )
        for pk, checkout_id, status, kind, size, photo_id, quantity, amount, currency, title in found:
            lines[pk] = (checkout_id, SoldItem(kind, size, photo_id, quantity, amount, currency, title))
            if status in (Checkout.Status.PAID, Checkout.Status.REFUNDED):
                sold.add(checkout_id)
    payouts = (
        {
            p.pk: p
            for p in Payout.objects.filter(tenant_id=tenant_id, pk__in=payout_ids).only(
                "provider", "destination", "created_at"
            )
        }
        if payout_ids
        else {}
    )
    sources: dict[int, EntrySource] = {}
    for entry_id, (_, kind, ref, line_id) in parsed.items():
        if kind in ("sale", "refund") and ref is not None:
            named = lines.get(line_id) if line_id is not None else None
            item = named[1] if named is not None and named[0] == ref else None
            sources[entry_id] = EntrySource(kind=kind, checkout_id=ref, item=item, sold=ref in sold)
        elif kind in ("payout", "payout_returned") and ref is not None:
            sources[entry_id] = EntrySource(kind=kind, payout=payouts.get(ref))
        else:
            sources[entry_id] = _OTHER
    return sources
