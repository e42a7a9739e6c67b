"""The Django admin shows money as people read it: "8.10 EUR", never the "810" it is stored as.

Found walking the admin as an operator: checkouts, their lines, payments, refunds, payouts,
ledger entries, balances and buffered debits listed and showed their `*_minor` columns as bare
integers (810 for 8.10 EUR, next to a separate currency column). Every page of a model with an
amount now shows it as amount and currency, right-aligned in lists and sorted by the stored
amount, and no page shows a `*_minor` field as it is stored.
"""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

import pytest
from django.contrib import admin
from django.db.models import Model
from django.test import Client
from django.utils import timezone

from apps.commerce.models import Checkout
from apps.ledger.models import LedgerArchivedTotal
from apps.ledger.projection import projection_rebuild
from apps.payments.providers.base import money_text
from apps.payouts.services import payout_batch_run
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.fixtures import empty_broker, row_lock_strategy  # noqa: F401 - fixtures, used by name
from tests.commerce.helpers import deliver, drain_outbox, sandbox_refunded
from tests.factories.commerce import make_shop
from tests.factories.tenancy import UserFactory
from tests.payouts.helpers import make_wallet
from tests.web.studio.conftest import StudioPeople, sold, studio  # noqa: F401 - a fixture, used by name

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]


def minor_fields(model: type[Model]) -> list[str]:
    return [field.name for field in model._meta.fields if field.name.endswith("_minor")]


MONEY_ADMINS = sorted(
    ((model, model_admin) for model, model_admin in admin.site._registry.items() if minor_fields(model)),
    key=lambda item: item[0]._meta.label,
)

_CELL = re.compile(r'<td class="field-(?P<name>\w+)[^"]*">(?P<text>.*?)</td>', re.S)
_READONLY = re.compile(
    r'<div class="form-row[^"]*?\bfield-(?P<name>\w+)[^"]*">.*?<div class="readonly">(?P<text>.*?)</div>', re.S
)
_TAGS = re.compile(r"<[^>]+>")


def plain(fragment: str) -> str:
    return html.unescape(_TAGS.sub("", fragment)).strip()


def cells(page: str) -> list[tuple[str, str]]:
    """(field name, text) of each cell of a list or a tabular inline."""
    return [(m["name"], plain(m["text"])) for m in _CELL.finditer(page)]


def readonly_rows(page: str) -> list[tuple[str, str]]:
    """(field name, text) of each read-only row of a detail page."""
    return [(m["name"], plain(m["text"])) for m in _READONLY.finditer(page)]


def currency_of(row: Model) -> str:
    return row.currency if hasattr(row, "currency") else row.account.currency  # type: ignore[attr-defined]


def money_of(row: Model) -> set[str]:
    """Each amount of `row` as the admin should show it."""
    return {money_text(getattr(row, name), currency_of(row)) for name in minor_fields(type(row))}


@pytest.fixture
def operator() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True, username="operator"))
    return client


@pytest.fixture
def money_rows(studio: StudioPeople, settings: Any) -> str:  # noqa: F811
    """A paid sale of one 8.10 EUR download, 3.00 EUR of it refunded at the provider; a wallet
    credited 25.00 EUR paid out; a debit and a buffered debit; an archived total; projections
    rebuilt. Returns the sale's checkout id."""
    shop = make_shop(org=studio.org, download_price=810)
    sale = sold(studio, shop, {"product": shop.download.pk})
    assert deliver([sandbox_refunded(sale, 300)]) == [200]
    drain_outbox()
    api = studio.bundle.client()

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = api.post(path, data=body, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))
        assert response.status_code in (200, 201, 202), response.content
        return response.json()

    account = post("/api/v1/ledger/accounts", {"currency": "EUR"})
    post("/api/v1/ledger/debits", {"account_id": account["id"], "amount_minor": 513, "currency": "EUR"})
    settings.LEDGER_DEGRADED_MODE = "on"
    post("/api/v1/ledger/debits", {"account_id": account["id"], "amount_minor": 717, "currency": "EUR"})
    settings.LEDGER_DEGRADED_MODE = "off"
    wallet = make_wallet(studio.org, credited=2500)
    with system_context("test: admin money"):
        projection_rebuild()
    assert payout_batch_run(trigger="admin money").payout_ids
    with tenant_context(studio.org.pk):
        LedgerArchivedTotal.objects.create(
            tenant=studio.org,
            account=wallet.account,
            partition=0,
            credits_minor=123456,
            debits_minor=7890,
            event_count=3,
            last_seq=3,
            archived_through=timezone.now(),
        )
    return sale


def test_the_checkouts_list_and_page_show_8_10_eur_not_810(money_rows: str, operator: Client) -> None:
    # when: the operator opens the checkouts list and the sale's page
    listing = operator.get("/admin/commerce/checkout/").content.decode()
    page = operator.get(f"/admin/commerce/checkout/{money_rows}/change/").content.decode()
    # then: the list's amount cell reads 8.10 EUR, and no cell reads 810
    assert ("amount_money", "8.10 EUR") in cells(listing)
    assert "810" not in [text for _, text in cells(listing)]
    # and: the page shows the amount as money, and its line (in the lines table) too
    assert ("amount_money", "8.10 EUR") in readonly_rows(page)
    assert ("amount_money", "8.10 EUR") in cells(page) and ("unit_amount_money", "8.10 EUR") in cells(page)
    assert "810" not in [text for _, text in readonly_rows(page) + cells(page)]


@pytest.mark.parametrize(("model", "model_admin"), MONEY_ADMINS, ids=[m._meta.label for m, _ in MONEY_ADMINS])
def test_no_admin_page_shows_an_amount_as_stored(
    money_rows: str, operator: Client, model: type[Model], model_admin: Any
) -> None:
    # given: rows of every model with an amount (`money_rows`)
    with system_context("test: admin money"):
        rows = list(model._default_manager.order_by("pk"))
        expected = set().union(*(money_of(row) for row in rows))
        first = rows[0]
        first_money = money_of(first)
    base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    # when: the operator opens the list and the first row's page
    listing = operator.get(base).content.decode()
    page = operator.get(f"{base}{first.pk}/change/").content.decode()
    # then: the list shows amounts as money, right-aligned, and no column of stored amounts
    money_cells = {text for name, text in cells(listing) if name.endswith("_money")}
    assert money_cells and money_cells <= expected, (money_cells, expected)
    assert [name for name, _ in cells(listing) if name.endswith("_minor")] == []
    assert re.search(r'\[class\*="_money"\][^{]*\{[^}]*text-align:\s*right', listing)
    # and: the row's page shows each of its amounts as money, none as stored
    shown = {text for name, text in readonly_rows(page) if name.endswith("_money")}
    assert shown == first_money
    assert [name for name, _ in readonly_rows(page) if name.endswith("_minor")] == []


def test_amount_columns_sort_by_the_stored_amount(money_rows: str, operator: Client) -> None:
    # given: a second, dearer checkout (the sale's is 8.10 EUR)
    with system_context("test"):
        sale = Checkout.objects.get(pk=money_rows)
    with tenant_context(sale.tenant_id):
        dearer = Checkout.objects.create(
            tenant_id=sale.tenant_id,
            email="b@example.test",
            provider="sandbox",
            status=Checkout.Status.EXPIRED,
            currency="EUR",
            amount_minor=12000,
            expires_at=timezone.now(),
        )
    # when: the operator sorts the checkouts by amount, up then down
    listing = operator.get("/admin/commerce/checkout/")
    column = listing.context["cl"].list_display.index("amount_money")
    up = operator.get("/admin/commerce/checkout/", {"o": str(column)}).context["cl"].result_list
    down = operator.get("/admin/commerce/checkout/", {"o": f"-{column}"}).context["cl"].result_list
    # then: the rows come in the order of their amounts (120.00 after 8.10, not as text)
    assert [c.pk for c in up] == [sale.pk, dearer.pk]
    assert [c.pk for c in down] == [dearer.pk, sale.pk]
