"""A row's page in the admin names the row as its fields show it: amounts as money ("30.60 EUR"),
below zero with the minus sign (U+2212) the studio uses.

Found walking the admin after amounts were shown as money in its columns and fields: the headings,
breadcrumbs and page titles (each row's `__str__`) still showed what is stored, so a payout's page
read "payout 01a2…: 3060 EUR (paid)" above "Amount: 30.60 EUR", a ledger entry "debit 3060 EUR on
1 (7:3)" and a price "download 900 EUR"; and an amount below zero read "-5.13 EUR", with a hyphen,
where the studio's wallet writes the minus sign.
"""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.db.models import Model
from django.test import Client

from apps.catalog.models import Price
from apps.ledger.models import AccountBalance, LedgerDebitBuffer, LedgerEvent
from apps.payouts.models import Payout
from apps.tenancy.context import system_context
from tests.commerce.fixtures import empty_broker, row_lock_strategy  # noqa: F401 - fixtures, used by name
from tests.core.test_admin_money import (  # noqa: F401 - fixtures, used by name
    MONEY_ADMINS,
    cells,
    minor_fields,
    money_rows,
    operator,
    readonly_rows,
)
from tests.web.studio.conftest import studio  # noqa: F401 - a fixture, used by name

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]

_TAGS = re.compile(r"<[^>]+>")


def text_of(fragment: str) -> str:
    return " ".join(html.unescape(_TAGS.sub(" ", fragment)).split())


def names_of_the_row(page: str) -> dict[str, str]:
    """Where a row's page names the row: its title, breadcrumbs and heading."""
    title = re.search(r"<title>(.*?)</title>", page, re.S)
    crumbs = re.search(r'<div class="breadcrumbs">(.*?)</div>', page, re.S)
    heading = re.search(r"<h2>(.*?)</h2>", page, re.S)
    assert title and crumbs and heading, "the page has no title, breadcrumbs or heading"
    return {"title": text_of(title[1]), "breadcrumbs": text_of(crumbs[1]), "heading": text_of(heading[1])}


def page_of(client: Client, row: Model) -> str:
    response = client.get(f"/admin/{row._meta.app_label}/{row._meta.model_name}/{row.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize(("model", "model_admin"), MONEY_ADMINS, ids=[m._meta.label for m, _ in MONEY_ADMINS])
def test_no_rows_page_names_it_with_an_amount_as_stored(
    money_rows: str,  # noqa: F811
    operator: Client,  # noqa: F811
    model: type[Model],
    model_admin: Any,
) -> None:
    # given: rows of every model with an amount (`money_rows`)
    with system_context("test: admin headings"):
        rows = list(model._default_manager.order_by("pk"))
    for row in rows:
        # when: the operator opens the row's page
        names = names_of_the_row(page_of(operator, row))
        # then: no amount of it is named as stored (810 for 8.10 EUR)
        for field in minor_fields(model):
            stored = getattr(row, field)
            if abs(stored) >= 10:  # (a small number may well be an id or a count)
                bare = re.compile(rf"(?<![\w.\-]){abs(stored)}(?![\w.])")
                assert not [where for where, text in names.items() if bare.search(text)], (field, names)


def test_a_payouts_ledger_entrys_buffered_debits_and_prices_page_names_its_amount_as_money(
    money_rows: str,  # noqa: F811
    operator: Client,  # noqa: F811
) -> None:
    # given: a payout of 25.00 EUR, the wallet's entries, a debit of 5.13 EUR, a buffered one of
    # 7.17 EUR and the shop's prices (a download at 8.10 EUR)
    with system_context("test: admin headings"):
        payout = Payout.objects.get()
        debit = LedgerEvent.objects.get(amount_minor=513)
        buffered = LedgerDebitBuffer.objects.get()
        download = Price.objects.get(amount_minor=810)
        a4 = Price.objects.get(size="A4")
    # when: the operator opens each one's page
    # then: its heading (and title and breadcrumbs) name the amount as money
    expected = {
        payout: f"payout {payout.pk}: 25.00 EUR (Pending)",
        debit: f"debit of 5.13 EUR on account {debit.account_id} ({debit.partition}:{debit.seq})",
        buffered: f"buffered debit of 7.17 EUR on account {buffered.account_id}",
        download: "download: 8.10 EUR",
        a4: "print A4: 25.00 EUR",
    }
    for row, named in expected.items():
        names = names_of_the_row(page_of(operator, row))
        assert names["heading"] == named, names
        assert named in names["title"] and named[:40] in names["breadcrumbs"], names


def test_an_account_below_zero_reads_with_the_minus_sign_on_its_page_and_in_the_list(
    money_rows: str,  # noqa: F811
    operator: Client,  # noqa: F811
) -> None:
    # given: an account debited 5.13 EUR (and nothing credited): its balance is below zero
    with system_context("test: admin headings"):
        balance = AccountBalance.objects.select_related("account").get(balance_minor=-513)
    # when: the operator opens the balances list and the balance's page
    listing = operator.get("/admin/ledger/accountbalance/").content.decode()
    page = page_of(operator, balance)
    # then: the balance reads "\u22125.13 EUR" (the minus sign), never with a hyphen
    assert ("balance_money", "\u22125.13 EUR") in cells(listing)
    assert ("balance_money", "\u22125.13 EUR") in readonly_rows(page)
    assert ("debits_money", "5.13 EUR") in readonly_rows(page)
    assert "-5.13" not in listing and "-5.13" not in page
    # and: the page's heading names the account and its balance so too
    assert names_of_the_row(page)["heading"] == (
        f"balance of account {balance.account_id} (partition {balance.partition}): \u22125.13 EUR"
    )
