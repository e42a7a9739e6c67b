"""Client ids and batch keys the rule of identifiers (`identifier_problem`) now refuses may have been
stored before it existed. Where a client sends one to match a stored row, it must still be heard:
a retried debit is answered as the duplicate it is, and a debit may name its account's own client
id. Anything else breaking the rule stays a 400 naming the field. The stored rows are written
here directly (through the ledger's service, past the API's rule), as the earlier code did."""

from __future__ import annotations

import uuid

import pytest

from apps.ledger.models import LedgerAccount, LedgerEvent
from apps.tenancy.context import system_context
from tests.ledger.conftest import debit, make_account
from tests.ledger.test_api import ACCOUNTS, BATCH, DEBITS, written

pytestmark = pytest.mark.django_db(transaction=True)

STORED_CLIENT_ID = "pos\u00a01"  # a no-break space: accepted before the rule
STORED_TILL = "till\u202e2"  # a text-direction override
IDENTIFIER_REFUSED = "Only printable characters: no control, format or line-break characters."


def post(client, url: str, body: dict, *, key: str | None = None):
    return client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()))


def body(account, **extra: object) -> dict:
    return {"account_id": account.pk, "amount_minor": 10, "currency": "EUR", **extra}


def client_ids() -> list[str]:
    with system_context("test: ledger api"):
        return list(LedgerEvent.objects.order_by("id").values_list("client_id", flat=True))


def test_a_retried_batch_debit_with_a_client_id_stored_before_the_rule_is_a_duplicate(tenant_a):
    # given: a debit stored before the rule, naming a client id the rule now refuses
    account = make_account(tenant_a.org)
    debit(tenant_a.org, account, 10, key="d1", client_id=STORED_TILL)
    # when: the client retries its batch (under a new request key: the first answer was lost)
    response = post(tenant_a.client(), BATCH, {"items": [body(account, idempotency_key="d1", client_id=STORED_TILL)]})
    # then: the duplicate it is, and still one debit
    assert response.status_code == 200, response.content
    assert response.json()["items"][0]["status"] == "duplicate"
    assert written() == (1, 1, 0)


def test_a_retried_single_debit_with_a_client_id_stored_before_the_rule_is_a_duplicate(tenant_a):
    # given: a debit stored before the rule under ledger key "hdr-1", with a client id now refused
    account = make_account(tenant_a.org)
    debit(tenant_a.org, account, 10, key="hdr-1", client_id=STORED_TILL)
    # when: a caller posts it again with that Idempotency-Key (no stored request: the view runs)
    response = post(tenant_a.client(), DEBITS, body(account, client_id=STORED_TILL), key="hdr-1")
    # then: 200 duplicate, one debit
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "duplicate"
    assert written() == (1, 1, 0)


def test_a_debit_may_name_its_accounts_client_id_stored_before_the_rule(tenant_a):
    # given: an account whose client id was stored before the rule
    account = make_account(tenant_a.org, client_id=STORED_CLIENT_ID)
    # when: new debits name that client id, single and in a batch
    single = post(tenant_a.client(), DEBITS, body(account, client_id=STORED_CLIENT_ID))
    batch = post(tenant_a.client(), BATCH, {"items": [body(account, idempotency_key="b1", client_id=STORED_CLIENT_ID)]})
    # then: both are debited under it
    assert (single.status_code, batch.status_code) == (201, 201), (single.content, batch.content)
    assert client_ids() == [STORED_CLIENT_ID, STORED_CLIENT_ID]


def test_a_batch_item_key_stored_before_the_rule_is_a_duplicate_when_retried(tenant_a):
    # given: batch debits stored under keys the rule now refuses (a control character, only spaces)
    account = make_account(tenant_a.org)
    debit(tenant_a.org, account, 10, key="k\x1b")
    debit(tenant_a.org, account, 10, key="   ")
    # when: the client retries them
    items = [body(account, idempotency_key="k\x1b"), body(account, idempotency_key="   ")]
    response = post(tenant_a.client(), BATCH, {"items": items})
    # then: both are duplicates, nothing new
    assert response.status_code == 200, response.content
    assert [i["status"] for i in response.json()["items"]] == ["duplicate", "duplicate"]
    assert written() == (2, 2, 0)


def test_what_no_stored_row_holds_is_still_refused(tenant_a, tenant_b):
    # given: stored before the rule: an account's client id, a debit's key and client id, and
    # another studio's account with the same client id
    account = make_account(tenant_a.org, client_id=STORED_CLIENT_ID)
    other = make_account(tenant_a.org)
    debit(tenant_a.org, account, 10, key="d1", client_id=STORED_TILL)
    debit(tenant_a.org, account, 10, key="k\x1b")
    make_account(tenant_b.org, client_id="pos\u00a09")
    items = [
        body(account, idempotency_key="d1", client_id="till\u202e3"),  # a retry naming another client
        body(other, idempotency_key="k\x1b"),  # the key is the other account's
        body(other, idempotency_key="n1", client_id=STORED_CLIENT_ID),  # the client id is the other account's
        body(account, idempotency_key="n2", client_id="pos\u00a09"),  # another studio's
    ]
    # when
    response = post(tenant_a.client(), BATCH, {"items": items})
    # then: a 400 naming each, nothing written
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {
        "items.0.client_id": [IDENTIFIER_REFUSED],
        "items.1.idempotency_key": [IDENTIFIER_REFUSED],
        "items.2.client_id": [IDENTIFIER_REFUSED],
        "items.3.client_id": [IDENTIFIER_REFUSED],
    }
    assert written() == (2, 2, 0)


def test_a_retried_account_creation_is_replayed_and_a_new_one_refused(tenant_a, monkeypatch):
    # given: an account created through the API before the rule existed (switched off for that
    # request), under request key K
    client, key = tenant_a.client(), str(uuid.uuid4())
    with monkeypatch.context() as earlier_code:
        earlier_code.setattr("apps.core.serializers.identifier_problem", lambda value, *, max_length: "")
        first = post(client, ACCOUNTS, {"currency": "EUR", "client_id": STORED_CLIENT_ID}, key=key)
    assert first.status_code == 201, first.content
    # when: the client retries it, then asks for another account with that client id
    retried = post(client, ACCOUNTS, {"currency": "EUR", "client_id": STORED_CLIENT_ID}, key=key)
    another = post(client, ACCOUNTS, {"currency": "EUR", "client_id": STORED_CLIENT_ID})
    # then: the retry is answered with the stored response (the protocol replays it before any
    # field is read); accounts are not matched by client id, so a new one is a new account, held
    # to the rule
    assert retried.status_code == 201 and retried["Idempotent-Replayed"] == "true"
    assert retried.content == first.content
    assert another.status_code == 400 and list(another.json()["errors"]) == ["client_id"]
    with system_context("test: ledger api"):
        assert LedgerAccount.objects.count() == 1
