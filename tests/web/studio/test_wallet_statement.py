"""A photographer's wallet history: every entry reachable in keyset pages, and the whole statement
as a CSV download that holds only their own entries."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.ledger.models import LedgerAccount
from apps.ledger.services import EntryIn, ledger_entries_append
from apps.tenancy.context import tenant_context
from tests.payouts.helpers import Wallet, make_wallet
from tests.web.studio.conftest import StudioPeople, signed_in, text

pytestmark = pytest.mark.django_db

OLDER_LINK = re.compile(r'href="\?entries_older_than=(\d+)#entries"')


def append(
    wallet: Wallet,
    *,
    count: int,
    start: int = 1,
    kind: str = "credit",
    reference: str = "",
    at: datetime | None = None,
) -> None:
    """`count` entries, one append each (so ids follow `n`); with `at`, all at that instant, so the
    pages must break the ties by id."""
    for n in range(start, start + count):
        entry = EntryIn(
            account_id=wallet.account.pk,
            amount_minor=100 + n,
            currency="EUR",
            idempotency_key=uuid.uuid4().hex,
            kind=kind,  # type: ignore[arg-type]
            reference=reference or f"entry-{n}",
        )
        with tenant_context(wallet.tenant.pk):
            ledger_entries_append(tenant=wallet.tenant, entries=[entry], created_at=at)


def references_on(page: str) -> list[str]:
    return re.findall(r'<span class="meta">Reference: (entry-\d+)</span>', page)


def test_every_entry_is_reachable_newest_first_and_appends_do_not_shift_pages(studio: StudioPeople) -> None:
    # given: a wallet with 60 entries (entry-1 oldest, entry-60 newest)
    wallet = make_wallet(studio.org, credited=0)
    now = timezone.now()
    append(wallet, count=30, start=1, at=now - timedelta(hours=2))
    append(wallet, count=30, start=31, at=now - timedelta(hours=1))  # 30 ties, across a page boundary
    client = signed_in(wallet.owner)
    # when: the photographer opens the wallet, then a sale lands, then they page back
    first = text(client.get("/studio/wallet/"))
    append(wallet, count=5, start=61, at=now)
    seen = references_on(first)
    cursor = OLDER_LINK.search(first)
    pages = 1
    while cursor:
        page = text(client.get(f"/studio/wallet/?entries_older_than={cursor.group(1)}"))
        assert "Earlier entries" in page and "Newest entries" in page
        seen += references_on(page)
        cursor = OLDER_LINK.search(page)
        pages += 1
    # then: three pages of 25, 25 and 10 held the 60 entries, once each, newest first
    assert pages == 3
    assert seen == [f"entry-{n}" for n in range(60, 0, -1)]
    # and: the first page, opened again, starts with what arrived meanwhile
    assert references_on(text(client.get("/studio/wallet/")))[:5] == [f"entry-{n}" for n in range(65, 60, -1)]


@pytest.mark.parametrize("cursor", ["abc", "-5", "0", "99999999999999999999", "١٢"])
def test_a_cursor_that_is_not_an_entry_of_this_wallet_starts_from_the_newest(studio: StudioPeople, cursor: str) -> None:
    wallet = make_wallet(studio.org, credited=0)
    append(wallet, count=3)
    response = signed_in(wallet.owner).get(f"/studio/wallet/?entries_older_than={cursor}")
    assert response.status_code == 200
    assert references_on(text(response)) == ["entry-3", "entry-2", "entry-1"]


def test_another_members_entry_as_cursor_reveals_nothing(studio: StudioPeople) -> None:
    # given: two photographers of the studio, each with entries
    mine, theirs = make_wallet(studio.org, credited=0), make_wallet(studio.org, credited=0)
    append(mine, count=2)
    append(theirs, count=2, reference="theirs")
    with tenant_context(studio.org.pk):
        their_entry = LedgerAccount.objects.get(pk=theirs.account.pk)
    their_last = _last_entry_id(theirs)
    # when: one of them pages from the other's entry
    page = text(signed_in(mine.owner).get(f"/studio/wallet/?entries_older_than={their_last}"))
    # then: their own first page, and none of the other's entries
    assert references_on(page) == ["entry-2", "entry-1"]
    assert "theirs" not in page and their_entry.pk != mine.account.pk


def _last_entry_id(wallet: Wallet) -> int:
    from apps.ledger.models import LedgerEvent

    with tenant_context(wallet.tenant.pk):
        return LedgerEvent.objects.filter(account_id=wallet.account.pk).order_by("-id").values_list("id", flat=True)[0]


def statement(response: Any) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode("utf-8")
    return list(csv.reader(io.StringIO(body)))


def test_the_statement_holds_every_own_entry_oldest_first_with_debits_negative(studio: StudioPeople) -> None:
    # given: credits, a debit whose reference looks like a spreadsheet formula, and another member's entries
    wallet, other = make_wallet(studio.org, credited=0), make_wallet(studio.org, credited=0)
    append(wallet, count=3, start=1)
    append(wallet, count=1, start=4, kind="debit", reference="=HYPERLINK(1)")
    append(other, count=2, reference="not-yours")
    # when: the photographer downloads the statement
    response = signed_in(wallet.owner).get("/studio/wallet/statement.csv")
    # then: a private CSV attachment
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    disposition = response["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="darkroom-[\w-]+-wallet-\d{4}-\d{2}-\d{2}\.csv"', disposition)
    assert "no-store" in response["Cache-Control"]
    rows = statement(response)
    # and: a header, then this wallet's four entries oldest first, exact major units, the debit negative,
    # each described (entries of no shape the platform writes in neutral words)
    assert rows[0] == ["entry_id", "created_at_utc", "kind", "amount", "currency", "reference", "description"]
    assert [(r[2], r[3], r[4], r[5], r[6]) for r in rows[1:]] == [
        ("credit", "1.01", "EUR", "entry-1", "Added to your wallet"),
        ("credit", "1.02", "EUR", "entry-2", "Added to your wallet"),
        ("credit", "1.03", "EUR", "entry-3", "Added to your wallet"),
        ("debit", "-1.04", "EUR", "'=HYPERLINK(1)", "Taken from your wallet"),
    ]
    assert all(r[1].endswith("+00:00") for r in rows[1:])
    assert [int(r[0]) for r in rows[1:]] == sorted(int(r[0]) for r in rows[1:])


def test_the_statement_of_someone_without_a_wallet_is_just_the_header(studio: StudioPeople) -> None:
    rows = statement(signed_in(studio.staff).get("/studio/wallet/statement.csv"))
    assert rows == [["entry_id", "created_at_utc", "kind", "amount", "currency", "reference", "description"]]


def test_the_statement_needs_a_signed_in_member(studio: StudioPeople) -> None:
    from django.test import Client

    response = Client().get("/studio/wallet/statement.csv")
    assert response.status_code == 302 and response["Location"].startswith("/studio/login/")
