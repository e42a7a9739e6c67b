"""The receipt email of a paid checkout, sent once, outside any transaction.

The receipt carries the checkout's signed order link (apps/commerce/order_links.py), which opens
the order's page, with its status and fresh download links, from any browser.

The `Receipt` row is written with the payment's fulfilment (same transaction as the
entitlements), and its `checkout.paid` outbox message wakes `receipt_send`, which:
1. claims the receipt in a short transaction (`pending` → `sending` until `claimed_until`);
2. sends through Django's email backend, outside any transaction;
3. records `sent` in another short transaction.
A redelivered message finds `sent` (or a live claim) and sends nothing. A sender that dies
between 2 and 3 leaves a lapsing claim: the retry sends again, with the same Message-ID header,
which mail clients treat as one message. That window is the only way to a second copy, and no
email backend offers an idempotency key to close it.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from apps.catalog.models import ProductKind
from apps.commerce.models import Checkout, CheckoutLine, CheckoutShipping, Receipt
from apps.commerce.order_links import order_link
from apps.core.problems import BACKGROUND_WORK_WHAT_TO_DO, DomainError
from apps.payments.providers.base import minor_to_major

logger = logging.getLogger("darkroom.commerce.receipts")


class ReceiptBusy(DomainError):
    """Another sender holds a live claim on this receipt; retry after it lapses."""

    status_code = 409
    slug = "receipt-busy"
    title = "Receipt is being sent"
    when_it_happens = (
        "One of Darkroom's background processes is sending this order's receipt e-mail right now, so "
        "another one that came to it stood back: the receipt is sent once."
    )
    what_to_do = BACKGROUND_WORK_WHAT_TO_DO


def _claim(*, checkout_id: uuid.UUID | str) -> Receipt | None:
    """Claim the receipt for sending, or None if it was sent. Raises ReceiptBusy."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        receipt = Receipt.objects.select_for_update().get(checkout_id=checkout_id)
        if receipt.status == Receipt.Status.SENT:
            return None
        if receipt.status == Receipt.Status.SENDING and receipt.claimed_until and receipt.claimed_until > now:
            raise ReceiptBusy(f"Receipt of {checkout_id} is claimed until {receipt.claimed_until.isoformat()}.")
        receipt.status = Receipt.Status.SENDING
        receipt.claimed_until = now + timedelta(seconds=settings.RECEIPT_CLAIM_SECONDS)
        receipt.attempts += 1
        receipt.save(update_fields=["status", "claimed_until", "attempts"])
        return receipt


def shopper_mail_send(*, to: str, subject: str, body: str, message_id: str) -> None:
    """Send one plain-text e-mail to a shopper through Django's mail backend, from
    RECEIPT_FROM_EMAIL, with a fixed Message-ID (a second copy of one message is then collapsed
    by mail clients). Call it outside any transaction; raises whatever the backend raises."""
    EmailMessage(
        subject=subject, body=body, from_email=settings.RECEIPT_FROM_EMAIL, to=[to], headers={"Message-ID": message_id}
    ).send(fail_silently=False)


def _body(checkout: Checkout) -> str:
    """The receipt's text: what was paid for; the order's link, with the download links' lifetime
    only when something was bought to download; and where the prints go, when there are any."""
    from apps.commerce.services.fulfilment import address_lines  # fulfilment sends through this module

    lines = list(
        CheckoutLine.objects.filter(checkout=checkout, state=CheckoutLine.State.CONFIRMED).order_by("position")
    )
    rows = [
        f"- {line.kind}{' ' + line.size if line.size else ''}"
        f"{' of photo ' + str(line.photo_id) if line.photo_id else ' (all photos of the event)'}"
        f" x {line.quantity}: {minor_to_major(line.amount_minor, line.currency)} {line.currency}"
        for line in lines
    ]
    studio = checkout.tenant.name
    link = order_link(studio_slug=checkout.tenant.slug, tenant_id=checkout.tenant_id, checkout_id=checkout.pk)
    link_hours = max(1, settings.DOWNLOAD_URL_MAX_AGE_SECONDS // 3600)
    downloads = any(line.kind != ProductKind.PRINT for line in lines)
    text = [
        f"Thank you for your order from {studio}.",
        "",
        f"Order {checkout.pk}",
        *rows,
        "",
        f"Total paid: {minor_to_major(checkout.amount_minor, checkout.currency)} {checkout.currency}",
        "",
        "Your order and its downloads, from any device:" if downloads else "Your order, from any device:",
        link,
    ]
    if downloads:
        lifetime = f"Each download link on that page works for {link_hours} hours; open the page again for fresh ones."
        text += ["", lifetime]
    shipping = CheckoutShipping.objects.filter(checkout=checkout).first()
    if shipping is not None and any(line.kind == ProductKind.PRINT for line in lines):
        text += [
            "",
            "Your prints are sent to:",
            *address_lines(shipping),
            "You get an e-mail with the tracking details once they are on their way.",
        ]
    return "\n".join(text)


def receipt_send(*, checkout_id: uuid.UUID | str) -> bool:
    """Send the receipt of a paid checkout once. Returns True if this call sent it.

    Runs outside any transaction (TransactionManagementError otherwise), in the checkout's
    tenant context. Raises ReceiptBusy while another sender's claim is live, and whatever the
    email backend raises (the claim is then given back, so a retry sends).
    """
    if connection.in_atomic_block:
        raise TransactionManagementError("mail must not be sent inside a transaction")
    receipt = _claim(checkout_id=checkout_id)
    if receipt is None:
        return False
    checkout = Checkout.objects.select_related("tenant").get(pk=checkout_id)  # the studio's name and slug
    try:
        shopper_mail_send(
            to=receipt.email,
            subject=f"Your receipt from {checkout.tenant.name} ({str(checkout.pk)[:8]})",
            body=_body(checkout),
            message_id=receipt.message_id,
        )
    except Exception as exc:
        with transaction.atomic(durable=True):
            Receipt.objects.filter(pk=receipt.pk, status=Receipt.Status.SENDING).update(
                status=Receipt.Status.PENDING, claimed_until=None, last_error=f"{type(exc).__name__}: {exc}"[:2000]
            )
        raise
    with transaction.atomic(durable=True):
        Receipt.objects.filter(pk=receipt.pk, status=Receipt.Status.SENDING).update(
            status=Receipt.Status.SENT, sent_at=timezone.now(), claimed_until=None, last_error=""
        )
    logger.info("receipt sent", extra={"checkout_id": str(checkout_id)})
    return True
