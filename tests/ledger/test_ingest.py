"""Appending events: one event per (account, idempotency key), gap-free sequences, refusals."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection, transaction

from apps.ledger.models import LedgerEvent, LedgerEventKey
from apps.ledger.partitioning import logical_partition
from apps.ledger.services import (
    CurrencyMismatch,
    EntryIn,
    InvalidAmount,
    KeyReused,
    UnknownAccount,
    ledger_debits_append,
)
from apps.tenancy.context import system_context, tenant_context
from tests.factories.tenancy import OrganizationFactory
from tests.ledger.conftest import debit, make_account, sequences_by_partition

pytestmark = pytest.mark.django_db(transaction=True)


def _count(model: type) -> int:
    with system_context("test: ledger count"):
        return model.objects.count()  # type: ignore[attr-defined]


def test_duplicate_idempotency_key_appends_one_event():
    # given: an account and a debit already appended under key K
    org = OrganizationFactory()
    account = make_account(org)
    first = debit(org, account, 250, key="K")
    # when: the same debit is appended again under K, then another amount under K
    second = debit(org, account, 250, key="K")
    with pytest.raises(KeyReused):
        debit(org, account, 999, key="K")
    # then: one event; the retry is reported as a duplicate of the first event, the other debit refused
    assert first.items[0].status == "created"
    assert (second.items[0].status, second.items[0].event_id) == ("duplicate", first.items[0].event_id)
    with tenant_context(org.pk):
        assert list(LedgerEvent.objects.values_list("amount_minor", flat=True)) == [250]
        assert LedgerEventKey.objects.count() == 1


def test_same_key_on_two_accounts_is_two_events():
    org = OrganizationFactory()
    a, b = make_account(org), make_account(org)
    debit(org, a, 1, key="K")
    debit(org, b, 2, key="K")
    assert _count(LedgerEvent) == 2


def test_batch_reports_duplicates_within_it_and_already_present():
    # given: key "old" is already in the ledger
    org = OrganizationFactory()
    account = make_account(org)
    debit(org, account, 5, key="old")
    entries = [
        EntryIn(account_id=account.pk, amount_minor=10, currency="EUR", idempotency_key="new-1"),
        EntryIn(account_id=account.pk, amount_minor=5, currency="EUR", idempotency_key="old"),
        EntryIn(account_id=account.pk, amount_minor=10, currency="EUR", idempotency_key="new-1"),
        EntryIn(account_id=account.pk, amount_minor=13, currency="EUR", idempotency_key="new-2"),
    ]
    # when
    with tenant_context(org.pk):
        result = ledger_debits_append(tenant=org, entries=entries)
    # then: two new events; the repeat in the batch and the old key are duplicates
    assert [i.status for i in result.items] == ["created", "duplicate", "duplicate", "created"]
    assert result.items[2].event_id == result.items[0].event_id
    with tenant_context(org.pk):
        assert sorted(LedgerEvent.objects.values_list("amount_minor", flat=True)) == [5, 10, 13]


def test_sequences_are_gap_free_per_partition_and_match_the_partition_of_the_tenant():
    # given: three tenants appending in turns
    orgs = [OrganizationFactory() for _ in range(3)]
    accounts = [make_account(o) for o in orgs]
    for _ in range(5):
        for org, account in zip(orgs, accounts, strict=True):
            debit(org, account, 1)
    # then: each partition's sequence is 1..n, and each tenant's events sit in its partition
    for seqs in sequences_by_partition().values():
        assert seqs == list(range(1, len(seqs) + 1))
    for org in orgs:
        with tenant_context(org.pk):
            partitions = set(LedgerEvent.objects.values_list("partition", flat=True))
        assert partitions == {logical_partition(tenant_id=org.pk, tenant_slug=org.slug, client_id="")}


def test_whale_tenant_spreads_over_partitions_by_client(settings):
    # given: a whale studio with many clients
    settings.LEDGER_PARTITIONS = 8
    org = OrganizationFactory(slug="whale-studio")
    settings.LEDGER_WHALE_TENANTS = ["whale-studio"]
    account = make_account(org)
    # when: 40 clients post debits to the same account
    for n in range(40):
        debit(org, account, 1, client_id=f"client-{n}")
    # then: the events spread over several partitions, by client
    with tenant_context(org.pk):
        by_client = dict(LedgerEvent.objects.values_list("client_id", "partition"))
    assert len(set(by_client.values())) > 1
    assert all(
        p == logical_partition(tenant_id=org.pk, tenant_slug=org.slug, client_id=c) for c, p in by_client.items()
    )


def test_debit_without_client_uses_the_account_client():
    org = OrganizationFactory()
    account = make_account(org, client_id="integrator-7")
    debit(org, account, 3)
    with tenant_context(org.pk):
        assert LedgerEvent.objects.get().client_id == "integrator-7"


@pytest.mark.parametrize("amount", [0, -5])
def test_non_positive_amount_is_refused_and_nothing_written(amount):
    org = OrganizationFactory()
    account = make_account(org)
    with pytest.raises(InvalidAmount):
        debit(org, account, amount)
    assert (_count(LedgerEvent), _count(LedgerEventKey)) == (0, 0)


def test_currency_mismatch_refuses_the_whole_batch():
    # given: a EUR account; a batch whose second item is in USD
    org = OrganizationFactory()
    account = make_account(org, currency="EUR")
    entries = [
        EntryIn(account_id=account.pk, amount_minor=1, currency="EUR", idempotency_key="a"),
        EntryIn(account_id=account.pk, amount_minor=1, currency="USD", idempotency_key="b"),
    ]
    # when / then: refused, naming the item, and nothing is written
    with tenant_context(org.pk), pytest.raises(CurrencyMismatch) as refused:
        ledger_debits_append(tenant=org, entries=entries)
    assert refused.value.extra == {"items": [1]}
    assert (_count(LedgerEvent), _count(LedgerEventKey)) == (0, 0)


def test_another_tenants_account_is_unknown_and_nothing_written():
    # given: tenant B's account
    a, b = OrganizationFactory(), OrganizationFactory()
    b_account = make_account(b)
    entry = EntryIn(account_id=b_account.pk, amount_minor=1, currency="EUR", idempotency_key=uuid.uuid4().hex)
    # when: tenant A debits it
    with tenant_context(a.pk), pytest.raises(UnknownAccount):
        ledger_debits_append(tenant=a, entries=[entry])
    # then
    assert _count(LedgerEvent) == 0


def test_event_key_guard_is_enforced_by_the_database():
    # given: an existing key row
    org = OrganizationFactory()
    account = make_account(org)
    debit(org, account, 1, key="dup")
    # when: a raw insert bypasses the service with the same (tenant, account, key)
    with tenant_context(org.pk), pytest.raises(Exception, match="ledger_eventkey_unique"):
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO ledger_ledgereventkey (tenant_id, account_id, idempotency_key, created_at) "
                "VALUES (%s, %s, 'dup', now())",
                [org.pk, account.pk],
            )


def test_event_constraints_refuse_bad_rows():
    org = OrganizationFactory()
    account = make_account(org)
    with tenant_context(org.pk), pytest.raises(Exception, match="ledger_event_amount_positive"):
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO ledger_ledgerevent (tenant_id, account_id, kind, amount_minor, currency, client_id, "
                "reference, idempotency_key, partition, seq) VALUES (%s, %s, 'debit', 0, 'EUR', '', '', 'x', 0, 1)",
                [org.pk, account.pk],
            )


def test_keys_and_references_with_quotes_backslashes_and_braces_round_trip():
    # given: values that need escaping inside array literals
    org = OrganizationFactory()
    account = make_account(org, client_id='c"1\\')
    odd_key = "we\"ird\\key,{x} 'q'"
    entry = EntryIn(account_id=account.pk, amount_minor=3, currency="EUR", idempotency_key=odd_key, reference='r,"}{\\')
    # when: appended twice
    with tenant_context(org.pk):
        first = ledger_debits_append(tenant=org, entries=[entry])
        second = ledger_debits_append(tenant=org, entries=[entry])
    # then: stored verbatim, and the repeat is recognised as a duplicate of it
    assert [first.items[0].status, second.items[0].status] == ["created", "duplicate"]
    with tenant_context(org.pk):
        event = LedgerEvent.objects.get()
    assert (event.idempotency_key, event.reference, event.client_id) == (odd_key, 'r,"}{\\', 'c"1\\')


def test_an_event_cannot_name_another_tenants_account():
    # given: tenant B's account, and a raw insert claiming it for tenant A
    a, b = OrganizationFactory(), OrganizationFactory()
    foreign = make_account(b)
    # then: the composite foreign key refuses it at commit
    with tenant_context(a.pk), pytest.raises(Exception, match="ledger_event_tenant_account_fk"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO ledger_ledgerevent (tenant_id, account_id, kind, amount_minor, currency, client_id, "
                "reference, idempotency_key, partition, seq) VALUES (%s, %s, 'debit', 1, 'EUR', '', '', 'x', 0, 1)",
                [a.pk, foreign.pk],
            )
