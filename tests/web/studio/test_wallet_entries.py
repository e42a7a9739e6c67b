"""What each wallet entry was, in words, on the wallet page and in the statement: a sale (the item,
its event and order, the price less the platform's fee), its refund to the shopper, a payout and
where to, a payout returned; the order linked for a member who may open the sale. Any number of
entries costs the same queries, and an entry of a shape this code does not know still reads.

Real Postgres and Redis; sales are paid through the sandbox, refunds confirmed by its webhook,
payouts made by the batch and refused by the Stripe adapter's own destination check."""

from __future__ import annotations

import csv
import html
import io
import re
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import dateformat, timezone

from apps.catalog.models import Event, Photo
from apps.commerce.models import CheckoutLine
from apps.ledger.models import LedgerAccount
from apps.ledger.projection import projection_rebuild
from apps.ledger.services import EntryIn, ledger_entries_append
from apps.payouts.models import Payout, PayoutBatch, PayoutDestination
from apps.payouts.services import payout_batch_run, payout_submit
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.fixtures import empty_broker, row_lock_strategy  # noqa: F401 - fixtures by name
from tests.commerce.refunds import ask, confirmed
from tests.factories.commerce import make_shop
from tests.payouts.helpers import Wallet, make_wallet, sale_to_wallet
from tests.web.studio.conftest import StudioPeople, new_member, signed_in, sold, text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]

_CELL = re.compile(r'<td data-label="Description">(.*?)</td>', re.S)


def descriptions(page: str) -> list[str]:
    """Each entry's description cell as a reader sees it: tags stripped, whitespace collapsed."""
    cells = (re.sub(r"<[^>]+>", "", cell.replace("<br>", " ")) for cell in _CELL.findall(page))
    return [" ".join(html.unescape(cell).split()) for cell in cells]


def statement(client: Any) -> list[list[str]]:
    response = client.get("/studio/wallet/statement.csv")
    assert response.status_code == 200
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8"))))


def item_of(studio: StudioPeople, checkout_id: str) -> tuple[int, str, dict[str, int]]:
    """The sale's photo, event title and line ids by kind."""
    with tenant_context(studio.org.pk):
        lines = {line.kind: line for line in CheckoutLine.objects.filter(checkout_id=checkout_id)}
        title = Event.objects.get(pk=lines["download"].event_id).title
    return lines["download"].photo_id or 0, title, {kind: line.pk for kind, line in lines.items()}


def test_each_entry_says_what_it_was_on_the_page_and_in_the_statement(studio: StudioPeople, settings: Any) -> None:
    # given: a photographer's sale of a download (9.00) and an A4 print (25.00), 10 % to the platform
    settings.PAYOUT_MINIMUM_MINOR = 100
    checkout_id, wallet = sale_to_wallet(studio)
    photo, title, lines = item_of(studio, checkout_id)
    order = checkout_id[:8]
    # and: the print refunded to the shopper (its 22.50 taken back)
    confirmed(ask(studio, checkout_id, [lines["print"]]), checkout_id)
    # and: the 8.10 left paid out to a Stripe account that Stripe's adapter refuses, so it comes back
    with system_context("test"):
        PayoutDestination.objects.filter(owner=wallet.owner).update(provider="stripe", destination="cus_123")
    projection_rebuild()
    [payout_id] = payout_batch_run(trigger="test").payout_ids
    with tenant_context(studio.org.pk):
        assert payout_submit(payout_id=payout_id).status == Payout.Status.FAILED
    client = signed_in(wallet.owner)
    with tenant_context(studio.org.pk):
        made = dateformat.format(timezone.localtime(Payout.objects.get(pk=payout_id).created_at), "j M Y, H:i")
    which = f"(payout {str(payout_id)[-8:]} of {made})"

    # when: the photographer opens the wallet
    page = text(client.get("/studio/wallet/"))

    # then: each entry, newest first, says what it was (a payout which one), never a ledger key or kind
    sale = f"at {title} (order {order})"
    assert descriptions(page) == [
        f"Payout returned, not paid to Stripe: cus_123 {which}",
        f"Payout to Stripe: cus_123 {which}",
        f"Refund to the shopper: Print A4, photo {photo} {sale}",
        f"Sale: Print A4, photo {photo} {sale} 25.00 EUR less the platform's fee of 2.50 EUR",
        f"Sale: Download, photo {photo} {sale} 9.00 EUR less the platform's fee of 0.90 EUR",
    ]
    assert "checkout:" not in page and f"payout {payout_id}" not in page
    assert ">Credit<" not in page and ">Debit<" not in page
    # and: a photographer, who may not open sales, gets no link to one
    assert "/studio/sales/" not in page

    # when: they download the statement
    rows = statement(client)

    # then: the same descriptions, in a column added after the existing ones, oldest first
    assert rows[0] == ["entry_id", "created_at_utc", "kind", "amount", "currency", "reference", "description"]
    assert [(r[2], r[3], r[6]) for r in rows[1:]] == [
        ("credit", "8.10", f"Sale: Download, photo {photo} {sale}; 9.00 EUR less the platform's fee of 0.90 EUR"),
        ("credit", "22.50", f"Sale: Print A4, photo {photo} {sale}; 25.00 EUR less the platform's fee of 2.50 EUR"),
        ("debit", "-22.50", f"Refund to the shopper: Print A4, photo {photo} {sale}"),
        ("debit", "-8.10", f"Payout to Stripe: cus_123 {which}"),
        ("credit", "8.10", f"Payout returned, not paid to Stripe: cus_123 {which}"),
    ]
    assert rows[1][5] == f"checkout:{checkout_id}"  # the reference column stays as it was


def test_an_owner_who_sells_their_own_photos_can_open_the_sale_from_its_entry(studio: StudioPeople) -> None:
    # given: a sale of a photo the studio's owner took
    shop = make_shop(org=studio.org)
    with tenant_context(studio.org.pk):
        Photo.objects.filter(pk=shop.photo.pk).update(photographer=studio.owner)
    checkout_id = sold(studio, shop, {"product": shop.download.pk})
    client = signed_in(studio.owner)
    # when: the owner opens their wallet
    page = text(client.get("/studio/wallet/"))
    # then: the entry's order opens the sale's page
    link = f'<a href="/studio/sales/{checkout_id}/"><code>{checkout_id[:8]}</code></a>'
    assert link in page
    assert client.get(f"/studio/sales/{checkout_id}/").status_code == 200


def _append(wallet: Wallet, *entries: tuple[str, str, str]) -> None:
    """(kind, idempotency key, reference) entries of 1.00 EUR each, one append each."""
    for kind, key, reference in entries:
        with tenant_context(wallet.tenant.pk):
            ledger_entries_append(
                tenant=wallet.tenant,
                entries=[
                    EntryIn(
                        account_id=wallet.account.pk,
                        amount_minor=100,
                        currency="EUR",
                        idempotency_key=key,
                        kind=kind,  # type: ignore[arg-type]
                        reference=reference,
                    )
                ],
            )


def _payouts(wallet: Wallet, count: int) -> list[uuid.UUID]:
    """`count` payouts of the wallet to the sandbox, a batch each (rows only; their debits are
    appended apart)."""
    with system_context("test: past payout runs"):
        batches = PayoutBatch.objects.bulk_create(
            PayoutBatch(trigger="test", epoch=n, status=PayoutBatch.Status.COMPLETED, completed_at=timezone.now())
            for n in range(count)
        )
    ids = [uuid.uuid4() for _ in range(count)]
    with tenant_context(wallet.tenant.pk):
        Payout.objects.bulk_create(
            Payout(
                id=payout_id,
                tenant=wallet.tenant,
                batch=batches[n],
                account=wallet.account,
                owner=wallet.owner,
                amount_minor=100,
                currency="EUR",
                provider="sandbox",
                destination=f"bank-{n}",
                debit_event_id=n + 1,
            )
            for n, payout_id in enumerate(ids)
        )
    return ids


def _page_queries(client: Any) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/studio/wallet/").status_code == 200
    return len(queries)


def test_a_page_of_entries_costs_the_same_queries_however_many_sales_and_payouts_it_names(
    studio: StudioPeople, django_assert_max_num_queries: Any
) -> None:
    # given: a photographer's wallet with one sale of three items (three credits) and one payout
    shop = make_shop(org=studio.org)
    new_member(studio.org, "photographer", shop.photographer)
    _, second = shop.add_photo()
    sold(studio, shop, {"product": shop.download.pk}, {"product": second.pk}, {"product": shop.print.pk})
    with tenant_context(studio.org.pk):
        account = LedgerAccount.objects.get(kind=LedgerAccount.Kind.WALLET, owner=shop.photographer)
    wallet = Wallet(tenant=studio.org, owner=shop.photographer, account=account)
    [first] = _payouts(wallet, 1)
    _append(wallet, ("debit", f"payout:{first}", f"payout {first}"))
    client = signed_in(shop.photographer)
    client.get("/studio/wallet/")  # the session's first request warms what is cached
    few = _page_queries(client)
    # when: 21 more payouts and their returns fill the page (25 entries, each naming its own payout)
    more = _payouts(wallet, 21)
    _append(wallet, *[("debit", f"payout:{p}", f"payout {p}") for p in more[:11]])
    _append(wallet, *[("credit", f"payout-reversal:{p}", f"payout {p} failed") for p in more[:10]])
    # then: the full page costs what the short one did, and every entry is described
    with django_assert_max_num_queries(few):
        page = text(client.get("/studio/wallet/"))
    described = descriptions(page)
    assert len(described) == 25
    assert sum(d.startswith("Payout to Sandbox: bank-") for d in described) == 12
    assert sum(d.startswith("Payout returned, not paid to Sandbox: bank-") for d in described) == 10
    assert sum(d.startswith("Sale: ") for d in described) == 3


def test_entries_of_shapes_not_known_or_naming_nothing_found_still_read(studio: StudioPeople) -> None:
    # given: a wallet whose entries carry references this code does not know, or that name an
    # order or payout that does not exist, or an order's line under another order's reference
    wallet = make_wallet(studio.org, credited=0)
    shop = make_shop(org=studio.org)
    other_sale = sold(studio, shop, {"product": shop.download.pk})
    _, _, other_lines = item_of(studio, other_sale)
    missing, nowhere = uuid.uuid4(), uuid.uuid4()
    _append(
        wallet,
        ("credit", "k-1", "bonus from the studio"),
        ("debit", "k-2", ""),
        ("credit", "k-3", "checkout:not-a-uuid"),
        ("credit", f"sale:{missing}:{other_lines['download']}", f"checkout:{missing}"),
        ("debit", f"refund:{missing}:99999999", f"checkout:{missing}"),
        ("debit", f"payout:{nowhere}", f"payout {nowhere}"),
        ("credit", "k-4", f"payout {nowhere} failed"),
        ("credit", "k-5", "=HYPERLINK(1)"),
    )
    client = signed_in(wallet.owner)
    # when: the photographer opens the wallet and downloads the statement
    response = client.get("/studio/wallet/")
    rows = statement(client)
    # then: every entry reads in neutral words (its reference shown as it is), never a server error
    assert response.status_code == 200
    short = str(missing)[:8]
    assert descriptions(text(response)) == [
        "Added to your wallet Reference: =HYPERLINK(1)",
        "Payout returned",
        "Payout",
        f"Refund to the shopper (order {short})",
        f"Sale (order {short})",
        "Added to your wallet Reference: checkout:not-a-uuid",
        "Taken from your wallet",
        "Added to your wallet Reference: bonus from the studio",
    ]
    assert f"/studio/sales/{missing}/" not in text(response)
    # and: the statement says the same, its cells safe to open in a spreadsheet
    assert [r[6] for r in rows[1:]] == [
        "Added to your wallet",
        "Taken from your wallet",
        "Added to your wallet",
        f"Sale (order {short})",
        f"Refund to the shopper (order {short})",
        "Payout",
        "Payout returned",
        "Added to your wallet",
    ]
    assert rows[-1][5] == "'=HYPERLINK(1)"
