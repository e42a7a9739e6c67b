"""The shopper's "your payment was refunded" e-mail.

When a payment's transaction turns `refunded` (the provider's refund webhook: a studio refund, a
late or mismatched payment given back, a payment for an order whose photo the studio withdrew
before it was paid, or a refund made at the provider), the processing
transaction writes a `checkout.refunded` outbox message (`payment.py`, `_on_refunded`). Its
consumer (`tasks.commerce.send_refunded_email`, notifications queue) sends the e-mail once per
message outside any transaction (`send_once` on the outbox's inbox rows): how much went back, why,
what became of the refunded items (a download no longer works; a print is not sent, or had been
shipped already: `refunded_items_said`, which the order page says too), and the signed link to
the order, whose page shows it refunded. A payment that did not pay its
order (never fulfilled: `Transaction.fulfilled_at` is null) is told apart: what was charged, in the
currency it was charged in, why it goes back, and that nothing was bought (`_not_bought_lines`).

A second charge of a payment already paid (the shopper was charged twice: `duplicate_charge`) is
given back on its own; once its refund lands, the `checkout.refunded` message naming it sends its
own e-mail (`_second_charge_body`): they were charged twice, the second charge went back in full,
and what became of the order (paid by the first payment, theirs as before; or what its own
e-mail said). Nothing of the order's refunds is told there, nor that refund in theirs.

A refund can fail at the provider after it landed (the shopper's card was closed: the money went
back to the studio). The failure's transaction writes a `refund.failed_after_landing` message
(`payment.py`, `refund_apply_provider_failure`); its consumer (`tasks.commerce.
send_refund_failed_email`, notifications queue) tells the shopper, once per message and outside
any transaction like the e-mail above, that this refund did not reach them and that the studio
will pay it back another way; nothing once an operator recorded it paid back (`settled`). A
second charge's refund that failed so is told as that charge's, apart from the order, and not
once it came back since (asked again, or refunded in the provider's dashboard).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime

from django.db.models import Q

from apps.catalog.models import ProductKind
from apps.commerce.errors import CheckoutNotFound
from apps.commerce.models import Checkout, CheckoutLine, CheckoutShipping, Refund, Transaction
from apps.commerce.order_links import order_link
from apps.commerce.services.receipts import shopper_mail_send
from apps.core.mail import mail_message_id
from apps.outbox.mail_once import send_once
from apps.payments.providers.base import money_text

logger = logging.getLogger("darkroom.commerce.refund_mail")

TOPIC_CHECKOUT_REFUNDED = "checkout.refunded"
REFUNDED_MAIL_CONSUMER = "commerce.send_refunded_email"
REFUND_FAILED_MAIL_CONSUMER = "commerce.send_refund_failed_email"

# Why a refund of a fulfilled order's payment went back.
_WHY: dict[str, str] = {
    Refund.Reason.STUDIO: "{studio} refunded your order.",
    Refund.Reason.STUDIO_PARTIAL: "{studio} refunded these items of your order:",
    # Made at the provider: a studio's refund in its dashboard, or the provider's own reversal (PayPal).
    Refund.Reason.PROVIDER_PARTIAL: "Part of your payment was refunded through the payment provider.",
}

# The refunds of a payment Darkroom does not keep because it did not pay its order (`payment.py`,
# `_on_paid`): at most one per payment, of all that was charged, in the currency it was charged in.
_NOT_KEPT_REASONS = (
    Refund.Reason.LATE_PAYMENT,
    Refund.Reason.NOT_FULFILLABLE,
    Refund.Reason.PHOTO_WITHDRAWN,
    Refund.Reason.AMOUNT_MISMATCH,
)
# Why such a payment goes back; a charge of another amount or currency says what was charged
# (`_why_not_bought`).
_NOT_KEPT_WHY: dict[str, str] = {
    Refund.Reason.LATE_PAYMENT: "Your payment arrived after your order had expired, so it could not pay for it.",
    Refund.Reason.NOT_FULFILLABLE: (
        "Your order had already closed unpaid when your payment arrived, so it could not pay for it."
    ),
    Refund.Reason.PHOTO_WITHDRAWN: (
        "{studio} withdrew a photo in your order before it was paid, so the order was closed and your payment "
        "could not pay for it."
    ),
}
_NOTHING_BOUGHT = "Nothing was bought: your order was not completed, and nothing of it will be delivered."


_ITEM_KINDS = {"download": "download of photo {photo}", "print": "print {size} of photo {photo} x {quantity}"}


def _item(line: CheckoutLine) -> str:
    if line.kind == ProductKind.BULK:
        return "- all your photos of the event"
    text = _ITEM_KINDS.get(line.kind, line.kind).format(photo=line.photo_id, size=line.size, quantity=line.quantity)
    return f"- {text}"


def _rest_of_items_refunded(
    *, checkout: Checkout, txn: Transaction, back_at: datetime | None = None
) -> tuple[int, str, list[CheckoutLine]] | None:
    """(amount, why, lines) of the e-mail saying the whole payment is back for an order refunded
    in parts (the studio's item refunds, parts refunded at the provider): what was not told
    before (the partial refunds that landed before the payment turned refunded each had their
    own e-mail), and the items it covers, in the currency the payment was charged in
    (`charged_currency`). None for an order without partial refunds."""
    partials = list(
        Refund.objects.filter(
            Q(status__in=Refund.LIVE_STATUSES) | Q(landed_at__isnull=False),
            transaction=txn,
            reason__in=[Refund.Reason.STUDIO_PARTIAL, Refund.Reason.PROVIDER_PARTIAL],
        )
    )
    if not partials:
        return None
    from apps.commerce.services.payment import whole_refund_minor  # (payment.py imports this module)

    # When the whole payment came back: an operator's settle of its last part (`back_at`, from
    # the message), else the provider's event.
    back_at = back_at or txn.refunded_at
    told = {
        r.pk
        for r in partials
        if r.landed_at is not None
        and back_at is not None
        and r.landed_at < back_at
        # (one that failed after it landed was told not to have reached them, unless it was
        # paid back outside the provider, and said so, before)
        and (not r.failed_after_landing or (r.settled_outside_at is not None and r.settled_outside_at < back_at))
    }
    # A refund still owed (it failed at the provider after it landed; the shopper was told) did
    # not come back with the rest.
    owed = {r.pk for r in partials if r.still_owed}
    amount = whole_refund_minor(txn=txn) - sum(r.amount_minor for r in partials if r.pk in told or r.pk in owed)
    lines = _confirmed_lines(checkout)
    rest = [line for line in lines if line.refund_id not in told and line.refund_id not in owed]
    why = "{studio} refunded the rest of your order:" if told else "{studio} refunded your order:"
    return amount, why, rest


def _confirmed_lines(checkout: Checkout) -> list[CheckoutLine]:
    """The order's charged items, with their refunds (`refunded_print_shipped` reads them)."""
    lines = CheckoutLine.objects.filter(checkout_id=checkout.pk, state=CheckoutLine.State.CONFIRMED)
    return list(lines.select_related("refund").order_by("position"))


def refunded_print_shipped(line: CheckoutLine, shipping: CheckoutShipping | None) -> bool:
    """Whether a refunded print had been shipped: its order was marked shipped, and not while
    the print was in a refund of its own under way (such a print is not among what ships,
    `CheckoutLine.TO_SHIP`), that is before that refund was asked. A print refunded with the
    whole order (its line names no refund) ships with the order until the order is refunded.
    Reads `line.refund`: select it with the line."""
    if shipping is None or shipping.shipped_at is None:
        return False
    own = line.refund if line.refund_id is not None else None
    return own is None or own.status not in Refund.LIVE_STATUSES or shipping.shipped_at < own.created_at


def refunded_items_said(lines: Iterable[CheckoutLine], *, shipping: CheckoutShipping | None, then: str) -> str:
    """What became of the refunded items `lines`, as the shopper is told: a download or a bulk
    purchase no longer works (its entitlement is revoked when the refund lands); a print not
    shipped yet will not be sent, one shipped before the refund was asked had been shipped
    already (`refunded_print_shipped`; nothing is asked back). "The refunded download no longer
    works and the refunded prints will not be sent", then `then` ("; the rest of ..." or ".");
    "" for no items."""
    downloads = 0
    to_send = 0
    sent = 0
    for line in lines:
        if line.kind != ProductKind.PRINT:
            downloads += 1
        elif refunded_print_shipped(line, shipping):
            sent += line.quantity
        else:
            to_send += line.quantity
    clauses = []
    if downloads:
        clauses.append(
            "the refunded download no longer works" if downloads == 1 else "the refunded downloads no longer work"
        )
    if to_send:
        clauses.append(f"the refunded print{'s' if to_send > 1 else ''} will not be sent")
    if sent:
        clauses.append(f"the refunded print{'s' if sent > 1 else ''} had already been shipped")
    if not clauses:
        return ""
    said = " and ".join(clauses) + then
    return said[0].upper() + said[1:]


def _after_refund(*, checkout: Checkout, refund: Refund | None, whole: bool, lines: list[CheckoutLine] | None) -> str:
    """What the e-mail says became of the refunded items (`lines`; None: the whole order's
    charged items), and for some items that the rest of the order stands."""
    if not whole and refund is not None and refund.reason == Refund.Reason.PROVIDER_PARTIAL:
        return "The rest of your order is yours as before."  # (no item is named: none is taken back)
    shipping = CheckoutShipping.objects.filter(checkout_id=checkout.pk).first()
    refunded = _confirmed_lines(checkout) if lines is None else lines
    return refunded_items_said(
        refunded, shipping=shipping, then="." if whole else "; the rest of your order is yours as before."
    )


def _why_not_bought(*, txn: Transaction, studio: str, not_kept: Refund | None) -> str:
    """Why a payment that did not pay its order goes back: the reason of Darkroom's refund of it
    (`not_kept`, whatever became of that refund), else a refund made at the provider before the
    payment was recorded (nothing was granted: the refunded fact came first)."""
    if not_kept is None:
        return "It was refunded through the payment provider before your order was completed."
    if not_kept.reason in _NOT_KEPT_WHY:
        return _NOT_KEPT_WHY[not_kept.reason].format(studio=studio)
    charged = money_text(not_kept.amount_minor, not_kept.currency)
    ordered = money_text(txn.amount_minor, txn.currency)
    if not_kept.currency != txn.currency:
        return (
            f"You were charged {charged}, but your order came to {ordered}: a charge in another currency cannot "
            f"pay for it, so all of it goes back, in {not_kept.currency}."
        )
    return (
        f"You were charged {charged}, but your order came to {ordered}: a charge of another amount cannot pay "
        "for it, so all of it goes back."
    )


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _not_bought_lines(*, checkout: Checkout, txn: Transaction, refund: Refund | None, whole: bool) -> list[str]:
    """What the e-mail says of a payment that did not pay its order (`txn` never fulfilled): how
    much of what was charged came back, in the currency it was charged in (`charged_currency`),
    why, and that nothing was bought. `whole`: all of it is back; no part of it had its own
    e-mail on landing (`transaction_apply_refund` tells only a paid order's), so this one names the
    whole charge and the parts it came back in through the provider. Else `refund` gave back part
    of it (a part refunded at the provider, then paid back outside it by an operator)."""
    from apps.commerce.services.payment import charged_currency, gave_back, whole_refund_minor  # (it imports this)

    studio = checkout.tenant.name
    currency = charged_currency(txn=txn)
    charged_minor = whole_refund_minor(txn=txn)
    charged = money_text(charged_minor, currency)
    refunds = list(Refund.objects.filter(transaction=txn).order_by("pk"))
    not_kept = next((r for r in refunds if r.reason in _NOT_KEPT_REASONS), None)
    if whole or refund is None:
        said = f"Your payment of {charged} to {studio} has been refunded in full."
    else:
        part = money_text(refund.amount_minor, refund.currency)
        said = f"{part} of your payment of {charged} to {studio} has been refunded."
    lines = [said, _why_not_bought(txn=txn, studio=studio, not_kept=not_kept), _NOTHING_BOUGHT]
    # (a part paid back outside the provider was told with its own e-mail when it was settled)
    parts = [
        r
        for r in refunds
        if r.reason == Refund.Reason.PROVIDER_PARTIAL and gave_back(r) and r.status != Refund.Status.SETTLED
    ]
    if not whole or not parts:
        return lines
    amounts = _listed([money_text(r.amount_minor, r.currency) for r in parts])
    back_in_parts = sum(r.amount_minor for r in parts)
    if back_in_parts >= charged_minor:
        lines.append(f"It came back in parts through the payment provider: {amounts}.")
    else:
        rest = money_text(charged_minor - back_in_parts, currency)
        some = "Parts of it" if len(parts) > 1 else "Part of it"
        lines.append(f"{some}, {amounts}, came back earlier through the payment provider; the rest, {rest}, now.")
    return lines


def _body(
    *,
    checkout: Checkout,
    txn: Transaction,
    refund: Refund | None,
    whole: bool,
    paid_outside: bool,
    back_at: datetime | None = None,
) -> str:
    """The e-mail's text. `whole`: the whole payment is back (for an order refunded item by item,
    what the earlier e-mails did not tell: `_rest_of_items_refunded`); else `refund` gave back
    some items. `paid_outside`: the studio paid it back outside the provider (a transfer, say),
    not to the card or account the shopper paid with. Amounts are in the currency the payment was
    charged in (`charged_currency`), which is not the checkout's after a charge in another one:
    without a refund to name, the whole payment is what was charged (`whole_refund_minor`). A
    payment that never fulfilled its order is told as one that bought nothing
    (`_not_bought_lines`): no items, no downloads taken back, nothing "as before"."""
    link = order_link(studio_slug=checkout.tenant.slug, tenant_id=checkout.tenant_id, checkout_id=checkout.pk)
    fulfilled = txn.fulfilled_at is not None
    if fulfilled:
        told, refunded = _refund_lines(checkout=checkout, txn=txn, refund=refund, whole=whole, back_at=back_at)
        said = _after_refund(checkout=checkout, refund=refund, whole=whole, lines=refunded)
        after = [said] if said else []
    else:
        told, after = _not_bought_lines(checkout=checkout, txn=txn, refund=refund, whole=whole), []
    return "\n".join(
        [
            *told,
            "",
            f"Order {checkout.pk}",
            f"{checkout.tenant.name} paid this back to you directly, not through the payment you made."
            if paid_outside
            else "The money goes back the way you paid; your bank may take a few days to show it.",
            *after,
            "",
            "Your order, from any device:",
            link,
        ]
    )


def _refund_lines(
    *, checkout: Checkout, txn: Transaction, refund: Refund | None, whole: bool, back_at: datetime | None
) -> tuple[list[str], list[CheckoutLine] | None]:
    """What the e-mail says of a refund of a fulfilled order's payment: how much, why, and which
    items (see `_body`); and those items' lines (None: the whole order's)."""
    from apps.commerce.services.payment import charged_currency, whole_refund_minor  # (it imports this module)

    currency = charged_currency(txn=txn)
    amount = (
        money_text(refund.amount_minor, refund.currency)
        if refund
        else money_text(whole_refund_minor(txn=txn), currency)
    )
    why = _WHY.get(refund.reason, "") if refund else ""
    lines = (
        list(refund.lines.select_related("refund").order_by("position"))
        if refund is not None and refund.reason == Refund.Reason.STUDIO_PARTIAL
        else None
    )
    rest = _rest_of_items_refunded(checkout=checkout, txn=txn, back_at=back_at) if whole else None
    if rest is not None:
        amount, why, lines = money_text(rest[0], currency), rest[1], rest[2]
    told = [
        f"{amount} of your payment to {checkout.tenant.name} has been refunded.",
        *([why.format(studio=checkout.tenant.name)] if why else []),
        *(_item(line) for line in lines or []),
    ]
    return told, lines


def refunded_mail_send(
    *,
    message_id: uuid.UUID | str,
    checkout_id: uuid.UUID | str,
    refund_id: int | None = None,
    back_at: datetime | None = None,
) -> bool:
    """Send the e-mail a `checkout.refunded` message asks for, once; True if this call sent it:
    about the studio's refund of some items when the message names `refund_id`, else (or when
    it names a refund of the whole order) about the whole payment (the latest refund asked for
    says how much and why; never a second charge's); about a second charge given back when it
    names that refund (`_second_charge_body`). Paid back outside the provider (the named refund
    is `settled`, or the whole payment is back since `back_at`, an operator's settle), it says so.

    Runs outside any transaction (TransactionManagementError otherwise), in the checkout's tenant
    context. Raises MailBusy while another sender's claim is live, CheckoutNotFound, and
    whatever the mail backend raises (the claim is then given back, so a retry sends).
    """
    message_uuid = uuid.UUID(str(message_id))
    checkout = Checkout.objects.select_related("tenant", "transaction").filter(pk=checkout_id).first()
    txn = getattr(checkout, "transaction", None) if checkout is not None else None
    if checkout is None or txn is None:
        raise CheckoutNotFound(f"Checkout {checkout_id} (with a payment) does not exist.")
    refunds = Refund.objects.filter(transaction=txn)
    if refund_id is not None:
        refund = refunds.filter(pk=refund_id).first()
    else:
        refund = refunds.exclude(Refund.SECOND_CHARGE).filter(status__in=Refund.LIVE_STATUSES).order_by("-pk").first()
    whole = refund_id is None or (refund is not None and refund.reason not in Refund.PARTIAL_REASONS)
    second = refund_id is not None and refund is not None and refund.reason == Refund.Reason.DUPLICATE_CHARGE

    def send() -> None:
        if second:
            assert refund is not None
            shopper_mail_send(
                to=checkout.email,
                subject=(
                    f"You were charged twice by {checkout.tenant.name}: the second charge was refunded "
                    f"({str(checkout.pk)[:8]})"
                ),
                body=_second_charge_body(
                    checkout=checkout, txn=txn, refund=refund, paid_outside=refund.status == Refund.Status.SETTLED
                ),
                message_id=mail_message_id(f"refunded-{message_uuid}"),
            )
            return
        shopper_mail_send(
            to=checkout.email,
            subject=(
                f"{'Your' if whole else 'Part of your'} payment to {checkout.tenant.name} was refunded "
                f"({str(checkout.pk)[:8]})"
            ),
            body=_body(
                checkout=checkout,
                txn=txn,
                refund=refund,
                whole=whole,
                paid_outside=back_at is not None
                or (refund_id is not None and refund is not None and refund.status == Refund.Status.SETTLED),
                back_at=back_at,
            ),
            message_id=mail_message_id(f"refunded-{message_uuid}"),
        )

    if not send_once(consumer=REFUNDED_MAIL_CONSUMER, message_id=message_uuid, send=send):
        return False
    logger.info("refund e-mail sent", extra={"message_id": str(message_uuid), "checkout_id": str(checkout.pk)})
    return True


def _second_charge_body(*, checkout: Checkout, txn: Transaction, refund: Refund, paid_outside: bool) -> str:
    """The e-mail about a second charge given back (`duplicate_charge`): in plain words, that the
    shopper was charged twice and the second charge, all of it, went back; and the order's state,
    which that refund did not change."""
    studio = checkout.tenant.name
    link = order_link(studio_slug=checkout.tenant.slug, tenant_id=checkout.tenant_id, checkout_id=checkout.pk)
    charge = money_text(refund.amount_minor, refund.currency)
    if checkout.status == Checkout.Status.PAID and txn.fulfilled_at is not None:
        order_said = "Your order was paid by your first payment and stays yours as before."
    else:
        order_said = "This refund is of the second charge only; your order's own payment is as we last told you."
    return "\n".join(
        [
            f"You were charged twice for your order with {studio}: the second charge, {charge}, has been refunded "
            "in full.",
            order_said,
            "",
            f"Order {checkout.pk}",
            f"{studio} paid this back to you directly, not through the payment you made."
            if paid_outside
            else "The money goes back the way you paid; your bank may take a few days to show it.",
            "",
            "Your order, from any device:",
            link,
        ]
    )


def _refund_failed_body(*, checkout: Checkout, refund: Refund) -> str:
    """The e-mail about a refund that did not reach the shopper. A second charge's may still be
    refunded again through the provider (`refund_retry`), and is no part of the order."""
    studio = checkout.tenant.name
    link = order_link(studio_slug=checkout.tenant.slug, tenant_id=checkout.tenant_id, checkout_id=checkout.pk)
    amount = money_text(refund.amount_minor, refund.currency)
    second = refund.reason == Refund.Reason.DUPLICATE_CHARGE
    what = f"your second charge, {amount}," if second else amount
    return "\n".join(
        [
            f"We are sorry: the refund of {what} from {studio} did not reach your card or account. The payment "
            f"provider could not complete it and returned the money to {studio}.",
            *(["This is about the second charge only: your order is as we last told you."] if second else []),
            "",
            f"{studio} will pay it back to you and will get in touch with you about it."
            if second
            else f"{studio} will pay it back to you another way and will get in touch with you about it.",
            "",
            f"Order {checkout.pk}",
            "",
            "Your order, from any device:",
            link,
        ]
    )


def refund_failed_mail_send(*, message_id: uuid.UUID | str, checkout_id: uuid.UUID | str, refund_id: int) -> bool:
    """Send the e-mail a `refund.failed_after_landing` message asks for, once: the refund
    `refund_id`, which the shopper was told had come back, did not reach them, and the studio will
    pay it back another way (a second charge's: will pay it back, and the order is not concerned).
    True if this call sent it. Sends nothing (False, logged; the message is marked handled) for a
    refund an operator has recorded paid back outside the provider (`settled`) by now, or a
    second charge's that came back since.

    Runs outside any transaction (TransactionManagementError otherwise), in the checkout's tenant
    context. Raises MailBusy while another sender's claim is live, CheckoutNotFound for a
    checkout or refund that does not exist, and whatever the mail backend raises (the claim is
    then given back, so a retry sends).
    """
    message_uuid = uuid.UUID(str(message_id))
    checkout = Checkout.objects.select_related("tenant").filter(pk=checkout_id).first()
    refund = (
        Refund.objects.filter(pk=refund_id, transaction__checkout_id=checkout.pk).first()
        if checkout is not None
        else None
    )
    if checkout is None or refund is None:
        raise CheckoutNotFound(f"Checkout {checkout_id} with refund {refund_id} does not exist.")
    log = {"message_id": str(message_uuid), "checkout_id": str(checkout.pk), "refund_id": refund.pk}
    sent = False

    def send() -> None:
        # Under the claim, so that a settled refund's message is marked handled too (the
        # lost-message sweep does not send it again).
        nonlocal sent
        # (read under the claim: an operator's settle, or the order's last refund giving it back,
        # that committed before it is seen). A second charge's refund is owed while it is not
        # back (`failed`, or asked again and not landed yet), not once settled or landed again.
        owed = Refund.objects.filter(pk=refund.pk)
        if refund.reason == Refund.Reason.DUPLICATE_CHARGE:
            owed = owed.filter(status__in=[*Refund.OWED_STATUSES, Refund.Status.FAILED], landed_at__isnull=True)
        else:
            owed = owed.filter(status__in=Refund.OWED_STATUSES)
        if not owed.exists():
            logger.info(
                "refund paid back since (outside the provider, or by the whole payment): not e-mailed", extra=log
            )
            return
        shopper_mail_send(
            to=checkout.email,
            subject=f"A refund from {checkout.tenant.name} did not reach you ({str(checkout.pk)[:8]})",
            body=_refund_failed_body(checkout=checkout, refund=refund),
            message_id=mail_message_id(f"refund-failed-{message_uuid}"),
        )
        sent = True

    if not send_once(consumer=REFUND_FAILED_MAIL_CONSUMER, message_id=message_uuid, send=send) or not sent:
        return False
    logger.info("refund-failed e-mail sent", extra=log)
    return True
