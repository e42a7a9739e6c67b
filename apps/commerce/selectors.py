"""Reads of commerce: checkouts, entitlements, and signed download links.

Studio-side selectors filter by `tenant_id` explicitly (defence in depth on top of RLS) and
run in that tenant's context (TenantApi provides it). `download_resolve` is the one shopper-side
read: it takes a signed token, enters the tenant named inside it, and returns the storage name
of an original only for a live entitlement that covers that photo.

Download tokens: `TimestampSigner` (SECRET_KEY, salt below) over {tenant, entitlement, photo};
they expire after DOWNLOAD_URL_MAX_AGE_SECONDS and cannot be altered without the key. A token
stops working as soon as its entitlement is revoked (refund), whatever its age.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.db.models import Q, QuerySet

from apps.catalog.models import Photo
from apps.commerce.errors import CheckoutNotFound, EntitlementNotFound
from apps.commerce.models import Checkout, CheckoutLine, Entitlement, Refund
from apps.commerce.services.payment import platform_fee_minor
from apps.core.problems import DomainError
from apps.ledger.models import LedgerAccount, LedgerEventKey
from apps.tenancy.context import tenant_context

DOWNLOAD_SALT = "darkroom.commerce.download"


class DownloadLinkInvalid(DomainError):
    """A link to download a bought photo has expired (each works for a limited time), or is not
    valid: mistyped or cut short."""

    status_code = 403
    slug = "download-link-invalid"
    title = "Download link invalid or expired"
    what_to_do = (
        "Get fresh links: the order's page in the shop shows them, and so does GET /api/v1/entitlements "
        "with the shopper's e-mail address."
    )


def checkout_get(*, tenant_id: int, checkout_id: uuid.UUID | str) -> Checkout:
    """A checkout with its transaction, its shipping row (`shipping`, if it has prints) and, in
    `lines_by_position`, its lines. Raises CheckoutNotFound (also for another tenant's checkout:
    RLS hides it)."""
    checkout = (
        Checkout.objects.filter(tenant_id=tenant_id, pk=checkout_id).select_related("transaction", "shipping").first()
    )
    if checkout is None:
        raise CheckoutNotFound(f"Checkout {checkout_id} does not exist.")
    checkout.lines_by_position = list(
        CheckoutLine.objects.filter(tenant_id=tenant_id, checkout=checkout)
        .select_related("refund")
        .order_by("position")
    )
    return checkout


def entitlements_of_email(*, tenant_id: int, email: str) -> QuerySet[Entitlement]:
    """Live (not revoked) entitlements of a shopper's email, newest first (case-insensitive)."""
    return (
        Entitlement.objects.filter(tenant_id=tenant_id, email__iexact=email.strip(), revoked_at__isnull=True)
        .select_related("event")
        .order_by("-granted_at", "-id")
    )


def photos_covered(*, entitlement: Entitlement, limit: int | None = None, offset: int = 0) -> list[int]:
    """Ids of the photos an entitlement covers, in id order: its one photo, or the event's not
    withdrawn (`offset` and `limit` page through them; None: all of them, ids only)."""
    if entitlement.photo_id is not None:
        return [entitlement.photo_id][offset : None if limit is None else offset + limit]
    ids = (
        Photo.objects.filter(tenant_id=entitlement.tenant_id, event_id=entitlement.event_id, withdrawn_at__isnull=True)
        .order_by("id")
        .values_list("id", flat=True)
    )
    return list(ids[offset:] if limit is None else ids[offset : offset + limit])


def photos_covered_count(*, entitlement: Entitlement) -> int:
    """How many photos an entitlement covers."""
    if entitlement.photo_id is not None:
        return 1
    return Photo.objects.filter(
        tenant_id=entitlement.tenant_id, event_id=entitlement.event_id, withdrawn_at__isnull=True
    ).count()


def photo_buyers_count(*, tenant_id: int, photo_id: int) -> int:
    """How many live purchases cover this photo alone (its download or a print of it)."""
    return Entitlement.objects.filter(
        tenant_id=tenant_id, photo_id=photo_id, scope=Entitlement.Scope.PHOTO, revoked_at__isnull=True
    ).count()


def event_bulk_orders_count(*, tenant_id: int, event_id: int) -> int:
    """How many paid, not refunded orders bought all the photos of this event (bulk): the
    checkouts with a live event-wide entitlement. Each covers every photo of the event that is
    not withdrawn (`photos_covered`), so withdrawing one takes it out of all of them."""
    return (
        Entitlement.objects.filter(
            tenant_id=tenant_id, event_id=event_id, scope=Entitlement.Scope.EVENT, revoked_at__isnull=True
        )
        .values("checkout_id")
        .distinct()
        .count()
    )


def download_token(*, entitlement: Entitlement, photo_id: int) -> str:
    """A signed, expiring token for one photo of an entitlement."""
    return signing.TimestampSigner(salt=DOWNLOAD_SALT).sign_object(
        {"t": entitlement.tenant_id, "e": entitlement.pk, "p": photo_id}, compress=True
    )


@dataclass(frozen=True)
class DownloadTarget:
    storage_name: str
    filename: str


def download_resolve(*, token: str) -> DownloadTarget:
    """The original an unexpired, untampered token grants, if its entitlement is still live.

    Raises DownloadLinkInvalid (bad signature, expired, malformed) and EntitlementNotFound
    (revoked or unknown entitlement, or a photo it does not cover).
    """
    try:
        data = signing.TimestampSigner(salt=DOWNLOAD_SALT).unsign_object(
            token, max_age=settings.DOWNLOAD_URL_MAX_AGE_SECONDS
        )
        tenant_id, entitlement_id, photo_id = int(data["t"]), int(data["e"]), int(data["p"])
    except signing.SignatureExpired as exc:
        raise DownloadLinkInvalid("This download link has expired; ask for a new one.") from exc
    except (signing.BadSignature, KeyError, TypeError, ValueError) as exc:
        raise DownloadLinkInvalid("This download link is not valid.") from exc
    with tenant_context(tenant_id):
        entitlement = Entitlement.objects.filter(
            tenant_id=tenant_id, pk=entitlement_id, revoked_at__isnull=True
        ).first()
        if entitlement is None:
            raise EntitlementNotFound("No such download.")
        photo = (
            Photo.objects.filter(tenant_id=tenant_id, pk=photo_id)
            .only("id", "event_id", "original", "withdrawn_at")
            .first()
        )
    # A photo bought alone stays downloadable after it is withdrawn; a bulk purchase covers the
    # event's photos still published.
    covered = photo is not None and (
        entitlement.photo_id == photo.pk
        if entitlement.scope == Entitlement.Scope.PHOTO
        else photo.event_id == entitlement.event_id and photo.withdrawn_at is None
    )
    if not covered or photo is None or not photo.original.name:
        raise EntitlementNotFound("No such download.")
    extension = photo.original.name.rsplit(".", 1)[-1] if "." in photo.original.name else "jpg"
    return DownloadTarget(storage_name=photo.original.name, filename=f"photo-{photo.pk}.{extension}")


# --- refunds under way, by wallet ----------------------------------------------------------

# A refund that will debit wallets when it lands: asked for, or accepted by the provider.
_UNDER_WAY = (Refund.Status.REQUESTED, Refund.Status.SUBMITTED)


def wallet_refund_holds(*, account_ids: Collection[int] | None = None) -> dict[int, int]:
    """Each wallet's share of the refunds asked for and not landed yet: what their landing will
    debit from it (minor units, by wallet account id; a wallet that holds nothing is absent).

    The landing's own rule (`_land_items_refund` and `_on_refunded`, through `_wallet_entries`):
    a studio's item refund debits its confirmed lines, any other refund of a fulfilled payment
    every confirmed line of it; each line its amount less PLATFORM_FEE_BPS (as the landing
    computes it) from its photographer's wallet in its currency (the one `wallet_for` picks),
    keyed `refund:<checkout>:<line>`. A line whose key the ledger holds already (debited by an
    earlier landing) holds nothing. Only a refund `requested` or `submitted` and not landed
    holds: a refused (`failed`), `not_needed` or `settled` one (its effects landed with the
    settling) does not, nor does a landed one (its debits are in the ledger), nor a second
    charge's (`duplicate_charge`: it gives back another charge and debits nothing).

    Reads the current studio's rows (RLS), or every studio's in the system context;
    `account_ids` limits the answer, and the lines read, to those wallets.
    """
    under_way = list(
        Refund.objects.filter(status__in=_UNDER_WAY, landed_at__isnull=True)
        .exclude(Refund.SECOND_CHARGE)  # it debits no wallet: the order's sale stands
        .filter(Q(reason__in=Refund.PARTIAL_REASONS) | Q(transaction__fulfilled_at__isnull=False))
        .values_list("pk", "reason", "transaction__checkout_id")
    )
    items = [pk for pk, reason, _ in under_way if reason in Refund.PARTIAL_REASONS]
    whole = [checkout_id for _, reason, checkout_id in under_way if reason not in Refund.PARTIAL_REASONS]
    if not items and not whole:
        return {}
    lines = CheckoutLine.objects.filter(state=CheckoutLine.State.CONFIRMED, photographer_id__isnull=False).filter(
        Q(refund_id__in=items) | Q(checkout_id__in=whole)
    )
    asked = set(account_ids) if account_ids is not None else None
    if asked is not None:
        owners = LedgerAccount.objects.filter(pk__in=asked, kind=LedgerAccount.Kind.WALLET)
        lines = lines.filter(photographer_id__in=owners.values("owner_id"))
    found = list(
        lines.values_list("pk", "tenant_id", "checkout_id", "photographer_id", "currency", "amount_minor").distinct()
    )
    if not found:
        return {}
    # The wallet a line's debit goes to: its photographer's first one in its currency.
    wallets: dict[tuple[int, int, str], int] = {}
    for pk, tenant_id, owner_id, currency in (
        LedgerAccount.objects.filter(
            kind=LedgerAccount.Kind.WALLET, client_id="", owner_id__in={line[3] for line in found}
        )
        .order_by("-pk")
        .values_list("pk", "tenant_id", "owner_id", "currency")
    ):
        wallets[(tenant_id, owner_id, currency)] = pk
    debits: dict[tuple[int, str], int] = {}  # (wallet, ledger key) -> net
    for line_id, tenant_id, checkout_id, owner_id, currency, amount in found:
        wallet = wallets.get((tenant_id, owner_id, currency))
        net = amount - platform_fee_minor(amount)
        if wallet is not None and net > 0:
            debits[(wallet, f"refund:{checkout_id}:{line_id}")] = net
    debited = set(
        LedgerEventKey.objects.filter(
            tenant_id__in={line[1] for line in found},
            account_id__in={wallet for wallet, _ in debits},
            idempotency_key__in={key for _, key in debits},
        ).values_list("account_id", "idempotency_key")
    )
    holds: dict[int, int] = {}
    for (wallet, key), net in debits.items():
        if (wallet, key) not in debited and (asked is None or wallet in asked):
            holds[wallet] = holds.get(wallet, 0) + net
    return holds
