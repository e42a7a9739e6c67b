""" "Find my orders": a shopper asks for the links to their paid orders at a studio by e-mail.

`order_links_request` runs in the request's transaction (the shop form's `submit_once`): it
finds the studio's paid checkouts of that address and, if there are any, writes one
`orders.links_requested` outbox message naming them; nothing otherwise, and the page says the
same either way (no enumeration of who bought what). The message's consumer
(`commerce.send_order_links`, tasks/commerce.py) calls `order_links_send`, which sends one e-mail
listing each order's signed link (apps/commerce/order_links.py), outside any transaction and
through the receipts' mail path (`shopper_mail_send`).

Once per message, as for receipts but without a table of its own: the sender claims the message
with an inbox row (`<consumer>:claim`, its `processed_at` the claim's start) that lapses after
RECEIPT_CLAIM_SECONDS, sends, then records the inbox row of the consumer itself (sent). A
redelivery finds it sent, or a live claim (MailBusy, retried). A sender that dies between
sending and recording leaves a lapsing claim: the retry sends again with the same Message-ID,
which mail clients collapse, the same window receipts have.
"""

from __future__ import annotations

import logging
import uuid

from apps.commerce.models import Checkout
from apps.commerce.order_links import order_link
from apps.commerce.services.receipts import shopper_mail_send
from apps.core.mail import mail_message_id
from apps.outbox.mail_once import send_once
from apps.outbox.services import outbox_publish
from apps.payments.providers.base import minor_to_major
from apps.tenancy.models import Organization

logger = logging.getLogger("darkroom.commerce.order_links")

TOPIC_ORDER_LINKS_REQUESTED = "orders.links_requested"
ORDER_LINKS_CONSUMER = "commerce.send_order_links"
# The e-mail lists the newest orders only: a long list is no more useful, and stays bounded.
MAX_ORDER_LINKS = 20


def order_links_request(*, tenant_id: int, email: str) -> int:
    """Queue the e-mail of the links to `email`'s paid checkouts at the tenant (case-insensitive,
    newest first, at most MAX_ORDER_LINKS); returns how many it lists (0: nothing written).

    Joins the caller's transaction (the outbox message commits with it), in the tenant's
    context. The e-mail goes to the address the newest of those checkouts was placed with.
    Raises OutboxNotInTransaction outside a transaction.
    """
    rows = list(
        Checkout.objects.filter(tenant_id=tenant_id, email__iexact=email.strip(), status=Checkout.Status.PAID)
        .order_by("-created_at", "-id")
        .values_list("pk", "email")[:MAX_ORDER_LINKS]
    )
    if not rows:
        return 0
    outbox_publish(
        topic=TOPIC_ORDER_LINKS_REQUESTED,
        tenant_id=tenant_id,
        aggregate_type="checkout",
        aggregate_id=rows[0][0],
        payload={"tenant_id": tenant_id, "to": rows[0][1], "checkout_ids": [str(pk) for pk, _ in rows]},
    )
    return len(rows)


def _body(*, studio: Organization, to: str, checkouts: list[Checkout]) -> str:
    rows: list[str] = []
    for checkout in checkouts:
        link = order_link(studio_slug=studio.slug, tenant_id=studio.pk, checkout_id=checkout.pk)
        amount = f"{minor_to_major(checkout.amount_minor, checkout.currency)} {checkout.currency}"
        rows += [f"Order {str(checkout.pk)[:8]} of {checkout.created_at.date().isoformat()}, {amount}:", link, ""]
    return "\n".join(
        [
            f"You asked for the links to your orders at {studio.name} ({to}).",
            "Each link opens the order, with its status and fresh download links, on any device.",
            "",
            *rows,
            "If you did not ask for them, you can ignore this e-mail: the links were sent only to this address.",
        ]
    )


def order_links_send(*, message_id: uuid.UUID | str, tenant_id: int, to: str, checkout_ids: list[str]) -> bool:
    """Send the e-mail an `orders.links_requested` message asks for, once. Returns True if this
    call sent it.

    Runs outside any transaction (TransactionManagementError otherwise), in the tenant's context.
    Raises MailBusy while another sender's claim is live, and whatever the mail backend
    raises (the claim is then given back, so a retry sends).
    """
    message_uuid = uuid.UUID(str(message_id))
    sent: list[int] = []

    def send() -> None:
        studio = Organization.objects.get(pk=tenant_id)
        checkouts = list(
            Checkout.objects.filter(tenant_id=tenant_id, pk__in=checkout_ids).order_by("-created_at", "-id")
        )
        shopper_mail_send(
            to=to,
            subject=f"Your orders at {studio.name}",
            body=_body(studio=studio, to=to, checkouts=checkouts),
            message_id=mail_message_id(f"order-links-{message_uuid}"),
        )
        sent.append(len(checkouts))

    if not send_once(consumer=ORDER_LINKS_CONSUMER, message_id=message_uuid, send=send):
        return False
    logger.info("order links sent", extra={"message_id": str(message_uuid), "orders": sent[0]})
    return True
