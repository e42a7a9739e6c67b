"""Each wallet's share of the refunds asked for and not landed yet (`wallet_refund_holds`): what
their landing will debit from it, by the landing's own rule, so that a payout leaves it in the
wallet. Real Postgres and Redis; the sandbox plays the provider.

The sale (`sale` fixture): a download (9.00) and a print (25.00) of one photographer; with the
platform's 10 % fee their wallet holds 8.10 + 22.50 = 30.60 EUR.
"""

from __future__ import annotations

from typing import Any

import pytest

from apps.commerce.models import CheckoutLine
from apps.commerce.selectors import wallet_refund_holds
from apps.ledger.models import LedgerAccount, LedgerEvent
from apps.ledger.services import EntryIn, ledger_entries_append
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.refunds import ask, confirmed, refused
from tests.commerce.test_refund_failed_at_provider import provider_says_failed, submitted
from tests.factories.commerce import make_shop
from tests.web.studio.conftest import StudioPeople, sold

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]

DOWNLOAD_NET, PRINT_NET = 810, 2250


def lines(studio: StudioPeople, checkout_id: str) -> dict[str, int]:
    with tenant_context(studio.org.pk):
        return {line.kind: line.pk for line in CheckoutLine.objects.filter(checkout_id=checkout_id)}


def wallet(studio: StudioPeople, checkout_id: str) -> int:
    """The wallet the sale credited (its photographer's, in EUR)."""
    with tenant_context(studio.org.pk):
        owner = CheckoutLine.objects.filter(checkout_id=checkout_id).values_list("photographer_id", flat=True)[0]
        return LedgerAccount.objects.get(kind=LedgerAccount.Kind.WALLET, owner_id=owner).pk


def holds(studio: StudioPeople) -> dict[int, int]:
    with tenant_context(studio.org.pk):
        return wallet_refund_holds()


def balance(studio: StudioPeople, account_id: int) -> int:
    with system_context("test: wallet"):
        events = LedgerEvent.objects.filter(account_id=account_id)
        return sum(e.amount_minor if e.kind == "credit" else -e.amount_minor for e in events)


def test_a_whole_order_refund_holds_each_lines_net_until_it_lands_and_debits_just_that(
    studio: StudioPeople, sale: str
) -> None:
    # given: the studio refunds the whole order; the provider accepts it
    account = wallet(studio, sale)
    refund = submitted(studio, sale, None)
    # then: the wallet's share of it is held, line by line net of the fee
    assert holds(studio) == {account: DOWNLOAD_NET + PRINT_NET}
    # when: the refund lands
    confirmed(refund, sale)
    # then: nothing is held any more, and the landing debited exactly what was held
    assert holds(studio) == {}
    assert balance(studio, account) == 0


def test_an_item_refund_holds_its_own_lines_whether_asked_for_or_accepted(studio: StudioPeople, sale: str) -> None:
    # given: the studio refunds the print, not sent to the provider yet
    account, items = wallet(studio, sale), lines(studio, sale)
    refund = ask(studio, sale, [items["print"]])
    # then: the print's net is held, not the download's
    assert holds(studio) == {account: PRINT_NET}
    # when: the provider accepts it, then it lands
    confirmed(refund, sale)
    # then: the print's debit took what was held; the download's credit is free
    assert holds(studio) == {}
    assert balance(studio, account) == DOWNLOAD_NET


def test_a_refused_refund_or_one_failed_at_the_provider_holds_nothing(studio: StudioPeople, sale: str) -> None:
    # given: the print's refund refused by the provider
    items = lines(studio, sale)
    refund = ask(studio, sale, [items["print"]])
    refused(refund)
    # then: nothing is held (nothing will land)
    assert holds(studio) == {}
    # and: a refund the provider accepted and then reported failed before landing holds nothing
    other = submitted(studio, sale, [items["download"]])
    assert holds(studio) == {wallet(studio, sale): DOWNLOAD_NET}
    provider_says_failed(sale, other)
    assert holds(studio) == {}


def test_a_line_the_ledger_has_debited_already_holds_nothing(studio: StudioPeople, sale: str) -> None:
    # given: the whole order's refund asked for, and the print's refund debit already in the
    # ledger under the landing's key (a landing is keyed per line, so it debits it once)
    account, items = wallet(studio, sale), lines(studio, sale)
    ask(studio, sale, None)
    with tenant_context(studio.org.pk):
        ledger_entries_append(
            tenant=studio.org,
            entries=[
                EntryIn(
                    account_id=account,
                    amount_minor=PRINT_NET,
                    currency="EUR",
                    idempotency_key=f"refund:{sale}:{items['print']}",
                    kind="debit",
                )
            ],
        )
    # then: only the download's debit is still to come
    assert holds(studio) == {account: DOWNLOAD_NET}


def test_holds_are_by_wallet_and_limited_to_the_wallets_asked_about(
    studio: StudioPeople, sale: str, tenant_b: Any
) -> None:
    # given: a second sale by another photographer of the studio, both wholly refunded (asked for)
    shop = make_shop(org=studio.org, download_price=1000)
    other_sale = sold(studio, shop, {"product": shop.download.pk})
    ask(studio, sale, None)
    ask(studio, other_sale, None)
    first, second = wallet(studio, sale), wallet(studio, other_sale)
    # then: each wallet holds its own lines' share
    assert holds(studio) == {first: DOWNLOAD_NET + PRINT_NET, second: 900}
    # and: asked about one wallet (and one with nothing held), only it is answered
    with tenant_context(studio.org.pk):
        assert wallet_refund_holds(account_ids=[second, 10**12]) == {second: 900}
    # and: another studio sees none of it (RLS), the system context sees all
    with tenant_context(tenant_b.org.pk):
        assert wallet_refund_holds() == {}
    with system_context("test: every studio"):
        assert wallet_refund_holds(account_ids=[first]) == {first: DOWNLOAD_NET + PRINT_NET}
