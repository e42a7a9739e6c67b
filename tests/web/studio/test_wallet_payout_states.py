"""What the wallet page tells a photographer about each of their payouts and about a payout's
debit the projector has not counted yet."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.utils import timezone

from apps.ledger.projection import projection_rebuild
from apps.payouts.models import Payout
from apps.payouts.services import payout_batch_run
from apps.tenancy.context import system_context
from tests.payouts.helpers import make_wallet
from tests.web.studio.conftest import signed_in, text

pytestmark = pytest.mark.django_db(transaction=True)


def payouts_row(page: str) -> str:
    """The first row of the "Your payouts" table."""
    table = page.split("<h2>Your payouts</h2>", 1)[1].split("</table>", 1)[0]
    return re.sub(r"\s+", " ", table.split("<tbody>", 1)[1].split("</tr>", 1)[0])


def test_a_payout_debit_not_yet_counted_reads_as_less_not_plus_a_negative(tenant_a: Any) -> None:
    # given: a photographer paid 30.00 EUR, the payout's debit recorded but not yet projected
    wallet = make_wallet(tenant_a.org, credited=3000)
    projection_rebuild()
    assert len(payout_batch_run(trigger="test").payout_ids) == 1
    # when: they open their wallet
    page = text(signed_in(wallet.owner).get("/studio/wallet/"))
    # then: the page says the balance is about to go down by 30.00 EUR
    assert "Less 30.00 EUR just recorded (a payout or a refund)" in page
    assert "Plus -" not in page


def test_each_payout_status_says_what_it_means_for_the_photographer(tenant_a: Any) -> None:
    # given: a photographer's payout on its way
    wallet = make_wallet(tenant_a.org, credited=3000)
    projection_rebuild()
    [payout_id] = payout_batch_run(trigger="test").payout_ids
    client = signed_in(wallet.owner)
    row = payouts_row(text(client.get("/studio/wallet/")))
    assert "Being sent to your destination." in row and "Sandbox: studio-bank-1" in row
    # when: the provider later reports the paid payout returned, so it waits for the operators
    with system_context("test: the provider contradicts a paid payout"):
        Payout.objects.filter(pk=payout_id).update(
            status=Payout.Status.NEEDS_REVIEW, provider_payout_id="sbx_po_1", completed_at=timezone.now()
        )
    row = payouts_row(text(client.get("/studio/wallet/")))
    # then: the photographer is told it is on hold and why, and it is not shown as completed
    assert "Needs review" in row and "On hold: the platform's operators are checking with Sandbox" in row
    assert row.rstrip().endswith('<td data-label="Completed">\u2013</td>')  # an en dash: no completion time
