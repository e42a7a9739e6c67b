"""A debit's ledger key is an identifier the client chooses: printable characters only
(`identifier_problem`), taken as sent. A batch item's `idempotency_key` that is not is a 400
problem naming `items.<i>.idempotency_key`, and nothing is written; a single debit's key is the
request's Idempotency-Key header, which the protocol holds to printable ASCII before the view."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.ledger.conftest import make_account
from tests.ledger.test_api import BATCH, DEBITS, written

pytestmark = pytest.mark.django_db(transaction=True)

IDENTIFIER_REFUSED = "Only printable characters: no control, format or line-break characters."


def post(client, url: str, body: dict, *, key: str | None = None):
    return client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()))


def item(account, key: str) -> dict:
    return {"account_id": account.pk, "amount_minor": 10, "currency": "EUR", "idempotency_key": key}


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("k\x1b", IDENTIFIER_REFUSED),
        ("k\u202e", IDENTIFIER_REFUSED),
        ("k\x7f", IDENTIFIER_REFUSED),
        ("k\x85", IDENTIFIER_REFUSED),
        ("k\u200b", IDENTIFIER_REFUSED),
        ("k\u00a0", IDENTIFIER_REFUSED),
        ("k\n", IDENTIFIER_REFUSED),
        ("\tk", IDENTIFIER_REFUSED),
        ("k\x00", "Null characters are not allowed."),
        ("   ", "Not only spaces."),
    ],
    ids=["esc", "rlo", "del", "nel", "zwsp", "nbsp", "lf", "tab", "nul", "spaces"],
)
def test_a_batch_item_key_that_is_not_printable_is_refused_naming_the_item(tenant_a, key, message):
    # given: a batch whose second item's key holds an unprintable character (or only spaces)
    account = make_account(tenant_a.org)
    items = [item(account, "k0"), item(account, key)]
    # when
    response = post(tenant_a.client(), BATCH, {"items": items})
    # then: 400 problem naming that item's key, and nothing written (not even the first item)
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    assert response.json()["errors"] == {"items.1.idempotency_key": [message]}
    assert written() == (0, 0, 0)


def test_a_batch_item_key_with_a_lone_surrogate_is_a_malformed_body(tenant_a):
    # given: a key spelled with a lone UTF-16 surrogate (no UTF-8 for it)
    account = make_account(tenant_a.org)
    body = json.dumps({"items": [item(account, "k0"), item(account, "k\ud800")]})  # ASCII: "k\\ud800"
    # when
    response = tenant_a.client().post(
        BATCH, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4())
    )
    # then: the JSON parser refuses the body (before any field is read): 400, nothing written
    assert response.status_code == 400, response.content
    assert response.json()["type"] == "/problems/malformed-request"
    assert written() == (0, 0, 0)


def test_printable_keys_are_taken_as_sent(tenant_a):
    # given: keys with inner and surrounding spaces and non-ASCII letters, all printable
    account = make_account(tenant_a.org)
    keys = ["k1", "k1 ", " k1", "k 1", "clé-№1"]
    # when
    response = post(tenant_a.client(), BATCH, {"items": [item(account, key) for key in keys]})
    # then: five debits, each under the key it was sent with
    assert response.status_code == 201, response.content
    assert [i["idempotency_key"] for i in response.json()["items"]] == keys
    assert written() == (5, 5, 0)


@pytest.mark.parametrize(
    "header",
    ["k\x00", "k\x1b", "k\u202e", "k\ud800", "k\x7f", '"k\x1b"', "k\u00a0", "k\x85", "k\x1c", "\x0bk", "k\x0c"],
    ids=repr,
)
def test_an_idempotency_key_header_that_is_not_printable_ascii_never_reaches_the_ledger(tenant_a, header):
    # given: a single debit, whose ledger key is the request's Idempotency-Key header
    account = make_account(tenant_a.org)
    body = {"account_id": account.pk, "amount_minor": 10, "currency": "EUR"}
    # when: the header holds a control, format or non-ASCII character (the test client puts it
    # into the request as is: no HTTP parser in between to refuse it first)
    response = post(tenant_a.client(), DEBITS, body, key=header)
    # then: the protocol refuses it before the view: 400, nothing written (not the debit of a key
    # with the character trimmed off: "k\xa0" and "k" are two keys)
    assert response.status_code == 400, response.content
    assert response.json()["type"] == "/problems/idempotency-key-invalid"
    assert written() == (0, 0, 0)


def test_http_whitespace_around_the_idempotency_key_header_is_not_part_of_the_key(tenant_a):
    # given: a debit posted under " k1\t" (HTTP's optional whitespace around the value)
    account = make_account(tenant_a.org)
    body = {"account_id": account.pk, "amount_minor": 10, "currency": "EUR"}
    # when
    response = post(tenant_a.client(), DEBITS, body, key=" k1\t")
    # then: the ledger key is "k1"
    assert response.status_code == 201, response.content
    assert response.json()["idempotency_key"] == "k1"
