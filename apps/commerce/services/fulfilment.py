"""Fulfilment of prints: the studio marks a paid checkout shipped; the shopper hears of it once.

`checkout_mark_shipped` runs in the caller's transaction (the studio form's `submit_once`): under
the checkout's row lock (lock order: checkout row, then its shipping row) it moves the checkout's
`CheckoutShipping` from `unfulfilled` to `shipped` with the carrier and tracking reference,
appends an audit row `checkout.shipped`, and writes a `checkout.shipped` outbox message, all in
that one transaction. Only a paid checkout with at least one confirmed print line ships, and only
once (409 otherwise).

The message's consumer (`commerce.send_shipped_email`, tasks/commerce.py) calls
`shipped_mail_send`, which e-mails the shopper the carrier and tracking reference outside any
transaction, once per message, exactly like the "find my orders" e-mail
(`apps/commerce/services/order_links.py`): the sender claims the message with an inbox row
(`<consumer>:claim`, lapsing after RECEIPT_CLAIM_SECONDS), sends through the receipts' mail path
with a Message-ID fixed by the message, then records the consumer's own inbox row (sent). A
redelivery finds it sent, or a live claim (MailBusy, retried). A sender that dies between
sending and recording can send a second copy with the same Message-ID, which mail clients
collapse. One checkout ships once, so it has one such message.
"""

from __future__ import annotations

import logging
import uuid

from django.db import transaction
from django.utils import timezone

from apps.catalog.models import ProductKind
from apps.catalog.products import Actor, stock_restock
from apps.commerce.countries import COUNTRY_NAMES
from apps.commerce.errors import AlreadyShipped, CheckoutNotFound, CheckoutNotShippable
from apps.commerce.models import (
    CARRIER_MAX_LENGTH,
    TRACKING_REFERENCE_MAX_LENGTH,
    Checkout,
    CheckoutLine,
    CheckoutShipping,
    Refund,
)
from apps.commerce.order_links import order_link
from apps.commerce.services.payment import other_refund_under_way
from apps.commerce.services.receipts import shopper_mail_send
from apps.core.mail import mail_message_id
from apps.core.problems import DomainError, InvalidInput
from apps.core.text import text_field_problem
from apps.outbox.mail_once import send_once
from apps.outbox.services import outbox_publish
from apps.tenancy.models import User
from apps.tenancy.services import audit_record

logger = logging.getLogger("darkroom.commerce.fulfilment")

TOPIC_CHECKOUT_SHIPPED = "checkout.shipped"
SHIPPED_MAIL_CONSUMER = "commerce.send_shipped_email"


class InvalidShipment(InvalidInput):
    """A carrier or tracking reference that cannot be recorded; `errors` names the field."""

    slug = "invalid-shipment"
    title = "Invalid shipment details"
    what_to_do = (
        "Give the carrier (required) and, if there is one, the tracking reference, each on one line and "
        "within the length `errors` gives, and mark the order shipped again. Nothing was written."
    )


def _clean(value: str, *, field: str, max_length: int, required: bool) -> str:
    value = value.strip()
    problem = text_field_problem(value, required=required, max_length=max_length)
    if problem:
        raise InvalidShipment(f"{field}: {problem}", extra={"errors": {field: [problem]}})
    return value


@transaction.atomic
def checkout_mark_shipped(
    *,
    tenant_id: int,
    checkout_id: uuid.UUID | str,
    carrier: str,
    tracking_reference: str = "",
    actor: User | None,
) -> CheckoutShipping:
    """Record that the prints of a paid checkout were sent: `shipped`, `shipped_at` now, the
    carrier (required) and tracking reference (optional), trimmed.

    Joins the caller's transaction (the studio form's `submit_once`), in the tenant's context.
    Locks the checkout row, then its shipping row. Writes the audit row `checkout.shipped`
    (actor `actor`) and the `checkout.shipped` outbox message (the shopper's e-mail, sent after
    commit by its consumer) in that transaction. Raises InvalidShipment (nothing read),
    CheckoutNotFound (also another tenant's checkout), AlreadyShipped, and CheckoutNotShippable
    (not paid, no shipping row: no prints, or no print left to ship: every one sold out or in a
    refund under way or landed, `CheckoutLine.TO_SHIP`, or a refund of the whole order under way,
    whose lines name no refund: `other_refund_under_way`).
    """
    carrier = _clean(carrier, field="carrier", max_length=CARRIER_MAX_LENGTH, required=True)
    tracking_reference = _clean(
        tracking_reference, field="tracking_reference", max_length=TRACKING_REFERENCE_MAX_LENGTH, required=False
    )
    checkout = Checkout.objects.select_for_update().filter(tenant_id=tenant_id, pk=checkout_id).first()
    if checkout is None:
        raise CheckoutNotFound(f"Checkout {checkout_id} does not exist.")
    shipping = CheckoutShipping.objects.select_for_update().filter(tenant_id=tenant_id, checkout_id=checkout.pk).first()
    if shipping is None:
        raise CheckoutNotShippable("This order has no prints: there is nothing to ship.")
    if shipping.fulfilment_status == CheckoutShipping.FulfilmentStatus.SHIPPED:
        assert shipping.shipped_at is not None  # check constraint
        raise AlreadyShipped(
            f"This order was marked shipped on {shipping.shipped_at:%Y-%m-%d %H:%M} UTC ({shipping.carrier})."
        )
    if checkout.status != Checkout.Status.PAID:
        raise CheckoutNotShippable(f"Only a paid order ships; this one is {checkout.get_status_display().lower()}.")
    if other_refund_under_way(Refund.objects.filter(tenant_id=tenant_id, transaction__checkout_id=checkout.pk)):
        raise CheckoutNotShippable(
            "A refund of the whole order is under way: its prints are not to be sent. Once the provider confirms it, "
            "the order reads refunded; if the provider refuses it, the order can be shipped again."
        )
    has_prints = CheckoutLine.objects.filter(
        CheckoutLine.TO_SHIP, tenant_id=tenant_id, checkout_id=checkout.pk
    ).exists()
    if not has_prints:
        raise CheckoutNotShippable(
            "No print of this order is left to ship: every one sold out or was refunded (or is being refunded)."
        )
    shipping.fulfilment_status = CheckoutShipping.FulfilmentStatus.SHIPPED
    shipping.shipped_at = timezone.now()
    shipping.carrier = carrier
    shipping.tracking_reference = tracking_reference
    shipping.save(update_fields=["fulfilment_status", "shipped_at", "carrier", "tracking_reference"])
    audit_record(
        action="checkout.shipped",
        tenant_id=tenant_id,
        actor_user=actor,
        target_type="checkout",
        target_id=str(checkout.pk),
        data={"carrier": carrier, "tracking_reference": tracking_reference},
    )
    outbox_publish(
        topic=TOPIC_CHECKOUT_SHIPPED,
        tenant_id=tenant_id,
        aggregate_type="checkout",
        aggregate_id=checkout.pk,
        payload={"checkout_id": str(checkout.pk)},
    )
    return shipping


# --- prints of a refunded order back in stock --------------------------------------------------


def refunded_prints_restock(*, tenant_id: int, checkout_id: uuid.UUID | str, line_ids: list[int] | None = None) -> int:
    """Put the confirmed print lines of a refunded order back in stock (the consumer of
    `refund.restock_requested`, in its once-only inbox transaction, tenant context), unless the
    prints were shipped meanwhile: the lines `line_ids` names (a studio refund of some items),
    else those of the whole order that no item refund names (those restock with their own
    refund). Each line adds its quantity to its print's stock and initial quantity
    (`stock_restock`, audited as the refund); a line past the stock ceiling is skipped and
    logged, never retried. Returns the units put back. Locks the shipping row."""
    shipping = CheckoutShipping.objects.select_for_update().filter(tenant_id=tenant_id, checkout_id=checkout_id).first()
    if shipping is None or shipping.fulfilment_status != CheckoutShipping.FulfilmentStatus.UNFULFILLED:
        logger.warning("refunded prints not restocked: shipped or no prints", extra={"checkout_id": str(checkout_id)})
        return 0
    actor = Actor(label=f"refund of checkout {checkout_id}")
    units = 0
    prints = CheckoutLine.objects.filter(
        tenant_id=tenant_id, checkout_id=checkout_id, kind=ProductKind.PRINT, state=CheckoutLine.State.CONFIRMED
    ).order_by("product_id")
    prints = prints.filter(pk__in=line_ids) if line_ids is not None else prints.filter(refund__isnull=True)
    for line in prints:
        try:
            with transaction.atomic():
                stock_restock(tenant_id=tenant_id, product_id=line.product_id, add_quantity=line.quantity, actor=actor)
        except DomainError as exc:
            logger.error(
                "refunded print not restocked",
                extra={"checkout_id": str(checkout_id), "product_id": line.product_id, "error": str(exc)},
            )
        else:
            units += line.quantity
    return units


# --- the shopper's e-mail ----------------------------------------------------------------------


def address_lines(shipping: CheckoutShipping) -> list[str]:
    """The address as it goes on a parcel, one line each (empty optional parts left out)."""
    city = " ".join(part for part in (shipping.postal_code, shipping.city) if part)
    return [
        line
        for line in (
            shipping.name,
            shipping.line1,
            shipping.line2,
            city,
            shipping.region,
            COUNTRY_NAMES.get(shipping.country, shipping.country),
        )
        if line
    ]


def _body(*, checkout: Checkout, shipping: CheckoutShipping) -> str:
    prints = CheckoutLine.objects.filter(
        checkout=checkout, kind=ProductKind.PRINT, state=CheckoutLine.State.CONFIRMED
    ).order_by("position")
    rows = [f"- print {line.size} of photo {line.photo_id} x {line.quantity}" for line in prints]
    link = order_link(studio_slug=checkout.tenant.slug, tenant_id=checkout.tenant_id, checkout_id=checkout.pk)
    tracking = (
        [f"Tracking reference: {shipping.tracking_reference}"]
        if shipping.tracking_reference
        else ["The carrier gave no tracking reference for this parcel."]
    )
    return "\n".join(
        [
            f"Your prints from {checkout.tenant.name} are on their way.",
            "",
            f"Order {checkout.pk}",
            *rows,
            "",
            f"Carrier: {shipping.carrier}",
            *tracking,
            "",
            "Shipped to:",
            *(f"  {line}" for line in address_lines(shipping)),
            "",
            "Your order, from any device:",
            link,
        ]
    )


def shipped_mail_send(*, message_id: uuid.UUID | str, checkout_id: uuid.UUID | str) -> bool:
    """Send the "your prints are on their way" e-mail a `checkout.shipped` message asks for, once.
    Returns True if this call sent it.

    Runs outside any transaction (TransactionManagementError otherwise), in the checkout's tenant
    context. Raises MailBusy while another sender's claim is live, CheckoutNotFound, and
    whatever the mail backend raises (the claim is then given back, so a retry sends).
    """
    message_uuid = uuid.UUID(str(message_id))
    checkout = Checkout.objects.select_related("tenant", "shipping").filter(pk=checkout_id).first()
    shipping = getattr(checkout, "shipping", None) if checkout is not None else None
    if checkout is None or shipping is None:
        raise CheckoutNotFound(f"Checkout {checkout_id} (with shipping) does not exist.")

    def send() -> None:
        shopper_mail_send(
            to=checkout.email,
            subject=f"Your prints from {checkout.tenant.name} have shipped ({str(checkout.pk)[:8]})",
            body=_body(checkout=checkout, shipping=shipping),
            message_id=mail_message_id(f"shipped-{message_uuid}"),
        )

    if not send_once(consumer=SHIPPED_MAIL_CONSUMER, message_id=message_uuid, send=send):
        return False
    logger.info("shipped e-mail sent", extra={"message_id": str(message_uuid), "checkout_id": str(checkout.pk)})
    return True
