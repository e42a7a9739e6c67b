"""Ledger API: accounts, debits (single and batch), projected balances; 4xx writes nothing; RLS."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from apps.ledger.models import LedgerAccount, LedgerDebitBuffer, LedgerEvent, LedgerEventKey
from apps.tenancy.context import system_context
from tests.factories.ledger import LedgerAccountFactory
from tests.factories.tenancy import MembershipFactory, UserFactory
from tests.ledger.conftest import credit, make_account

pytestmark = pytest.mark.django_db(transaction=True)

ACCOUNTS = "/api/v1/ledger/accounts"
DEBITS = "/api/v1/ledger/debits"
BATCH = "/api/v1/ledger/debits/batch"


def post(client, url: str, body: dict, *, key: str | None = None):
    return client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()))


def written() -> tuple[int, int, int]:
    with system_context("test: ledger api"):
        return LedgerEvent.objects.count(), LedgerEventKey.objects.count(), LedgerDebitBuffer.objects.count()


def test_create_and_list_accounts_only_shows_the_callers_studio(tenant_a, tenant_b):
    # given: an account of tenant B
    make_account(tenant_b.org, currency="USD")
    client = tenant_a.client()
    # when: tenant A creates one and lists
    created = post(client, ACCOUNTS, {"currency": "EUR", "client_id": "pos-1"})
    listed = client.get(ACCOUNTS)
    # then: A sees exactly its own account, with a zero projected balance
    assert created.status_code == 201, created.content
    assert created.json()["kind"] == "usage" and created.json()["client_id"] == "pos-1"
    body = listed.json()
    assert listed.status_code == 200
    assert body["count"] == 1
    assert body["results"][0]["id"] == created.json()["id"]
    assert body["results"][0]["balance_minor"] == 0


@pytest.mark.parametrize(
    "body",
    [{"currency": "eur"}, {"currency": "XYZ"}, {"currency": "EUR", "kind": "wallet"}, {"currency": "EUR", "x": 1}],
)
def test_account_create_refuses_bad_input(tenant_a, body):
    response = post(tenant_a.client(), ACCOUNTS, body)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/problem+json")
    with system_context("test: ledger api"):
        assert LedgerAccount.objects.count() == 0


def test_debit_then_projected_balance_sequence_and_lag(tenant_a, make_projector):
    # given: an account and two debits posted over HTTP
    account = make_account(tenant_a.org)
    client = tenant_a.client()
    first = post(client, DEBITS, {"account_id": account.pk, "amount_minor": 250, "currency": "EUR"})
    second = post(client, DEBITS, {"account_id": account.pk, "amount_minor": 100, "currency": "EUR", "reference": "r"})
    assert (first.status_code, second.status_code) == (201, 201), first.content
    assert first.json()["status"] == "created" and second.json()["sequence"] == first.json()["sequence"] + 1
    # when: the projector catches up
    make_projector().catch_up()
    detail = client.get(f"{ACCOUNTS}/{account.pk}")
    # then: the balance, the sequence it reflects and the lag are reported
    body = detail.json()
    assert detail.status_code == 200
    assert (body["balance_minor"], body["debits_minor"], body["event_count"]) == (-350, 350, 2)
    assert body["lag_seconds"] == 0
    assert body["projection"] == [
        {"partition": first.json()["partition"], "sequence": second.json()["sequence"], "lag_seconds": 0.0}
    ]


def test_detail_reports_lag_before_projection(tenant_a):
    account = make_account(tenant_a.org)
    client = tenant_a.client()
    post(client, DEBITS, {"account_id": account.pk, "amount_minor": 5, "currency": "EUR"})
    body = client.get(f"{ACCOUNTS}/{account.pk}").json()
    assert body["balance_minor"] == 0 and body["event_count"] == 0
    assert body["lag_seconds"] > 0
    assert body["projection"][0]["sequence"] == 0


def test_replayed_request_key_debits_once(tenant_a):
    account = make_account(tenant_a.org)
    client = tenant_a.client()
    body = {"account_id": account.pk, "amount_minor": 7, "currency": "EUR"}
    first = post(client, DEBITS, body, key="same-key")
    again = post(client, DEBITS, body, key="same-key")
    assert first.status_code == 201
    assert again.status_code in (200, 201)
    assert again.json()["event_id"] == first.json()["event_id"]
    assert written()[0] == 1


def test_batch_with_duplicates_reports_them(tenant_a):
    # given: key "k1" already debited
    account = make_account(tenant_a.org)
    client = tenant_a.client()
    items = [{"account_id": account.pk, "amount_minor": 1, "currency": "EUR", "idempotency_key": "k1"}]
    assert post(client, BATCH, {"items": items}).status_code == 201
    # when: a batch repeats k1 and has k2 twice
    items = [
        {"account_id": account.pk, "amount_minor": 1, "currency": "EUR", "idempotency_key": "k1"},
        {"account_id": account.pk, "amount_minor": 2, "currency": "EUR", "idempotency_key": "k2"},
        {"account_id": account.pk, "amount_minor": 2, "currency": "EUR", "idempotency_key": "k2"},
    ]
    response = post(client, BATCH, {"items": items})
    # then: one new event; the others are reported as duplicates
    body = response.json()
    assert response.status_code == 201
    assert (body["created"], body["duplicates"]) == (1, 2)
    assert [i["status"] for i in body["items"]] == ["duplicate", "created", "duplicate"]
    assert written()[0] == 2


def test_batch_of_only_duplicates_is_200(tenant_a):
    account = make_account(tenant_a.org)
    client = tenant_a.client()
    items = [{"account_id": account.pk, "amount_minor": 1, "currency": "EUR", "idempotency_key": "k1"}]
    post(client, BATCH, {"items": items})
    assert post(client, BATCH, {"items": items}).status_code == 200


BAD_SINGLE = [
    ({"amount_minor": 0}, 400),
    ({"amount_minor": -3}, 400),
    ({"amount_minor": 1.5}, 400),
    ({"currency": "USD"}, 422),
    ({"account_id": 999_999_999}, 422),
    ({"surprise": True}, 400),
]


@pytest.mark.parametrize(("change", "status"), BAD_SINGLE)
def test_bad_single_debit_is_a_problem_and_writes_nothing(tenant_a, change, status):
    account = make_account(tenant_a.org)
    body = {"account_id": account.pk, "amount_minor": 10, "currency": "EUR", **change}
    response = post(tenant_a.client(), DEBITS, body)
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    assert written() == (0, 0, 0)


def test_one_bad_item_refuses_the_whole_batch(tenant_a):
    account = make_account(tenant_a.org)
    items = [
        {"account_id": account.pk, "amount_minor": 1, "currency": "EUR", "idempotency_key": f"k{n}"} for n in range(5)
    ]
    items[3]["currency"] = "GBP"
    response = post(tenant_a.client(), BATCH, {"items": items})
    assert response.status_code == 422
    assert response.json()["items"] == [3]
    assert written() == (0, 0, 0)


def test_batch_over_the_limit_is_refused(tenant_a):
    account = make_account(tenant_a.org)
    items = [
        {"account_id": account.pk, "amount_minor": 1, "currency": "EUR", "idempotency_key": f"k{n}"}
        for n in range(1001)
    ]
    response = post(tenant_a.client(), BATCH, {"items": items})
    assert response.status_code in (400, 413)
    assert written() == (0, 0, 0)


def test_other_tenants_account_is_invisible(tenant_a, tenant_b):
    # given: an account of tenant B
    foreign = make_account(tenant_b.org)
    client = tenant_a.client()
    # when: tenant A reads it, debits it, or batches onto it
    detail = client.get(f"{ACCOUNTS}/{foreign.pk}")
    single = post(client, DEBITS, {"account_id": foreign.pk, "amount_minor": 1, "currency": "EUR"})
    batch = post(
        client,
        BATCH,
        {"items": [{"account_id": foreign.pk, "amount_minor": 1, "currency": "EUR", "idempotency_key": "x"}]},
    )
    # then: not found / unknown account, and nothing written
    assert (detail.status_code, single.status_code, batch.status_code) == (404, 422, 422)
    assert written() == (0, 0, 0)


def test_degraded_mode_accepts_into_the_buffer(tenant_a, settings):
    settings.LEDGER_DEGRADED_MODE = "on"
    account = make_account(tenant_a.org)
    client = tenant_a.client()
    single = post(client, DEBITS, {"account_id": account.pk, "amount_minor": 3, "currency": "EUR"})
    batch = post(
        client,
        BATCH,
        {"items": [{"account_id": account.pk, "amount_minor": 4, "currency": "EUR", "idempotency_key": "b1"}]},
    )
    assert (single.status_code, batch.status_code) == (202, 202)
    assert single.json()["status"] == "buffered" and batch.json()["buffered"] == 1
    assert written() == (0, 0, 2)


def signed_in(tenant, role: str):
    """A member of `tenant` with `role`, and an API client signed in as them (session auth)."""
    user = UserFactory()
    MembershipFactory(tenant=tenant, user=user, role=role)
    client = APIClient()
    client.force_login(user)
    return user, client


def wallet_of(tenant, user, *, currency: str = "EUR") -> LedgerAccount:
    return LedgerAccountFactory(tenant=tenant, kind=LedgerAccount.Kind.WALLET, owner=user, currency=currency)


def test_debits_need_an_ingest_role(tenant_a):
    # given: a photographer member of the studio, signed in
    _, client = signed_in(tenant_a.org, "photographer")
    account = make_account(tenant_a.org)
    # when: they post a debit
    response = post(client, DEBITS, {"account_id": account.pk, "amount_minor": 1, "currency": "EUR"})
    # then: forbidden, nothing written
    assert response.status_code == 403
    assert written() == (0, 0, 0)


@pytest.mark.parametrize("role", ["photographer", "staff"])
def test_a_member_without_the_money_role_lists_only_their_own_wallets(tenant_a, role):
    # given: the owner's wallet, another photographer's wallet, a usage account, and the member's own wallets
    member, client = signed_in(tenant_a.org, role)
    colleague, _ = signed_in(tenant_a.org, "photographer")
    wallet_of(tenant_a.org, tenant_a.owner)
    wallet_of(tenant_a.org, colleague)
    make_account(tenant_a.org, client_id="pos-1")
    own = [wallet_of(tenant_a.org, member), wallet_of(tenant_a.org, member, currency="USD")]
    # when: the member lists the studio's accounts
    response = client.get(ACCOUNTS)
    # then: only their own wallets, with their balances
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 2
    assert [row["id"] for row in body["results"]] == [a.pk for a in own]
    assert {row["kind"] for row in body["results"]} == {"wallet"}


@pytest.mark.parametrize("role", ["photographer", "staff"])
def test_a_member_without_the_money_role_reads_no_account_but_their_own(tenant_a, tenant_b, role):
    # given: the owner's wallet, another photographer's wallet, a usage account, another studio's
    # account and the member's own wallet
    member, client = signed_in(tenant_a.org, role)
    colleague, _ = signed_in(tenant_a.org, "photographer")
    others = [
        wallet_of(tenant_a.org, tenant_a.owner),
        wallet_of(tenant_a.org, colleague),
        make_account(tenant_a.org, client_id="pos-1"),
        make_account(tenant_b.org),
    ]
    own = wallet_of(tenant_a.org, member)
    credit(tenant_a.org, others[0], 700)
    # when: the member reads each of them
    statuses = [client.get(f"{ACCOUNTS}/{account.pk}").status_code for account in others]
    mine = client.get(f"{ACCOUNTS}/{own.pk}")
    # then: every account but their own is not found (no balance, credits or debits shown)
    assert statuses == [404, 404, 404, 404]
    assert mine.status_code == 200 and mine.json()["id"] == own.pk


@pytest.mark.parametrize("caller", ["owner", "api_key"])
def test_the_owner_and_api_keys_read_every_account_of_the_studio(tenant_a, tenant_b, caller):
    # given: the owner's and a photographer's wallets, a usage account, and another studio's account
    photographer, _ = signed_in(tenant_a.org, "photographer")
    accounts = [
        wallet_of(tenant_a.org, tenant_a.owner),
        wallet_of(tenant_a.org, photographer),
        make_account(tenant_a.org, client_id="pos-1"),
    ]
    foreign = make_account(tenant_b.org)
    if caller == "owner":
        client = APIClient()
        client.force_login(tenant_a.owner)
    else:
        client = tenant_a.client()
    # when: they list the accounts and read each one
    listed = client.get(ACCOUNTS)
    details = [client.get(f"{ACCOUNTS}/{account.pk}") for account in accounts]
    other_studio = client.get(f"{ACCOUNTS}/{foreign.pk}")
    # then: every account of the studio, and 404 for the other studio's
    assert listed.status_code == 200
    assert [row["id"] for row in listed.json()["results"]] == [a.pk for a in accounts]
    assert [d.status_code for d in details] == [200, 200, 200]
    assert other_studio.status_code == 404
