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
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.db.models import QuerySet

from apps.catalog.models import Photo
from apps.commerce.errors import CheckoutNotFound, EntitlementNotFound
from apps.commerce.models import Checkout, CheckoutLine, Entitlement
from apps.core.problems import DomainError
from apps.tenancy.context import tenant_context

DOWNLOAD_SALT = "darkroom.commerce.download"


class DownloadLinkInvalid(DomainError):
    status_code = 403
    slug = "download-link-invalid"
    title = "Download link invalid or expired"


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
