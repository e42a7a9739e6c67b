"""The shopper's "your payment was refunded" e-mail.

When a payment's transaction turns `refunded` (the provider's refund webhook: a studio refund, a
late or mismatched payment given back, a payment for an order whose photo the studio withdrew
before it was paid, or a refund made at the provider), the processing
transaction writes a `checkout.refunded` outbox message (`payment.py`, `_on_refunded`). Its
consumer (`tasks.commerce.send_refunded_email`, notifications queue) sends the e-mail once per
message outside any transaction (`send_once` on the outbox's inbox rows): how much went back, why,
and the signed link to the order, whose page shows it refunded.
"""

from __future__ import annotations

import logging
import uuid

from apps.commerce.errors import CheckoutNotFound
from apps.commerce.models import Checkout, Refund, Transaction
from apps.commerce.order_links import order_link
from apps.commerce.services.receipts import shopper_mail_send
from apps.core.mail import mail_message_id
from apps.outbox.mail_once import send_once
from apps.payments.providers.base import money_text

logger = logging.getLogger("darkroom.commerce.refund_mail")

TOPIC_CHECKOUT_REFUNDED = "checkout.refunded"
REFUNDED_MAIL_CONSUMER = "commerce.send_refunded_email"

_WHY: dict[str, str] = {
    Refund.Reason.STUDIO: "{studio} refunded your order.",
    Refund.Reason.LATE_PAYMENT: "Your payment arrived after the order had expired, so it was given back.",
    Refund.Reason.NOT_FULFILLABLE: "There was nothing left to deliver for your order, so the payment was given back.",
    Refund.Reason.AMOUNT_MISMATCH: "The amount charged did not match your order, so the payment was given back.",
    Refund.Reason.PHOTO_WITHDRAWN: (
        "{studio} withdrew a photo in your order before it was paid, so the order was closed and the payment "
        "was given back."
    ),
}


def _body(*, checkout: Checkout, txn: Transaction, refund: Refund | None) -> str:
    amount = money_text(refund.amount_minor, refund.currency) if refund else money_text(txn.amount_minor, txn.currency)
    why = _WHY.get(refund.reason, "") if refund else ""
    link = order_link(studio_slug=checkout.tenant.slug, tenant_id=checkout.tenant_id, checkout_id=checkout.pk)
    return "\n".join(
        [
            f"{amount} of your payment to {checkout.tenant.name} has been refunded.",
            *([why.format(studio=checkout.tenant.name)] if why else []),
            "",
            f"Order {checkout.pk}",
            "The money goes back the way you paid; your bank may take a few days to show it.",
            "Downloads of a refunded order no longer work.",
            "",
            "Your order, from any device:",
            link,
        ]
    )


def refunded_mail_send(*, message_id: uuid.UUID | str, checkout_id: uuid.UUID | str) -> bool:
    """Send the e-mail a `checkout.refunded` message asks for, once; True if this call sent it.

    Runs outside any transaction (TransactionManagementError otherwise), in the checkout's tenant
    context. Raises MailBusy while another sender's claim is live, CheckoutNotFound, and
    whatever the mail backend raises (the claim is then given back, so a retry sends).
    """
    message_uuid = uuid.UUID(str(message_id))
    checkout = Checkout.objects.select_related("tenant", "transaction").filter(pk=checkout_id).first()
    txn = getattr(checkout, "transaction", None) if checkout is not None else None
    if checkout is None or txn is None:
        raise CheckoutNotFound(f"Checkout {checkout_id} (with a payment) does not exist.")
    refund = Refund.objects.filter(transaction=txn).exclude(status=Refund.Status.FAILED).order_by("-pk").first()

    def send() -> None:
        shopper_mail_send(
            to=checkout.email,
            subject=f"Your payment to {checkout.tenant.name} was refunded ({str(checkout.pk)[:8]})",
            body=_body(checkout=checkout, txn=txn, refund=refund),
            message_id=mail_message_id(f"refunded-{message_uuid}"),
        )

    if not send_once(consumer=REFUNDED_MAIL_CONSUMER, message_id=message_uuid, send=send):
        return False
    logger.info("refund e-mail sent", extra={"message_id": str(message_uuid), "checkout_id": str(checkout.pk)})
    return True
