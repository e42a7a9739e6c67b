"""A ledger account's `client_id` is an identifier (it routes a whale's debits to a partition and
names the client on statements): printable characters only. A debit's `reference` is one line of
free text. Either with a control, format or other unprintable character is a 400 problem naming
the field, and nothing is written."""

from __future__ import annotations

import uuid

import pytest

from apps.core.text import identifier_problem
from apps.ledger.models import LedgerAccount
from apps.tenancy.context import system_context
from tests.ledger.conftest import make_account
from tests.ledger.test_api import ACCOUNTS, BATCH, DEBITS, written

pytestmark = pytest.mark.django_db(transaction=True)

# The last two: nothing but whitespace.
REFUSED_CLIENT_IDS = [
    "pos\x11",
    "pos\x00",
    "pos\x851",
    "pos\u202e1",
    "pos\u200b1",
    "pos\u00a01",
    "pos\n1",
    "\u2028",
    "   ",
]
IDENTIFIER_REFUSED = "Only printable characters: no control, format or line-break characters."


def post(client, url: str, body: dict):
    return client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("pos-1", ""),
        ("Café Nord / till 2", ""),
        ("", ""),
        ("pos\x11", IDENTIFIER_REFUSED),
        ("pos\u202e1", IDENTIFIER_REFUSED),
        ("pos\ud800", IDENTIFIER_REFUSED),
        (" ", "Not only spaces."),
        ("x" * 21, "At most 20 characters."),
    ],
)
def test_identifier_problem(value: str, problem: str) -> None:
    assert identifier_problem(value, max_length=20) == problem


@pytest.mark.parametrize("client_id", REFUSED_CLIENT_IDS)
def test_an_account_with_an_unprintable_or_blank_looking_client_id_is_refused(tenant_a, client_id):
    response = post(tenant_a.client(), ACCOUNTS, {"currency": "EUR", "client_id": client_id})
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    assert list(response.json()["errors"]) == ["client_id"]
    with system_context("test: ledger api"):
        assert LedgerAccount.objects.count() == 0


@pytest.mark.parametrize(
    ("field", "value"), [("client_id", "pos\x11"), ("client_id", "pos\u202e1"), ("reference", "inv\x1b42")]
)
def test_a_debit_with_an_unprintable_client_id_or_reference_is_refused(tenant_a, field, value):
    account = make_account(tenant_a.org)
    item = {"account_id": account.pk, "amount_minor": 10, "currency": "EUR", field: value}
    single = post(tenant_a.client(), DEBITS, item)
    assert single.status_code == 400, single.content
    assert list(single.json()["errors"]) == [field]
    items = [{**item, field: "ok", "idempotency_key": "k0"}, {**item, "idempotency_key": "k1"}]
    batch = post(tenant_a.client(), BATCH, {"items": items})
    assert batch.status_code == 400, batch.content
    assert list(batch.json()["errors"]) == [f"items.1.{field}"]
    assert written() == (0, 0, 0)


def test_printable_client_ids_and_references_are_taken(tenant_a):
    created = post(tenant_a.client(), ACCOUNTS, {"currency": "EUR", "client_id": "Café Nord / till 2"})
    assert created.status_code == 201, created.content
    debit = {"account_id": created.json()["id"], "amount_minor": 10, "currency": "EUR", "reference": "Invoice №42"}
    assert post(tenant_a.client(), DEBITS, debit).status_code == 201
