"""Withdrawing a photo: the studio takes it down (a wrong upload, or someone in it asked).

`photo_withdraw` marks the photo withdrawn with its reason under its row lock, audited, and writes
a `catalog.photo_withdrawn` outbox message in the same transaction. From that commit on the photo
is not shown (gallery, photo page, order pages, public API; `Photo.objects.published()`), sold
(new checkouts refuse its products, which vanish from carts), searched by find me, matched by
drop-in, or covered by bulk purchases.

Nor is it sold through a checkout that was already open (unpaid) when it was withdrawn: a payment
processed after the withdrawal committed is refused, the checkout closed unpaid (its stock
released) and the money refunded in full (`apps.commerce.services.payment`: refund reason
`photo_withdrawn`). A payment that locked the photo's row before the withdrawal did (FOR KEY
SHARE, which this function's FOR UPDATE waits for) commits first and stands as a purchase made
before the withdrawal: like every such purchase, a buyer of the photo alone keeps its download
(the studio can refund the sale). Never is a checkout paid for a photo withdrawn before its
payment. Bulk (event) purchases are not refused: they just do not cover the photo.

The message's consumer (`catalog.photo_withdrawn`, `photo_withdrawn_cleanup`) then, idempotently,
closes the studio's open checkouts that would sell the photo (`expired` with the reason
`photo_withdrawn`, stock released once, the provider session closed; the shop's order page tells
the shopper why: `apps.commerce.services.checkout.checkouts_close_for_withdrawn_photo`), and
removes what is left of it: the drop-in matches, the attendees' notifications about it and its
find-me face index (and has the face backend forget those faces, through `dropin.face_forget`),
then its public preview and thumbnail files. Its original stays, for those purchases.

Races are settled by the photo's row lock: a render or a drop-in run that commits after the
withdrawal sees it and writes nothing; one that committed before is cleaned up by the consumer;
a payment, as above. The lock must stay FOR UPDATE (not FOR NO KEY UPDATE): that is what
conflicts with the payments' FOR KEY SHARE.
Withdrawal cannot be undone: upload the photo again to sell it again.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from apps.catalog import storage
from apps.catalog.errors import InvalidWithdrawal, PhotoAlreadyWithdrawn, PhotoNotFound
from apps.catalog.models import Photo
from apps.catalog.products import Actor
from apps.core.text import text_field_problem
from apps.outbox.services import outbox_publish
from apps.tenancy.services import audit_record

logger = logging.getLogger("darkroom.catalog")

PHOTO_WITHDRAWN_TOPIC = "catalog.photo_withdrawn"
PHOTO_WITHDRAWN = "photo.withdraw"
WITHDRAWN_REASON_MAX_LENGTH = 300


def _clean_reason(reason: str) -> str:
    reason = reason.strip()
    problem = (
        text_field_problem(reason, required=True, max_length=WITHDRAWN_REASON_MAX_LENGTH)
        if reason
        else "Say why the photo is withdrawn (kept in the audit log)."
    )
    if problem:
        raise InvalidWithdrawal(f"reason: {problem}", extra={"errors": {"reason": [problem]}})
    return reason


@transaction.atomic
def photo_withdraw(*, tenant_id: int, photo_id: int, reason: str, actor: Actor) -> Photo:
    """Withdraw a photo (see the module docstring): `withdrawn_at` now, the reason, one
    `photo.withdraw` audit row and the `catalog.photo_withdrawn` message, together.

    Joins the caller's transaction (the API's Idempotency-Key protocol or the studio form's
    `submit_once`), in the tenant's context; locks the photo row. Raises InvalidWithdrawal
    (nothing read), PhotoNotFound (also another studio's photo) and PhotoAlreadyWithdrawn.
    """
    reason = _clean_reason(reason)
    photo = Photo.objects.select_for_update().filter(tenant_id=tenant_id, pk=photo_id).first()
    if photo is None:
        raise PhotoNotFound(f"Photo {photo_id} does not exist.")
    if photo.withdrawn_at is not None:
        raise PhotoAlreadyWithdrawn(f"Photo {photo_id} was withdrawn on {photo.withdrawn_at:%Y-%m-%d %H:%M} UTC.")
    photo.withdrawn_at, photo.withdrawn_reason = timezone.now(), reason
    photo.save(update_fields=["withdrawn_at", "withdrawn_reason"])
    outbox_publish(
        topic=PHOTO_WITHDRAWN_TOPIC,
        tenant_id=tenant_id,
        aggregate_type="photo",
        aggregate_id=photo.pk,
        payload={"tenant_id": tenant_id, "photo_id": photo.pk},
    )
    audit_record(
        action=PHOTO_WITHDRAWN,
        tenant_id=tenant_id,
        actor_user=actor.user,
        actor_label=actor.label,
        target_type="photo",
        target_id=str(photo.pk),
        data={"event_id": photo.event_id, "reason": reason},
    )
    return photo


def photo_withdrawn_cleanup(*, tenant_id: int, photo_id: int) -> dict[str, int]:
    """Stop what a withdrawn photo still takes part in and remove what it leaves behind (the
    consumer of `catalog.photo_withdrawn`): the open checkouts that would sell it are closed, one
    short transaction each (`checkouts_close_for_withdrawn_photo`: `checkouts_closed`), then its
    drop-in matches, notifications and face index go (one transaction, `photo_faces_unindex`),
    then its public derivative files. Idempotent; runs outside any transaction, in the photo's
    tenant context. Returns what it closed and removed. Raises OSError from storage (the task
    retries)."""
    from apps.commerce.services import checkouts_close_for_withdrawn_photo
    from apps.dropin.services import photo_faces_unindex

    photo = Photo.objects.filter(tenant_id=tenant_id, pk=photo_id).first()
    if photo is None or photo.withdrawn_at is None:
        logger.warning("cleanup asked for a photo that is not withdrawn", extra={"photo_id": photo_id})
        return {}
    closed = checkouts_close_for_withdrawn_photo(tenant_id=tenant_id, photo_id=photo_id)
    removed = {"checkouts_closed": closed, **photo_faces_unindex(tenant_id=tenant_id, photo_id=photo_id)}
    removed["files"] = sum(
        storage.delete_if_exists(
            storage.derivative_name(
                kind=kind, tenant_id=tenant_id, event_id=photo.event_id, public_token=photo.public_token
            )
        )
        for kind in ("previews", "thumbnails")
    )
    logger.info("withdrawn photo cleaned up", extra={"photo_id": photo_id, **removed})
    return removed
