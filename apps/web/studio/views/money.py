"""Money pages: the studio's sales (all, or the prints still to ship) and each sale's detail with its
"Mark as shipped" and (owners) "Refund" forms, the signed-in member's wallet (entries in keyset pages, and the
whole statement as CSV) and payouts, payout requests, and (owners) where each photographer is
paid."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import dateformat, timezone
from django.views.decorators.http import require_GET, require_POST

from apps.commerce.models import Checkout, CheckoutLine, CheckoutShipping, Refund
from apps.commerce.services import checkout_refund_request
from apps.commerce.services.fulfilment import address_lines, checkout_mark_shipped
from apps.commerce.services.payment import (
    items_refund_minor,
    other_refund_under_way,
    partial_refunds_taken_minor,
    refundable_lines,
    whole_refund_minor,
)
from apps.ledger.models import LedgerEvent
from apps.ledger.selectors import account_entries_oldest_first, account_entries_page
from apps.ops.killswitch import capability_enabled
from apps.ops.models import Capability
from apps.payments.providers.base import PayoutDestinationError, minor_to_major, money_text
from apps.payouts.models import Payout
from apps.payouts.selectors import (
    EntrySource,
    PayoutRequestStanding,
    SoldItem,
    balance_text,
    payout_minimum_minor,
    payout_request_standings,
    wallet_entry_sources,
)
from apps.payouts.services import NotAMember, payout_destination_set, payout_wallet_request
from apps.tenancy.context import tenant_context
from apps.tenancy.models import User
from apps.web.studio import selectors
from apps.web.studio.access import (
    PAYOUT_MANAGE_ROLES,
    REFUND_ROLES,
    SALES_ROLES,
    Studio,
    problem_page,
    studio_page,
)
from apps.web.studio.forms import DestinationForm, PayoutRequestForm, RefundForm, ShipForm
from apps.web.studio.refund_failures import failure_reason_said
from apps.web.studio.views.common import page_of, sale_amount_text, submit


@require_GET
@studio_page(*SALES_ROLES)
def sales(request: HttpRequest, studio: Studio) -> HttpResponse:
    """Every sale, or with `?to_ship=1` only the paid ones whose prints wait to be shipped."""
    to_ship = request.GET.get("to_ship") == "1"
    page = page_of(request, selectors.sales_of_tenant(tenant_id=studio.tenant_id, to_ship=to_ship))
    rows = [(checkout, sale_amount_text(checkout)) for checkout in page]
    context = {
        "studio": studio,
        "page": page,
        "rows": rows,
        "to_ship": to_ship,
        "to_ship_count": page.paginator.count
        if to_ship
        else selectors.prints_to_ship_count(tenant_id=studio.tenant_id),
    }
    return render(request, "studio/sales.html", context)


def _sale_or_404(request: HttpRequest, studio: Studio, checkout_id: uuid.UUID) -> Checkout | HttpResponse:
    sale = selectors.sale_of_tenant(tenant_id=studio.tenant_id, checkout_id=checkout_id)
    if sale is None:
        return problem_page(
            request, studio, status=404, title="Sale not found", message="This studio has no such sale."
        )
    return sale


def _shippable(sale: Checkout) -> bool:
    """Whether the "Mark as shipped" form applies (the service decides for good)."""
    shipping = getattr(sale, "shipping", None)
    return (
        shipping is not None
        and sale.status == Checkout.Status.PAID
        and shipping.fulfilment_status == CheckoutShipping.FulfilmentStatus.UNFULFILLED
        and any(line.ships() for line in sale.lines_by_position)
    )


def _restockable(sale: Checkout, items: list[tuple[int, str]]) -> bool:
    """Whether the refund form offers "Put the prints back in stock": a print the form offers is
    still to ship."""
    offered = {line_id for line_id, _ in items}
    return _shippable(sale) and any(line.pk in offered and line.ships() for line in sale.lines_by_position)


_KIND_LABELS = {"download": "Download", "print": "Print", "bulk": "All photos of the event"}


def _refundable_items(sale: Checkout, refunds: list[Refund]) -> list[tuple[int, str]]:
    """(line id, label) of the items the "Refund" form offers (the service decides for good):
    a paid sale's charged items that no refund under way or landed names (an item whose refund
    the provider refused may be asked for again); none while a whole-order refund is under way."""
    if sale.status != Checkout.Status.PAID:
        return []
    if other_refund_under_way(refunds) or _paid_minor(sale) - partial_refunds_taken_minor(refunds) <= 0:
        return []  # a whole refund under way, or nothing of the payment left to give back
    return [(line.pk, _item_label(line)) for line in refundable_lines(sale.lines_by_position, refunds)]


def _item_label(line: CheckoutLine, amount_minor: int | None = None) -> str:
    """ "Print A4, photo 7 x 2: 50.00 EUR": the item and its amount (or `amount_minor`)."""
    kind = _KIND_LABELS.get(line.kind, line.kind)
    size = f" {line.size}" if line.size else ""
    photo = f", photo {line.photo_id}" if line.photo_id else ""
    quantity = f" x {line.quantity}" if line.quantity > 1 else ""
    amount = line.amount_minor if amount_minor is None else amount_minor
    return f"{kind}{size}{photo}{quantity}: {money_text(amount, line.currency)}"


def _item_left(sale: Checkout, refunds: list[Refund], items: list[tuple[int, str]]) -> str | None:
    """The label of the one item left to refund once part of the payment went back (items
    refunded apart, or part refunded at the provider), with what its refund gives back as
    `checkout_refund_request` computes it (`items_refund_minor`: the order's last item takes
    what is left of the payment). None unless the form offers one item and part went back."""
    if len(items) != 1 or not any(r.reason in Refund.PARTIAL_REASONS for r in refunds):
        return None
    [line] = [line for line in sale.lines_by_position if line.pk == items[0][0]]
    charged = [line for line in sale.lines_by_position if line.state == CheckoutLine.State.CONFIRMED]
    amount = items_refund_minor(payment_minor=_paid_minor(sale), lines=charged, chosen_ids={line.pk}, refunds=refunds)
    return _item_label(line, amount)


def _refunded_elsewhere(sale: Checkout, refunds: list[Refund]) -> str:
    """For a refunded sale, what went back that no listed refund accounts for ("" if nothing):
    the rest of the payment, refunded whole in the provider's dashboard (the event that brings
    the whole payment back records no refund of its own). A second charge's refund is no part of
    the payment."""
    txn = getattr(sale, "transaction", None)
    if sale.status != Checkout.Status.REFUNDED or txn is None:
        return ""
    listed = sum(
        r.amount_minor
        for r in refunds
        if r.landed_at is not None and r.status in Refund.LIVE_STATUSES and r.reason != Refund.Reason.DUPLICATE_CHARGE
    )
    rest = whole_refund_minor(txn=txn) - listed
    return money_text(rest, sale.currency) if rest > 0 else ""


def _paid_minor(sale: Checkout) -> int:
    """What the sale's payment was (its transaction's amount)."""
    return sale.transaction.amount_minor if getattr(sale, "transaction", None) else sale.amount_minor


def _line_state(line: CheckoutLine, refund_of: dict[int, Refund], *, sale_refunded: bool = False) -> tuple[str, str]:
    """(CSS state, label) of an item on the sale page: its refund's progress, else its state (a
    charged item of a refunded sale is refunded with the whole payment)."""
    if sale_refunded and line.state == CheckoutLine.State.CONFIRMED:
        return "refunded", "Refunded"
    refund = refund_of.get(line.refund_id) if line.refund_id else None
    if refund is None:
        return line.state, line.get_state_display()
    if refund.status == Refund.Status.SETTLED:
        return "refunded", "Refunded outside the provider"
    if refund.still_owed:
        return "failed", "Refund failed at the provider after it was confirmed"
    if refund.landed_at is not None:
        return "refunded", "Refunded"
    if refund.status == Refund.Status.FAILED:
        return "failed", "Refund refused by the provider"
    if refund.status == Refund.Status.NOT_NEEDED:  # the whole payment came back otherwise
        return "refunded", "Refunded"
    return "requested", "Refund asked"


def _render_sale(
    request: HttpRequest,
    studio: Studio,
    sale: Checkout,
    *,
    status: int = 200,
    ship_form: ShipForm | None = None,
    refund_form: RefundForm | None = None,
    refund_refusal: list[str] | None = None,
) -> HttpResponse:
    shipping = getattr(sale, "shipping", None)
    refunds = selectors.refunds_of_sale(tenant_id=studio.tenant_id, checkout_id=sale.pk)
    refund_of = {refund.pk: refund for refund in refunds}
    items = _refundable_items(sale, refunds)
    offer_refund = studio.can_refund and (refund_form is not None or bool(items))
    position_of = {line.pk: number for number, line in enumerate(sale.lines_by_position, start=1)}
    charged = [line for line in sale.lines_by_position if line.state == CheckoutLine.State.CONFIRMED]
    context: dict[str, Any] = {
        "studio": studio,
        "sale": sale,
        "amount": money_text(sale.amount_minor, sale.currency),
        "lines": [
            {
                "line": line,
                "label": _KIND_LABELS.get(line.kind, line.kind),
                "unit": money_text(line.unit_amount_minor, line.currency),
                "amount": money_text(line.amount_minor, line.currency),
                "state": _line_state(line, refund_of, sale_refunded=sale.status == Checkout.Status.REFUNDED),
            }
            for line in sale.lines_by_position
        ],
        "shipping": shipping,
        "address_lines": address_lines(shipping) if shipping is not None else [],
        "ship_form": (
            (ship_form or ShipForm())
            if ship_form is not None or (_shippable(sale) and not other_refund_under_way(refunds))
            else None
        ),
        "refunds": [
            {
                "refund": refund,
                "amount": money_text(refund.amount_minor, refund.currency),
                "items": sorted(position_of[line.pk] for line in sale.lines_by_position if line.refund_id == refund.pk),
                # Why the provider could not complete it after accepting it, in plain words
                # (its code stays in `last_error`, for operators).
                "failure": failure_reason_said(
                    refund, provider=sale.provider, provider_label=sale.get_provider_display()
                )
                if refund.provider_failed_at is not None
                else "",
            }
            for refund in refunds
        ],
        # A refund of the order waits on the provider (asked, or accepted and not confirmed):
        # its items turn refunded once the provider confirms it.
        "refund_waiting": any(
            r.status in Refund.OWED_STATUSES and r.landed_at is None and r.reason != Refund.Reason.DUPLICATE_CHARGE
            for r in refunds
        ),
        "refund_form": (refund_form or RefundForm(offer_restock=_restockable(sale, items), items=items))
        if offer_refund
        else None,
        "at_provider": any(r.reason == Refund.Reason.PROVIDER_PARTIAL for r in refunds),
        "refunded_elsewhere": _refunded_elsewhere(sale, refunds),
        "payment_left": money_text(_paid_minor(sale) - partial_refunds_taken_minor(refunds), sale.currency),
        "refund_whole": not refunds and len(items) == len(charged),
        "refund_item_left": _item_left(sale, refunds, items),
        "refund_pick": len(items) > 1,
        "refund_refusal": refund_refusal or [],
    }
    return render(request, "studio/sale_detail.html", context, status=status)


@require_GET
@studio_page(*SALES_ROLES)
def sale_detail(request: HttpRequest, studio: Studio, checkout_id: uuid.UUID) -> HttpResponse:
    """One sale: lines with sizes and quantities, amounts, the shopper's e-mail, the shipping
    address and fulfilment, and (prints to ship) the "Mark as shipped" form."""
    sale = _sale_or_404(request, studio, checkout_id)
    if isinstance(sale, HttpResponse):
        return sale
    return _render_sale(request, studio, sale)


@require_POST
@studio_page(*SALES_ROLES)
def sale_ship(request: HttpRequest, studio: Studio, checkout_id: uuid.UUID) -> HttpResponse:
    """Mark a paid sale's prints shipped, once per rendered form (`submit_once`): the service
    refuses a sale that is not paid, has nothing to ship or was shipped already (409), and the
    shopper gets the tracking e-mail after commit."""
    sale = _sale_or_404(request, studio, checkout_id)
    if isinstance(sale, HttpResponse):
        return sale
    form = ShipForm(request.POST)

    def effect() -> str:
        shipping = checkout_mark_shipped(
            tenant_id=studio.tenant_id,
            checkout_id=sale.pk,
            carrier=form.cleaned_data["carrier"],
            tracking_reference=form.cleaned_data["tracking_reference"],
            actor=studio.user,
        )
        messages.success(request, f"Marked shipped with {shipping.carrier}; the shopper is told by e-mail.")
        return reverse("studio:sale", kwargs={"checkout_id": sale.pk})

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render_sale(request, studio, sale, status=status, ship_form=form),
    )


def _rerender_refund(
    request: HttpRequest, studio: Studio, sale: Checkout, *, form: RefundForm, status: int
) -> HttpResponse:
    """The sale page after a refused refund form: invalid input (400) shows the form as sent,
    with its errors; a refusal of the service (409: the sale changed meanwhile, in another tab)
    shows why, above a fresh form of what can still be refunded now (none if nothing can), so
    its button never repeats the refused request."""
    if status == 400:
        return _render_sale(request, studio, sale, status=status, refund_form=form)
    refusal = [str(message) for messages in form.errors.values() for message in messages]
    current = _sale_or_404(request, studio, sale.pk)
    if isinstance(current, HttpResponse):
        return current
    return _render_sale(request, studio, current, status=status, refund_refusal=refusal)


@require_POST
@studio_page(*REFUND_ROLES)
def sale_refund(request: HttpRequest, studio: Studio, checkout_id: uuid.UUID) -> HttpResponse:
    """Refund a paid sale, whole or the items ticked, once per rendered form (`submit_once`):
    the service refuses a sale that is not paid, or items whose refund is under way (409); the
    provider is asked after commit, and the items (the whole sale) turn refunded when it
    confirms."""
    sale = _sale_or_404(request, studio, checkout_id)
    if isinstance(sale, HttpResponse):
        return sale
    items = _refundable_items(sale, selectors.refunds_of_sale(tenant_id=studio.tenant_id, checkout_id=sale.pk))
    charged = [line.pk for line in sale.lines_by_position if line.state == CheckoutLine.State.CONFIRMED]
    form = RefundForm(request.POST, offer_restock=_restockable(sale, items), items=items, order_lines=charged)

    def effect() -> str:
        refund = checkout_refund_request(
            tenant_id=studio.tenant_id,
            checkout_id=sale.pk,
            actor_label=studio.caller,
            actor_user=studio.user,
            restock_prints=bool(form.cleaned_data.get("restock_prints")),
            line_ids=form.cleaned_data["lines"],
        )
        amount = money_text(refund.amount_minor, refund.currency)
        messages.success(request, f"Refund of {amount} asked of {sale.get_provider_display()}.")
        return reverse("studio:sale", kwargs={"checkout_id": sale.pk})

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _rerender_refund(request, studio, sale, form=form, status=status),
    )


# The studio's payouts (owners) page apart from the member's own (`?page=`): a payout per
# photographer per run adds up to thousands, every one of which an owner may need to find.
STUDIO_PAYOUTS_PER_PAGE = 50
STUDIO_PAYOUTS_PAGE = "studio_payouts_page"


def _wallet_choices(wallets: list[selectors.WalletView]) -> list[tuple[int, str]]:
    return [(w.account_id, w.label) for w in wallets]


def _cursor(value: str | None) -> int | None:
    """An entries cursor from the query string; anything but a positive id starts from the newest."""
    return int(value) if value and value.isascii() and value.isdigit() and len(value) <= 18 else None


def _payout_minimum(*, tenant_id: int, wallets: list[selectors.WalletView]) -> str:
    """The payout minimum (`payout_minimum_minor()`, minor units of any currency) as money: in the
    currency of each of the member's wallets or, before their first credit, of each currency the
    studio sells in (where their wallets will open), e.g. "10.00 EUR" or "10.00 EUR / 1000 JPY"."""
    minimum = payout_minimum_minor()
    currencies = [w.currency for w in wallets] or selectors.sale_currencies_of_studio(tenant_id=tenant_id)
    if currencies:
        return " / ".join(money_text(minimum, currency) for currency in currencies)
    return f"the payout minimum of its currency ({money_text(minimum, 'EUR')} for a euro wallet)"


@dataclass(frozen=True)
class EntryRow:
    """A wallet entry as the page and the statement say it: `text` what it was ("Sale: Download,
    photo 7 at City Marathon"), `order` the short reference of its order (linked to `order_url`
    for a member who may open the sale), `note` what else explains its amount (a sale's price
    less the platform's fee), `reference` the entry's own reference where nothing else says what
    it was."""

    entry: LedgerEvent
    text: str
    order: str = ""
    order_url: str = ""
    note: str = ""
    reference: str = ""

    @property
    def amount(self) -> str:
        """ "8.10 EUR" (the page marks a debit's with a minus sign)."""
        return money_text(self.entry.amount_minor, self.entry.currency)

    @property
    def description(self) -> str:
        """All of it on one line (the statement's `description`), without the reference, which
        the statement has a column for."""
        order = f" (order {self.order})" if self.order else ""
        note = f"; {self.note}" if self.note else ""
        return f"{self.text}{order}{note}"


def _sold_item(item: SoldItem) -> str:
    """ "Print A4, photo 7 x 2 at City Marathon"."""
    kind = _KIND_LABELS.get(item.kind, item.kind)
    size = f" {item.size}" if item.size else ""
    photo = f", photo {item.photo_id}" if item.photo_id else ""
    quantity = f" x {item.quantity}" if item.quantity > 1 else ""
    event = f" at {item.event_title}" if item.event_title else ""
    return f"{kind}{size}{photo}{quantity}{event}"


def _payout_named(payout: Payout) -> str:
    """Which payout: "(payout 9f3c2a1b of 26 Nov 2026, 21:47)", its id's last eight characters (the
    first ones of a time-ordered id are the same for payouts made within a minute) and when it was
    made, as the payouts table says it."""
    made = dateformat.format(timezone.localtime(payout.created_at), "j M Y, H:i")
    return f"(payout {str(payout.pk)[-8:]} of {made})"


def _entry_row(entry: LedgerEvent, source: EntrySource, *, studio: Studio) -> EntryRow:
    """What `entry` was, in words (`wallet_entry_sources` found what it names)."""
    credit = entry.kind == LedgerEvent.Kind.CREDIT
    if source.kind in ("sale", "refund") and source.checkout_id is not None:
        head = "Sale" if source.kind == "sale" else "Refund to the shopper"
        item = source.item
        note = ""
        if source.kind == "sale" and item is not None and item.currency == entry.currency:
            fee = item.amount_minor - entry.amount_minor
            if fee > 0:
                paid, kept = money_text(item.amount_minor, item.currency), money_text(fee, item.currency)
                note = f"{paid} less the platform's fee of {kept}"
        may_open = source.sold and studio.can_see_sales
        return EntryRow(
            entry=entry,
            text=f"{head}: {_sold_item(item)}" if item is not None else head,
            order=str(source.checkout_id)[:8],
            order_url=reverse("studio:sale", kwargs={"checkout_id": source.checkout_id}) if may_open else "",
            note=note,
        )
    payout = source.payout
    if source.kind in ("payout", "payout_returned"):
        head = "Payout to" if source.kind == "payout" else "Payout returned, not paid to"
        if payout is None:
            return EntryRow(entry=entry, text="Payout" if source.kind == "payout" else "Payout returned")
        return EntryRow(
            entry=entry, text=f"{head} {payout.get_provider_display()}: {payout.destination} {_payout_named(payout)}"
        )
    return EntryRow(
        entry=entry,
        text="Added to your wallet" if credit else "Taken from your wallet",
        reference=entry.reference,
    )


def entry_rows(*, studio: Studio, entries: list[LedgerEvent]) -> list[EntryRow]:
    """`entries` in words, in their order; two queries for any number (`wallet_entry_sources`)."""
    sources = wallet_entry_sources(tenant_id=studio.tenant_id, entries=entries)
    return [_entry_row(entry, sources[entry.id], studio=studio) for entry in entries]


def _request_offer(
    wallets: list[selectors.WalletView], standings: dict[int, PayoutRequestStanding]
) -> tuple[list[PayoutRequestStanding], list[str]]:
    """The standings of the wallets "Request payout" offers (those `payout_wallet_request` would
    accept now, by its own rule: `PayoutRequestStanding.refusal`) and why the others cannot be paid
    now, prefixed with their currency when there are several. A missing destination goes unsaid
    here: the page says so above, with where to set it."""
    payable, why_not = [], []
    for wallet in wallets:
        standing = standings.get(wallet.account_id)
        refusal = standing.refusal if standing is not None else None
        if standing is not None and refusal is None:
            payable.append(standing)
        elif refusal is not None and refusal.reason != "no_destination":
            prefix = f"{wallet.currency} wallet: " if len(wallets) > 1 else ""
            why_not.append(prefix + refusal.message)
    return payable, why_not


def _offer_choices(payable: list[PayoutRequestStanding]) -> list[tuple[int, str]]:
    """The request form's wallets, each named with what a request pays now: "EUR wallet: 22.50 EUR now"."""
    return [(s.account_id, f"{s.currency} wallet: {money_text(s.payable_minor, s.currency)} now") for s in payable]


def _what_a_request_pays(payable: list[PayoutRequestStanding]) -> list[str]:
    """What a request of each offered wallet sends now, and why not the whole balance when refunds
    under way hold part of it (the request pays `payable_minor`, and says so once made)."""
    said = []
    for s in payable:
        pays = money_text(s.payable_minor, s.currency)
        if s.held_minor > 0:
            balance, held = balance_text(s.balance_minor, s.currency), money_text(s.held_minor, s.currency)
            said.append(
                f"A payout requested now sends {pays}: your balance of {balance} less {held} held for refunds "
                "under way."
            )
        else:
            said.append(f"A payout requested now sends {pays}, your whole balance.")
    return said


def _render_wallet(
    request: HttpRequest,
    studio: Studio,
    *,
    status: int = 200,
    request_refusal: list[str] | None = None,
    destination_form: DestinationForm | None = None,
) -> HttpResponse:
    tenant_id = studio.tenant_id
    wallets = selectors.wallets_of_user(tenant=studio.org, user_id=studio.user.pk)
    currency_of = {w.account_id: w.currency for w in wallets}
    entries = account_entries_page(
        tenant_id=tenant_id, account_ids=list(currency_of), older_than=_cursor(request.GET.get("entries_older_than"))
    )
    own_payouts = page_of(request, selectors.payouts_of_owner(tenant_id=tenant_id, user_id=studio.user.pk))
    standings = payout_request_standings(tenant_id=tenant_id, owner_id=studio.user.pk) if wallets else {}
    payable, why_not = _request_offer(wallets, standings)
    refusal = request_refusal or []
    context: dict[str, Any] = {
        "studio": studio,
        "wallets": wallets,
        "entries": entry_rows(studio=studio, entries=entries.entries),
        "entries_older_than": entries.older_than,
        "entries_paged": "entries_older_than" in request.GET,
        "payouts": [(p, money_text(p.amount_minor, p.currency)) for p in own_payouts],
        "payouts_page": own_payouts,
        "destination": selectors.destination_of(tenant_id=tenant_id, user_id=studio.user.pk),
        "payouts_enabled": capability_enabled(Capability.PAYOUTS),
        "minimum": _payout_minimum(tenant_id=tenant_id, wallets=wallets),
        # A fresh form of the wallets that can be paid now: after a refused request too, so its
        # button never repeats a request that cannot work (the refusal is said above it).
        "request_form": PayoutRequestForm(wallets=_offer_choices(payable)) if payable else None,
        "request_pays": _what_a_request_pays(payable),
        "request_refusal": refusal,
        "request_why_not": [reason for reason in why_not if not any(reason in said for said in refusal)],
    }
    if studio.can_manage_payouts:
        members = selectors.members_of_tenant(tenant_id=tenant_id)
        context["destination_form"] = destination_form or DestinationForm(members=members)
        context["destinations"] = list(selectors.destinations_of_studio(tenant_id=tenant_id))
        studio_payouts = page_of(
            request,
            selectors.payouts_of_studio(tenant_id=tenant_id),
            per_page=STUDIO_PAYOUTS_PER_PAGE,
            param=STUDIO_PAYOUTS_PAGE,
        )
        context["studio_payouts"] = [(p, money_text(p.amount_minor, p.currency)) for p in studio_payouts]
        context["studio_payouts_page"] = studio_payouts
    return render(request, "studio/wallet.html", context, status=status)


@require_GET
@studio_page()
def wallet(request: HttpRequest, studio: Studio) -> HttpResponse:
    return _render_wallet(request, studio)


@require_POST
@studio_page()
def wallet_payout_request(request: HttpRequest, studio: Studio) -> HttpResponse:
    """Ask to be paid now (this wallet only): checked against the payout rules and the payouts
    kill switch; a worker pays it once no payout run holds the payout lease."""
    wallets = selectors.wallets_of_user(tenant=studio.org, user_id=studio.user.pk)
    form = PayoutRequestForm(request.POST, wallets=_wallet_choices(wallets))

    def effect() -> str:
        account_id = form.cleaned_data["account"]
        payable = payout_wallet_request(tenant_id=studio.tenant_id, account_id=account_id, actor=studio.user)
        wallet = next(w for w in wallets if w.account_id == account_id)
        held = f" ({wallet.held} stays in your wallet for refunds under way)" if wallet.held_minor > 0 else ""
        messages.success(
            request,
            f"Payout requested: {money_text(payable, wallet.currency)} is sent to your payout destination "
            f"shortly, after any payout run in progress{held}. It appears below once made.",
        )
        return reverse("studio:wallet")

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render_wallet(request, studio, status=status, request_refusal=_said(form)),
    )


def _said(form: PayoutRequestForm) -> list[str]:
    """What a refused form's errors say (its refusal, or why its input was not taken)."""
    return [str(message) for messages in form.errors.values() for message in messages]


@require_POST
@studio_page(*PAYOUT_MANAGE_ROLES)
def wallet_destination(request: HttpRequest, studio: Studio) -> HttpResponse:
    """Owners: set where a member of the studio is paid (validated by the provider's adapter)."""
    form = DestinationForm(request.POST, members=selectors.members_of_tenant(tenant_id=studio.tenant_id))

    def effect() -> str:
        data = form.cleaned_data
        owner = User.objects.get(pk=data["member"])
        payout_destination_set(
            tenant=studio.org,
            owner=owner,
            provider=data["provider"],
            destination=data["destination"],
            actor=studio.user,
            actor_label=studio.caller,
        )
        messages.success(request, f"Payout destination of {owner.get_username()} saved.")
        return reverse("studio:wallet") + "#destinations"

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render_wallet(request, studio, status=status, destination_form=form),
        error_fields={PayoutDestinationError: "destination", NotAMember: "member"},
    )


STATEMENT_HEADER = ("entry_id", "created_at_utc", "kind", "amount", "currency", "reference", "description")
# Entries described at a time in the statement (`wallet_entry_sources`: two queries a chunk).
STATEMENT_CHUNK = 500
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _text_cell(value: str) -> str:
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


def statement_row(row: EntryRow) -> tuple[str, ...]:
    """One entry as a CSV row: debits negative, in major units of their currency (exact), and
    what it was in words."""
    entry = row.entry
    amount = minor_to_major(entry.amount_minor, entry.currency)
    return (
        str(entry.id),
        entry.created_at.astimezone(UTC).isoformat(),
        entry.kind,
        f"-{amount}" if entry.kind == LedgerEvent.Kind.DEBIT else amount,
        entry.currency,
        _text_cell(entry.reference),
        _text_cell(row.description),
    )


def _csv_lines(
    *, tenant_id: int, header: tuple[str, ...], rows: Callable[[], Iterable[tuple[str, ...]]]
) -> Iterator[str]:
    """A CSV, a line at a time, its rows read in one transaction (one snapshot) in the tenant's
    context.

    The response streams after the view has returned, so the context and the transaction are
    opened here, around the iteration; a client that goes away closes the generator, which ends
    the transaction."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def line(row: tuple[str, ...]) -> str:
        writer.writerow(row)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(header)
    with tenant_context(tenant_id), transaction.atomic():
        for row in rows():
            yield line(row)


def _csv_response(lines: Iterator[str], *, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_GET
@studio_page()
def wallet_statement(request: HttpRequest, studio: Studio) -> StreamingHttpResponse:
    """Every entry of the signed-in member's own wallets in this studio, oldest first, as CSV,
    each described as on the wallet page (`entry_rows`, a chunk at a time)."""
    account_ids = [w.account_id for w in selectors.wallets_of_user(tenant=studio.org, user_id=studio.user.pk)]

    def rows() -> Iterator[tuple[str, ...]]:
        entries = account_entries_oldest_first(tenant_id=studio.tenant_id, account_ids=account_ids)
        while chunk := list(islice(entries, STATEMENT_CHUNK)):
            for row in entry_rows(studio=studio, entries=chunk):
                yield statement_row(row)

    return _csv_response(
        _csv_lines(tenant_id=studio.tenant_id, header=STATEMENT_HEADER, rows=rows),
        filename=f"darkroom-{studio.org.slug}-wallet-{timezone.now():%Y-%m-%d}.csv",
    )


SALES_HEADER = (
    "checkout_id",
    "created_at_utc",
    "paid_at_utc",
    "status",
    "provider",
    "buyer_email",
    "amount",
    "currency",
    "lines",
    "shipping_country",
    "fulfilment",
    "shipped_at_utc",
    "refunded",
)


def _utc(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat() if moment is not None else ""


def sale_row(sale: Checkout) -> tuple[str, ...]:
    """One sale as a CSV row: the amount in exact major units of its currency; shipping columns
    empty for an order without prints; `refunded` what went back to the buyer (the refunds the
    provider confirmed, parts refunded in its dashboard included, and for a refunded sale the
    whole payment; in the same units, 0 when none), so revenue is amount minus refunded."""
    shipping = getattr(sale, "shipping", None)
    txn = getattr(sale, "transaction", None)
    return (
        str(sale.pk),
        _utc(sale.created_at),
        _utc(txn.paid_at if txn is not None else None),
        sale.status,
        sale.provider,
        _text_cell(sale.email),
        minor_to_major(sale.amount_minor, sale.currency),
        sale.currency,
        str(sale.line_count),  # type: ignore[attr-defined]
        shipping.country if shipping is not None else "",
        shipping.fulfilment_status if shipping is not None else "",
        _utc(shipping.shipped_at if shipping is not None else None),
        minor_to_major(int(getattr(sale, "refunded_minor", 0) or 0), sale.currency),
    )


@require_GET
@studio_page(*SALES_ROLES)
def sales_export(request: HttpRequest, studio: Studio) -> StreamingHttpResponse:
    """Every sale of the studio (paid, or refunded since), oldest first, as CSV (owners, staff)."""

    def rows() -> Iterator[tuple[str, ...]]:
        sales = selectors.sales_of_tenant(tenant_id=studio.tenant_id).order_by("created_at", "id")
        for sale in sales.iterator(chunk_size=500):
            yield sale_row(sale)

    return _csv_response(
        _csv_lines(tenant_id=studio.tenant_id, header=SALES_HEADER, rows=rows),
        filename=f"darkroom-{studio.org.slug}-sales-{timezone.now():%Y-%m-%d}.csv",
    )
