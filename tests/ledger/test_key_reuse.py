"""A ledger idempotency key names one debit: reused for another debit it is refused, never
answered as a duplicate of the first (which would drop the second debit silently).

The HTTP Idempotency-Key protocol answers 422 for a key reused with another body only within its
retention and only for the caller that stored it; the ledger's own key (per account, kept forever)
is what still stands after that, for another caller of the studio, and between the items of a
batch."""

from __future__ import annotations

import datetime as dt
import uuid
from unittest import mock

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.ledger.models import LedgerEvent
from apps.ledger.services import EntryIn, KeyReused, ledger_debits_append
from apps.tenancy.context import system_context, tenant_context
from tests.factories.tenancy import OrganizationFactory
from tests.fixtures import wait_until_blocked
from tests.ledger.conftest import UncommittedAppend, WaitingAppend, debit, make_account

pytestmark = pytest.mark.django_db(transaction=True)

DEBITS = "/api/v1/ledger/debits"
BATCH = "/api/v1/ledger/debits/batch"


def post(client, url: str, body: dict, *, key: str | None = None):
    return client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()))


def debit_body(account, amount: int, **extra: object) -> dict:
    return {"account_id": account.pk, "amount_minor": amount, "currency": "EUR", **extra}


def debited(account) -> list[int]:
    with system_context("test: ledger key reuse"):
        return sorted(LedgerEvent.objects.filter(account_id=account.pk).values_list("amount_minor", flat=True))


def owner_client(tenant) -> APIClient:
    client = APIClient()
    client.force_login(tenant.owner)
    return client


def test_a_key_reused_for_another_amount_after_the_request_key_expired_is_refused(tenant_a):
    # given: key K debited 100 three days and an hour ago (its request key is past retention)
    account = make_account(tenant_a.org)
    client = tenant_a.client()
    assert post(client, DEBITS, debit_body(account, 100), key="K").status_code == 201
    later = timezone.now() + dt.timedelta(hours=73)
    # when: K is used again for 500
    with mock.patch("django.utils.timezone.now", return_value=later):
        response = post(client, DEBITS, debit_body(account, 500), key="K")
    # then: refused as a reused key (not "already debited"), and the ledger holds the first debit only
    assert response.status_code == 422, response.content
    assert response.json()["type"].endswith("ledger-idempotency-key-reused")
    assert debited(account) == [100]


def test_the_same_debit_retried_after_the_request_key_expired_is_still_a_duplicate(tenant_a):
    account = make_account(tenant_a.org)
    client = tenant_a.client()
    body = {"account_id": account.pk, "amount_minor": 100, "currency": "EUR", "reference": "inv-1"}
    first = post(client, DEBITS, body, key="K")
    with mock.patch("django.utils.timezone.now", return_value=timezone.now() + dt.timedelta(hours=73)):
        again = post(client, DEBITS, body, key="K")
    assert (first.status_code, again.status_code) == (201, 200), again.content
    assert again.json()["status"] == "duplicate" and again.json()["event_id"] == first.json()["event_id"]
    assert debited(account) == [100]


def test_another_caller_of_the_studio_reusing_a_key_for_another_debit_is_refused(tenant_a):
    # given: the studio's API key debited 100 under K
    account = make_account(tenant_a.org)
    assert post(tenant_a.client(), DEBITS, debit_body(account, 100), key="K").status_code == 201
    # when: the owner, signed in (their own request-key space), debits 100 with another reference under K
    response = post(owner_client(tenant_a), DEBITS, debit_body(account, 100, reference="other"), key="K")
    # then: 422, nothing added
    assert response.status_code == 422, response.content
    assert debited(account) == [100]


def test_batch_items_sharing_a_key_with_different_amounts_refuse_the_batch(tenant_a):
    account = make_account(tenant_a.org)
    items = [
        debit_body(account, 1, idempotency_key="k1"),
        debit_body(account, 2, idempotency_key="k2"),
        debit_body(account, 9, idempotency_key="k1"),
    ]
    response = post(tenant_a.client(), BATCH, {"items": items})
    assert response.status_code == 422, response.content
    assert response.json()["items"] == [2]
    assert debited(account) == []


def test_a_batch_item_reusing_a_stored_key_for_another_amount_refuses_the_batch(tenant_a):
    account = make_account(tenant_a.org)
    client = tenant_a.client()
    item = debit_body(account, 1, idempotency_key="k1")
    assert post(client, BATCH, {"items": [item]}).status_code == 201
    fresh = {**item, "idempotency_key": "k2"}
    response = post(client, BATCH, {"items": [fresh, {**item, "amount_minor": 7}]})
    assert response.status_code == 422, response.content
    assert response.json()["items"] == [1]
    assert debited(account) == [1]


def test_degraded_mode_refuses_a_reused_key_at_intake(tenant_a, settings):
    # given: K debited 100 in the ledger; the ledger then runs degraded (intake into the buffer)
    account = make_account(tenant_a.org)
    client = tenant_a.client()
    assert post(client, DEBITS, debit_body(account, 100), key="K").status_code == 201
    settings.LEDGER_DEGRADED_MODE = "on"
    item = debit_body(account, 5, idempotency_key="K")
    # when: a batch reuses K for 5, or holds one key twice with different amounts
    reused = post(client, BATCH, {"items": [item]})
    same_key = [{**item, "idempotency_key": "x"}, {**item, "idempotency_key": "x", "amount_minor": 6}]
    twice = post(client, BATCH, {"items": same_key})
    # then: both are refused at intake (the drain would have dropped the second debit of each)
    assert (reused.status_code, twice.status_code) == (422, 422), (reused.content, twice.content)


def test_the_service_refuses_reuse_but_internal_appends_keep_their_own_rules(tenant_a):
    account = make_account(tenant_a.org)
    entry = EntryIn(account_id=account.pk, amount_minor=3, currency="EUR", idempotency_key="svc")
    with tenant_context(tenant_a.org.pk):
        ledger_debits_append(tenant=tenant_a.org, entries=[entry])
        with pytest.raises(KeyReused):
            ledger_debits_append(tenant=tenant_a.org, entries=[EntryIn(**{**entry.__dict__, "amount_minor": 4})])
        assert ledger_debits_append(tenant=tenant_a.org, entries=[entry]).items[0].status == "duplicate"
    assert debited(account) == [3]


def test_batch_item_keys_are_taken_as_sent_not_trimmed(tenant_a):
    # given: two items whose keys differ only by a trailing space (two keys, two debits)
    account = make_account(tenant_a.org)
    items = [debit_body(account, 1, idempotency_key="k1"), debit_body(account, 1, idempotency_key="k1 ")]
    # when
    response = post(tenant_a.client(), BATCH, {"items": items})
    # then: both are debited, each reported under the key it was sent with
    assert response.status_code == 201, response.content
    assert [i["idempotency_key"] for i in response.json()["items"]] == ["k1", "k1 "]
    assert [i["status"] for i in response.json()["items"]] == ["created", "created"]
    assert debited(account) == [1, 1]


def test_a_concurrent_debit_under_the_same_key_waits_and_is_then_refused():
    # given: writer 1 appended 1 under K and has not committed yet
    org = OrganizationFactory()
    account = make_account(org)
    first = UncommittedAppend(org, lambda: debit(org, account, 1, key="K"))
    first.start()
    assert first.appended.wait(timeout=30)
    # when: writer 2 appends 2 under K (another caller: no request-key lock in common)
    second = WaitingAppend(lambda: debit(org, account, 2, key="K"), refused=KeyReused)
    second.start()
    wait_until_blocked(second.pids, second, "writer 2")
    first.commit()
    second.join(timeout=30)
    # then: it waited for writer 1's key, saw its debit, and was refused; one debit of 1
    assert isinstance(second.result, KeyReused)
    assert debited(account) == [1]
