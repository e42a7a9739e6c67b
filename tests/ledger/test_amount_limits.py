"""Totals at the limits: an account's debits cannot outgrow the projection's bigint columns, and
a partition whose events cannot be applied stalls alone, not every partition of its projector.

Reaching PostgreSQL's bigint (9.22e18 minor units) takes about 9.2 million debits at
MAX_AMOUNT_MINOR, minutes of batches for one API key; the tests start from a projected total near
the limit instead (written as the system)."""

from __future__ import annotations

import logging
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.ledger.partitioning import logical_partition
from apps.ledger.services import MAX_ACCOUNT_DEBITS_MINOR, MAX_AMOUNT_MINOR, EntryIn, ledger_entries_append
from apps.tenancy.context import system_context, tenant_context
from tests.factories.tenancy import OrganizationFactory
from tests.ledger.conftest import balances_by_account, debit, heads_and_checkpoints, make_account

pytestmark = pytest.mark.django_db(transaction=True)

BATCH = "/api/v1/ledger/debits/batch"
BIGINT_MAX = 2**63 - 1


def projected_debits_set_to(account, total: int) -> None:
    """Pretend the account was already debited `total` (its one projected balance row)."""
    with system_context("test: ledger limits"), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ledger_accountbalance SET debits_minor = %s, balance_minor = credits_minor - %s "
            "WHERE account_id = %s",
            [total, total, account.pk],
        )
        assert cursor.rowcount == 1


def partition_of(org) -> int:
    return logical_partition(tenant_id=org.pk, tenant_slug=org.slug, client_id="")


def test_a_partition_that_cannot_be_applied_does_not_stall_the_others(make_projector, caplog):
    # given: studio A's account projected at a total that one more debit takes past bigint
    # (posted before the limit below existed, say), and studio B's debit in another partition
    studio_a = OrganizationFactory()
    huge = make_account(studio_a)
    debit(studio_a, huge, 1)
    projector = make_projector()
    projector.catch_up()
    projected_debits_set_to(huge, BIGINT_MAX - 10)
    entry = EntryIn(account_id=huge.pk, amount_minor=11, currency="EUR", idempotency_key="over", kind="debit")
    with tenant_context(studio_a.pk):
        overflowing = ledger_entries_append(tenant=studio_a, entries=[entry]).items[0].partition
    studio_b = OrganizationFactory()
    while partition_of(studio_b) == overflowing:
        studio_b = OrganizationFactory()
    other = make_account(studio_b)
    debit(studio_b, other, 5)
    # when: the projector works
    with caplog.at_level(logging.ERROR, logger="darkroom.ledger.projector"):
        projector.catch_up()
    # then: B's debit is projected; A's partition waits at its checkpoint, reported as an error
    assert balances_by_account()[other.pk][1] == 5
    head, checkpoint = heads_and_checkpoints()[overflowing]
    assert checkpoint == head - 1
    assert any("cannot be applied" in r.getMessage() for r in caplog.records)


def test_the_api_refuses_debits_past_the_account_limit(tenant_a, make_projector):
    # given: an account projected at the limit less two maximal debits
    account = make_account(tenant_a.org)
    debit(tenant_a.org, account, 1)
    projector = make_projector()
    projector.catch_up()
    projected_debits_set_to(account, MAX_ACCOUNT_DEBITS_MINOR - 2 * MAX_AMOUNT_MINOR)
    client = tenant_a.client()

    def batch(*amounts: int, keys: list[str] | None = None):
        items = [
            {"account_id": account.pk, "amount_minor": amount, "currency": "EUR", "idempotency_key": key}
            for amount, key in zip(amounts, keys or [str(uuid.uuid4()) for _ in amounts], strict=True)
        ]
        return client.post(BATCH, {"items": items}, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))

    # when: one maximal debit is posted (not yet projected), then two more in one batch, then one
    first = batch(MAX_AMOUNT_MINOR, keys=["first"])
    too_many = batch(MAX_AMOUNT_MINOR, 1)
    last = batch(MAX_AMOUNT_MINOR)
    over = batch(1)
    retried = batch(MAX_AMOUNT_MINOR, keys=["first"])
    # then: debits up to the limit are taken, counting those the projector has not applied; a
    # debit past it is refused with nothing written; a retry of a taken debit is still a duplicate
    assert first.status_code == 201, first.content
    assert too_many.status_code == 422, too_many.content
    assert too_many.json()["type"].endswith("ledger-account-limit-reached")
    assert last.status_code == 201, last.content
    assert over.status_code == 422, over.content
    assert retried.status_code == 200, retried.content
    projector.catch_up()
    assert balances_by_account()[account.pk][1] == MAX_ACCOUNT_DEBITS_MINOR


def test_the_limit_leaves_room_inside_bigint():
    assert MAX_ACCOUNT_DEBITS_MINOR + 1000 * MAX_AMOUNT_MINOR * 100 < BIGINT_MAX


def test_a_projector_far_behind_does_not_make_every_debit_read_the_backlog(tenant_a):
    # given: a partition whose head is ten million events past its checkpoint (a projector down
    # for long: the bound "projected + pending x MAX_AMOUNT_MINOR" exceeds the limit everywhere)
    account = make_account(tenant_a.org)
    partition = debit(tenant_a.org, account, 1).items[0].partition
    with connection.cursor() as cursor:
        cursor.execute("UPDATE ledger_ledgerpartitionhead SET seq = seq + 10000000 WHERE partition = %s", [partition])
    # when: an account far from the limit is debited
    with CaptureQueriesContext(connection) as queries:
        result = debit(tenant_a.org, account, MAX_AMOUNT_MINOR)
    # then: taken, without reading the pending events one by one
    assert result.items[0].status == "created"
    assert not any("pending AS" in q["sql"] for q in queries.captured_queries)
