"""Reads of the studio dashboard that the domain apps do not offer (yet).

Every function runs in the caller's tenant context (the page decorator opens it) and also
filters by `tenant_id` explicitly, as the domain selectors do. Money leaves here as integers in
minor units; pages format it with `money_text()`.

Candidates to move into their domain apps' selectors: `sales_of_tenant` (commerce),
`wallets_of_user` (ledger), `payouts_of_owner` (payouts),
`dropin_status_of_photos` (dropin), `uploaders_of_tenant` (tenancy).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import BigIntegerField, Case, Count, Exists, F, OuterRef, Q, QuerySet, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce

from apps.catalog.models import Event, Photo, PriceList
from apps.catalog.storage import public_url
from apps.commerce.models import Checkout, CheckoutLine, CheckoutShipping, Refund
from apps.commerce.selectors import wallet_refund_holds
from apps.dropin.models import AttendeeFace, DropInJob
from apps.ledger.models import LedgerAccount
from apps.ledger.partitioning import logical_partition
from apps.notifications.models import Announcement, Attendee
from apps.notifications.selectors import AnnouncementStatus, announcement_statuses, attendee_link
from apps.payments.providers.base import money_text
from apps.payouts.models import Payout, PayoutDestination
from apps.payouts.selectors import balance_text, payout_minimum_minor
from apps.tenancy.models import Membership, Organization

SOLD_STATUSES = (Checkout.Status.PAID, Checkout.Status.REFUNDED)
# On their way to the photographer. A `needs_review` payout is not: the provider's answer left it
# unknown whether the money arrived (or the bank returned it), and an operator settles it.
PAYOUT_ON_ITS_WAY_STATUSES = (Payout.Status.PENDING, Payout.Status.SUBMITTED)


# --- catalog ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoRow:
    id: int
    width: int
    height: int
    photographer_id: int
    derivatives_status: str
    derivatives_error: str
    thumbnail_url: str | None
    dropin_status: str | None
    created_at: datetime
    withdrawn_at: datetime | None
    withdrawn_reason: str


def photo_rows(*, tenant_id: int, photos: Iterable[Photo]) -> list[PhotoRow]:
    """Photos with their thumbnail URL (once rendered) and drop-in job status (one query)."""
    photos = list(photos)
    jobs = dict(
        DropInJob.objects.filter(tenant_id=tenant_id, photo_id__in=[p.pk for p in photos]).values_list(
            "photo_id", "status"
        )
    )
    return [
        PhotoRow(
            id=photo.pk,
            width=photo.width,
            height=photo.height,
            photographer_id=photo.photographer_id,
            derivatives_status=photo.derivatives_status,
            derivatives_error=photo.derivatives_error,
            thumbnail_url=(
                public_url(photo.thumbnail.name)
                if photo.derivatives_status == "ready" and photo.withdrawn_at is None
                else None
            ),
            dropin_status=jobs.get(photo.pk),
            created_at=photo.created_at,
            withdrawn_at=photo.withdrawn_at,
            withdrawn_reason=photo.withdrawn_reason,
        )
        for photo in photos
    ]


@dataclass(frozen=True)
class AttendeeRow:
    attendee: Attendee
    face_status: str | None  # their drop-in face: pending, enrolled, rejected; None: none
    page_url: str  # their signed attendee page (their credential)


def attendees_of_event(*, tenant_id: int, event_id: int) -> QuerySet[Attendee]:
    """The event's attendees, newest first."""
    return Attendee.objects.filter(tenant_id=tenant_id, event_id=event_id).order_by("-id")


def attendee_rows(*, tenant_id: int, attendees: Iterable[Attendee]) -> list[AttendeeRow]:
    """Attendees with their drop-in face status (one query) and their page's signed link."""
    attendees = list(attendees)
    faces = dict(
        AttendeeFace.objects.filter(tenant_id=tenant_id, attendee_id__in=[a.pk for a in attendees]).values_list(
            "attendee_id", "status"
        )
    )
    return [
        AttendeeRow(
            attendee=attendee,
            face_status=faces.get(attendee.pk),
            page_url=attendee_link(tenant_id=tenant_id, attendee_id=attendee.pk, generation=attendee.link_generation),
        )
        for attendee in attendees
    ]


def photo_of_event(*, tenant_id: int, event_id: int, photo_id: int) -> Photo | None:
    """One photo of the event, with its event; None if the studio's event has no such photo."""
    return Photo.objects.select_related("event").filter(tenant_id=tenant_id, event_id=event_id, pk=photo_id).first()


@dataclass(frozen=True)
class PhotoCount:
    """An event's photos as the studio counts them: `live` ones (not withdrawn; the shop shows
    those once their previews are ready) and `withdrawn` ones (never shown or sold again), apart,
    so a studio page never counts a withdrawn photo as one the shop has."""

    live: int = 0
    withdrawn: int = 0

    @property
    def total(self) -> int:
        return self.live + self.withdrawn

    def __str__(self) -> str:
        """ "1 photo", "5 photos, plus 2 withdrawn"."""
        text = f"{self.live} photo{'' if self.live == 1 else 's'}"
        return f"{text}, plus {self.withdrawn} withdrawn" if self.withdrawn else text


def photo_counts_of_events(*, tenant_id: int, event_ids: list[int]) -> dict[int, PhotoCount]:
    """The photo count of each event asked for (one query; an event without photos counts 0)."""
    rows = (
        Photo.objects.filter(tenant_id=tenant_id, event_id__in=event_ids)
        .values("event_id")
        .annotate(
            live=Count("id", filter=Q(withdrawn_at__isnull=True)),
            withdrawn=Count("id", filter=Q(withdrawn_at__isnull=False)),
        )
        .values_list("event_id", "live", "withdrawn")
    )
    counts = {int(event_id): PhotoCount(live=int(live), withdrawn=int(withdrawn)) for event_id, live, withdrawn in rows}
    return {event_id: counts.get(event_id, PhotoCount()) for event_id in event_ids}


def uploaders_of_tenant(*, tenant_id: int) -> list[tuple[int, str]]:
    """(user id, label) of the members who may be named as a photo's photographer."""
    rows = (
        Membership.objects.filter(tenant_id=tenant_id, role__in=[Membership.Role.OWNER, Membership.Role.PHOTOGRAPHER])
        .select_related("user")
        .order_by("user__username")
    )
    return [(m.user_id, f"{m.user.get_full_name() or m.user.username} ({m.role})") for m in rows]


def members_of_tenant(*, tenant_id: int) -> list[tuple[int, str]]:
    rows = Membership.objects.filter(tenant_id=tenant_id).select_related("user").order_by("user__username")
    return [(m.user_id, f"{m.user.get_full_name() or m.user.username} ({m.role})") for m in rows]


def event_choices(*, tenant_id: int) -> list[tuple[int, str]]:
    return [
        (event.pk, f"{event.title} ({event.date:%Y-%m-%d})")
        for event in Event.objects.filter(tenant_id=tenant_id).order_by("-date", "-id").only("id", "title", "date")
    ]


# --- sales --------------------------------------------------------------------------------


def sales_of_tenant(*, tenant_id: int, to_ship: bool = False) -> QuerySet[Checkout]:
    """Checkouts that were paid (including those refunded since), newest first, with their
    transaction, shipping row (prints only), the number of lines (`line_count`) and the money
    that went back to the buyer (`refunded_minor`: the refunds the provider confirmed, parts
    refunded in its dashboard included, 0 if none; a refunded sale's whole payment). A second
    charge given back is no part of the sale's payment, so none of it counts.

    `to_ship`: only the prints to ship, i.e. paid checkouts whose shipping row is still
    `unfulfilled` (the partial index `commerce_shipping_unfulfilled` finds them) with a print
    left to send (`CheckoutLine.TO_SHIP`: not refunded)."""
    sales = Checkout.objects.filter(tenant_id=tenant_id, status__in=SOLD_STATUSES)
    if to_ship:
        sales = sales.filter(
            Exists(CheckoutLine.objects.filter(CheckoutLine.TO_SHIP, tenant_id=tenant_id, checkout_id=OuterRef("pk"))),
            status=Checkout.Status.PAID,
            shipping__tenant_id=tenant_id,
            shipping__fulfilment_status=CheckoutShipping.FulfilmentStatus.UNFULFILLED,
        )
    landed = (
        Refund.objects.filter(tenant_id=tenant_id, transaction__checkout_id=OuterRef("pk"), landed_at__isnull=False)
        .exclude(Refund.SECOND_CHARGE)
        .values("transaction_id")
    )
    landed_total = landed.annotate(total=Sum("amount_minor")).values("total")
    # A payment Darkroom must not keep (late, mismatched, withdrawn photo) went back whole as its
    # refund's amount, which is what was charged.
    kept_not = landed.exclude(reason__in=[*Refund.PARTIAL_REASONS, Refund.Reason.STUDIO]).values("amount_minor")[:1]
    refunded = Case(
        # Refunded: the whole payment went back, also when it was refunded in the provider's
        # dashboard, which leaves no refund row for (all of) it.
        When(
            status=Checkout.Status.REFUNDED,
            then=Coalesce(Subquery(kept_not, output_field=BigIntegerField()), F("transaction__amount_minor")),
        ),
        default=Coalesce(Subquery(landed_total, output_field=BigIntegerField()), Value(0)),
    )
    return (
        sales.select_related("transaction", "shipping")
        .annotate(line_count=Count("lines"), refunded_minor=refunded)
        .order_by("-created_at", "-id")
    )


def prints_to_ship_count(*, tenant_id: int) -> int:
    """How many paid checkouts wait for their prints to be shipped."""
    return sales_of_tenant(tenant_id=tenant_id, to_ship=True).count()


def sale_of_tenant(*, tenant_id: int, checkout_id: uuid.UUID) -> Checkout | None:
    """One sold checkout (paid or refunded) with its transaction, shipping row and, in
    `lines_by_position`, its lines; None if the studio has no such sale (RLS hides other
    studios' checkouts as well)."""
    checkout = (
        Checkout.objects.filter(tenant_id=tenant_id, pk=checkout_id, status__in=SOLD_STATUSES)
        .select_related("transaction", "shipping")
        .first()
    )
    if checkout is None:
        return None
    checkout.lines_by_position = list(
        CheckoutLine.objects.filter(tenant_id=tenant_id, checkout=checkout)
        .select_related("refund")
        .order_by("position")
    )
    return checkout


def refunds_of_sale(*, tenant_id: int, checkout_id: uuid.UUID) -> list[Refund]:
    """The refunds asked of the provider for a sale, oldest first."""
    return list(Refund.objects.filter(tenant_id=tenant_id, transaction__checkout_id=checkout_id).order_by("pk"))


# --- wallets and payouts ------------------------------------------------------------------


@dataclass(frozen=True)
class WalletView:
    account_id: int
    currency: str
    balance_minor: int  # projected (what the API shows)
    unprojected_minor: int  # recorded, not yet folded into the balance by the projector
    held_minor: int = 0  # its share of refunds under way, which a payout leaves in it
    minimum_minor: int = 1  # the least balance, less refunds under way, that a payout pays

    @property
    def held(self) -> str:
        return money_text(self.held_minor, self.currency)

    @property
    def held_exceeds_balance(self) -> bool:
        """The refunds under way would take more than the balance shown holds: their share is not "of it"."""
        return self.held_minor > max(self.balance_minor, 0)

    @property
    def balance(self) -> str:
        """ "30.60 EUR"; below zero with the minus sign (U+2212) of the wallet's entries (`balance_text`)."""
        return balance_text(self.balance_minor, self.currency)

    @property
    def unprojected(self) -> str:
        """What is recorded and not counted yet, without its sign (the page says plus or less)."""
        return money_text(abs(self.unprojected_minor), self.currency)

    @property
    def below_zero(self) -> bool:
        """The balance shown is below zero, or the entries just recorded take it there. Only a refund
        landing after a payout took the sale's money does that: a payout never takes more than the
        balance less the refunds under way, and a refund takes back only what its sale credited."""
        return min(self.balance_minor, self.balance_minor + self.unprojected_minor) < 0

    @property
    def minimum(self) -> str:
        return money_text(self.minimum_minor, self.currency)

    @property
    def label(self) -> str:
        return f"{self.currency} wallet ({self.balance})"


# The events of the given accounts that the projector has not applied yet (past their
# partition's checkpoint), as signed sums per account. Read-only: nothing is locked.
_UNPROJECTED_SQL = """
SELECT e.account_id, COALESCE(sum(CASE WHEN e.kind = 'credit' THEN e.amount_minor ELSE -e.amount_minor END), 0)
  FROM (SELECT DISTINCT b.partition FROM ledger_accountbalance b WHERE b.account_id = ANY(%(accounts)s)
        UNION SELECT unnest(%(homes)s::int[])) AS p(partition)
  LEFT JOIN ledger_ledgercheckpoint c ON c.partition = p.partition
  JOIN ledger_ledgerevent e ON e.partition = p.partition AND e.seq > COALESCE(c.seq, 0)
 WHERE e.account_id = ANY(%(accounts)s)
 GROUP BY e.account_id
"""


def wallets_of_user(*, tenant: Organization, user_id: int) -> list[WalletView]:
    """The user's wallets in this studio (one per currency), with the projected balance, what
    is recorded but not projected yet (the payout batch's exact-balance read, without its locks)
    and their share of the refunds under way (`wallet_refund_holds`, which a payout leaves)."""
    accounts = list(
        LedgerAccount.objects.filter(tenant_id=tenant.pk, kind=LedgerAccount.Kind.WALLET, owner_id=user_id)
        .annotate(projected=Coalesce(Sum("balances__balance_minor"), Value(0), output_field=BigIntegerField()))
        .order_by("currency", "id")
    )
    if not accounts:
        return []
    homes = sorted(
        {logical_partition(tenant_id=tenant.pk, tenant_slug=tenant.slug, client_id=a.client_id) for a in accounts}
    )
    with connection.cursor() as cursor:
        cursor.execute(_UNPROJECTED_SQL, {"accounts": [a.pk for a in accounts], "homes": homes})
        pending = {int(account): int(total) for account, total in cursor.fetchall()}
    held = wallet_refund_holds(account_ids=[a.pk for a in accounts])
    minimum = payout_minimum_minor()
    return [
        WalletView(
            account_id=a.pk,
            currency=a.currency,
            balance_minor=int(a.projected),  # type: ignore[attr-defined]
            unprojected_minor=pending.get(a.pk, 0),
            held_minor=held.get(a.pk, 0),
            minimum_minor=minimum,
        )
        for a in accounts
    ]


def sale_currencies_of_studio(*, tenant_id: int) -> list[str]:
    """The currencies the studio's events are priced in, alphabetical: a sale credits its
    photographer's wallet in its event's currency, so these are the wallets' currencies to come.
    Empty before the studio's first price."""
    return list(
        PriceList.objects.filter(tenant_id=tenant_id).order_by("currency").values_list("currency", flat=True).distinct()
    )


def payouts_of_owner(*, tenant_id: int, user_id: int) -> QuerySet[Payout]:
    return Payout.objects.filter(tenant_id=tenant_id, owner_id=user_id).order_by("-created_at", "-id")


def payouts_of_studio(*, tenant_id: int) -> QuerySet[Payout]:
    return Payout.objects.filter(tenant_id=tenant_id).select_related("owner").order_by("-created_at", "-id")


def payouts_on_their_way(*, tenant_id: int, user_id: int | None = None) -> QuerySet[Payout]:
    """The studio's (or one photographer's) payouts being sent or sent and not yet confirmed."""
    payouts = Payout.objects.filter(tenant_id=tenant_id, status__in=PAYOUT_ON_ITS_WAY_STATUSES)
    return payouts.filter(owner_id=user_id) if user_id is not None else payouts


def payouts_held_for_review(*, tenant_id: int, user_id: int | None = None) -> QuerySet[Payout]:
    """The studio's (or one photographer's) payouts waiting for the platform's operators
    (`needs_review`): not on their way, not in the wallet's balance either."""
    payouts = Payout.objects.filter(tenant_id=tenant_id, status=Payout.Status.NEEDS_REVIEW)
    return payouts.filter(owner_id=user_id) if user_id is not None else payouts


def destination_of(*, tenant_id: int, user_id: int) -> PayoutDestination | None:
    return PayoutDestination.objects.filter(tenant_id=tenant_id, owner_id=user_id).first()


def destinations_of_studio(*, tenant_id: int) -> QuerySet[PayoutDestination]:
    return PayoutDestination.objects.filter(tenant_id=tenant_id).select_related("owner").order_by("owner__username")


# --- announcements ------------------------------------------------------------------------


@dataclass(frozen=True)
class AnnouncementRow:
    announcement: Announcement
    status: AnnouncementStatus


def announcement_rows(announcements: Iterable[Announcement]) -> list[AnnouncementRow]:
    """Announcements with the status and counts their deliveries say (as the API reports them),
    counted in one query for the whole page (`notifications.selectors.announcement_statuses`)."""
    announcements = list(announcements)
    statuses = announcement_statuses(announcements)
    return [AnnouncementRow(announcement=a, status=statuses[a.pk]) for a in announcements]


def announcements_of_studio(*, tenant_id: int) -> QuerySet[Announcement]:
    return Announcement.objects.filter(tenant_id=tenant_id).select_related("event").order_by("-created_at", "-id")


def audience_size(*, tenant_id: int, event_id: int) -> int:
    """Attendees of the event who have not unsubscribed (who a send would reach)."""
    return Attendee.objects.filter(tenant_id=tenant_id, event_id=event_id, unsubscribed_at__isnull=True).count()
