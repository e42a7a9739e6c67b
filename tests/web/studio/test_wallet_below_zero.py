"""A wallet below zero, on the wallet page and the overview: its balance with the minus sign the
entries use (U+2212, "minus 22.50 EUR"), why it is below zero (a shopper's refund that landed after the sale's
money had gone into a payout) and what happens next (the next sales make it up; no new payout is made
until the balance reaches the payout minimum), and the "just recorded" and "held" lines reading
right against it. The statement is data and keeps its negative numbers.

Real flow, real Postgres and Redis: a sale paid through the sandbox, its photographer paid out by the
batch through the sandbox, then a refund asked and confirmed by the sandbox's webhook."""

from __future__ import annotations

import csv
import html
import io
import re
from typing import Any

import pytest

from apps.catalog.models import Photo
from apps.commerce.models import CheckoutLine
from apps.ledger.projection import projection_rebuild
from apps.payouts.models import Payout
from apps.payouts.services import payout_batch_run, payout_submit
from apps.tenancy.context import tenant_context
from tests.commerce.fixtures import empty_broker, row_lock_strategy  # noqa: F401 - fixtures by name
from tests.commerce.refunds import ask, confirmed
from tests.factories.commerce import make_shop
from tests.payouts.helpers import Wallet, sale_to_wallet
from tests.web.studio.conftest import StudioPeople, signed_in, sold, text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]

MINUS = "\u2212"
BELOW_ZERO = (
    "Below zero: a shopper was refunded after the money from their purchase had already gone into a payout to "
    "you. Your next sales make it up: no new payout is made until your balance reaches 10.00 EUR."
)


@pytest.fixture(autouse=True)
def payout_minimum(settings: Any) -> None:
    settings.PAYOUT_MINIMUM_MINOR = 1000


def readable(fragment: str) -> str:
    """What a reader sees of `fragment`: tags dropped, entities decoded, whitespace runs as one space."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def wallet_card(page: str) -> str:
    """The wallet page's EUR card, as read."""
    match = re.search(r'<section class="card" aria-label="EUR wallet">(.*?)</section>', page, re.S)
    assert match, "no EUR wallet card"
    return readable(match.group(1))


def overview_wallet(page: str) -> str:
    """The overview's "Your wallet" section, as read."""
    match = re.search(r'<section aria-labelledby="wallet-h">(.*?)</section>', page, re.S)
    assert match, "no wallet section on the overview"
    return readable(match.group(1))


def why_not(page: str) -> list[str]:
    return [readable(found) for found in re.findall(r"<p class=\"meta\" data-payout-refusal>(.*?)</p>", page, re.S)]


def paid_out_then_refunded(studio: StudioPeople, *, project: bool = True) -> tuple[str, Wallet, dict[str, int]]:
    """A sale of a download (8.10 EUR to the photographer) and a print (22.50), the whole 30.60 EUR paid
    out (the sandbox says paid), then the print refunded to the shopper: the refund's debit of 22.50
    lands on a wallet already paid out, taking it to minus 22.50 EUR (projected unless `project` is False).
    Returns the checkout, the wallet and the sale's line ids by kind."""
    checkout_id, wallet = sale_to_wallet(studio)
    projection_rebuild()
    [payout_id] = payout_batch_run(trigger="test").payout_ids
    with tenant_context(studio.org.pk):
        assert payout_submit(payout_id=payout_id).status == Payout.Status.PAID
        lines = {line.kind: line.pk for line in CheckoutLine.objects.filter(checkout_id=checkout_id)}
    projection_rebuild()
    confirmed(ask(studio, checkout_id, [lines["print"]]), checkout_id)
    if project:
        projection_rebuild()
    return checkout_id, wallet, lines


def test_a_refund_landing_after_a_payout_shows_the_balance_below_zero_and_says_why_and_what_next(
    studio: StudioPeople,
) -> None:
    # given: a sale paid out in full, then a refund of its print landing (minus 22.50 EUR), projected
    _, wallet, _ = paid_out_then_refunded(studio)
    client = signed_in(wallet.owner)

    # when: the photographer opens their wallet
    page = text(client.get("/studio/wallet/"))

    # then: the balance has the entries' minus sign, never a hyphen, and says why and what next
    assert wallet_card(page) == f"Balance: {MINUS}22.50 EUR {BELOW_ZERO}"
    assert "-22.50" not in page
    # and: the refund's entry reads as the balance does
    assert f"{MINUS}22.50 EUR" in readable(page.split('id="entries"', 1)[1])
    # and: why no payout can be asked reads the balance the same way
    assert why_not(page) == [f"Your balance is {MINUS}22.50 EUR; payouts start at 10.00 EUR."]

    # when: they open the studio's overview
    overview = overview_wallet(text(client.get("/studio/")))

    # then: the same balance and the same words
    assert overview.startswith(f"Your wallet {MINUS}22.50 EUR {BELOW_ZERO}")
    assert "-22.50" not in overview

    # and: the statement is data: the debit keeps its negative number
    response = client.get("/studio/wallet/statement.csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8"))))
    assert ("debit", "-22.50") in [(row[2], row[3]) for row in rows[1:]]


def test_a_refund_just_recorded_that_takes_the_wallet_below_zero_is_said_before_it_is_counted(
    studio: StudioPeople,
) -> None:
    # given: the refund's debit recorded, not yet projected: the balance shown is still 0.00 EUR
    _, wallet, _ = paid_out_then_refunded(studio, project=False)
    client = signed_in(wallet.owner)
    # when: the photographer opens their wallet and the overview
    card = wallet_card(text(client.get("/studio/wallet/")))
    overview = overview_wallet(text(client.get("/studio/")))
    # then: the debit on its way and where it takes the wallet, on both
    less = "Less 22.50 EUR just recorded (a payout or a refund), counted within seconds."
    assert card == f"Balance: 0.00 EUR {less} {BELOW_ZERO}"
    assert overview.startswith(f"Your wallet 0.00 EUR {less} {BELOW_ZERO}")


def test_a_sale_just_recorded_against_a_wallet_below_zero_reads_as_plus(studio: StudioPeople) -> None:
    # given: a wallet at minus 22.50 EUR, then the photographer's next sale (8.10 EUR) recorded, not projected
    _, wallet, _ = paid_out_then_refunded(studio)
    shop = make_shop(org=studio.org)
    with tenant_context(studio.org.pk):
        Photo.objects.filter(pk=shop.photo.pk).update(photographer=wallet.owner)
    sold(studio, shop, {"product": shop.download.pk})
    # when: the photographer opens their wallet
    card = wallet_card(text(signed_in(wallet.owner).get("/studio/wallet/")))
    # then: the sale is on its way into the balance, which is still below zero, and says so
    plus = "Plus 8.10 EUR just recorded, counted within seconds."
    assert card == f"Balance: {MINUS}22.50 EUR {plus} {BELOW_ZERO}"


def test_a_refund_under_way_against_a_wallet_below_zero_reads_as_more_to_come_not_as_held_of_it(
    studio: StudioPeople,
) -> None:
    # given: a wallet at minus 22.50 EUR, and the studio asks to refund the sale's download too (8.10 EUR),
    # not landed yet
    checkout_id, wallet, lines = paid_out_then_refunded(studio)
    ask(studio, checkout_id, [lines["download"]])
    # when: the photographer opens their wallet
    page = text(signed_in(wallet.owner).get("/studio/wallet/"))
    # then: the refund under way is said as what it will take, not as money held out of a negative balance
    assert wallet_card(page) == (
        f"Balance: {MINUS}22.50 EUR "
        "Refunds under way will take 8.10 EUR from it if they go through. "
        "Below zero: a shopper was refunded after the money from their purchase had already gone into a payout to "
        "you. Your next sales make it up: no new payout is made until your balance, less refunds under way, "
        "reaches 10.00 EUR."
    )
    assert "of it is held" not in page and "of it held" not in page
    # and: why no payout can be asked says the same
    assert why_not(page) == [
        f"Your balance is {MINUS}22.50 EUR, and refunds under way will take 8.10 EUR from it; "
        "payouts start at 10.00 EUR."
    ]


def test_a_balance_above_zero_is_unchanged_and_says_nothing_of_below_zero(studio: StudioPeople) -> None:
    # given: a sale (30.60 EUR) of which the print's refund (22.50 EUR) is asked, not landed
    checkout_id, wallet = sale_to_wallet(studio)
    with tenant_context(studio.org.pk):
        print_line = CheckoutLine.objects.get(checkout_id=checkout_id, kind="print").pk
    ask(studio, checkout_id, [print_line])
    projection_rebuild()
    # when: the photographer opens their wallet
    page = text(signed_in(wallet.owner).get("/studio/wallet/"))
    # then: the held money is still said as part of the balance, and nothing of being below zero
    assert wallet_card(page) == (
        "Balance: 30.60 EUR 22.50 EUR of it is held for refunds under way: a payout leaves it in your wallet "
        "until they conclude."
    )
    assert "Below zero" not in page


def test_a_refund_under_way_larger_than_the_balance_is_not_said_as_held_of_it(studio: StudioPeople) -> None:
    # given: a sale paid out in full (30.60 EUR), the photographer's next sale (8.10 EUR), and the studio
    # asks to refund the first sale's print (22.50 EUR), not landed yet
    checkout_id, wallet = sale_to_wallet(studio)
    projection_rebuild()
    [payout_id] = payout_batch_run(trigger="test").payout_ids
    with tenant_context(studio.org.pk):
        assert payout_submit(payout_id=payout_id).status == Payout.Status.PAID
        print_line = CheckoutLine.objects.get(checkout_id=checkout_id, kind="print").pk
    shop = make_shop(org=studio.org)
    with tenant_context(studio.org.pk):
        Photo.objects.filter(pk=shop.photo.pk).update(photographer=wallet.owner)
    sold(studio, shop, {"product": shop.download.pk})
    ask(studio, checkout_id, [print_line])
    projection_rebuild()
    # when: the photographer opens their wallet
    page = text(signed_in(wallet.owner).get("/studio/wallet/"))
    # then: 22.50 EUR is not "of" an 8.10 EUR balance: it is said as what the refund will take
    assert wallet_card(page) == "Balance: 8.10 EUR Refunds under way will take 22.50 EUR from it if they go through."
    assert why_not(page) == [
        "Your balance is 8.10 EUR, and refunds under way will take 22.50 EUR from it; payouts start at 10.00 EUR."
    ]
