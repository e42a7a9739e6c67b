"""What the wallet page tells each member about being paid: where to set the payout destination,
the payout minimum as money in the wallet's currency, and (owners) every payout of the studio."""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

import pytest
from django.utils import timezone

from apps.payouts.models import Payout, PayoutBatch
from apps.payouts.services import payout_destination_set
from apps.tenancy.context import system_context, tenant_context
from tests.factories.catalog import PriceListFactory
from tests.payouts.helpers import make_wallet
from tests.web.studio.conftest import StudioPeople, new_event, signed_in, text

pytestmark = pytest.mark.django_db

OWNER_HINT = 'You have not set where to pay you yet: <a href="#destinations">set your payout destination</a>'
ASK_AN_OWNER = "The studio has not set where to pay you yet; ask an owner."


@pytest.fixture(autouse=True)
def payout_minimum(settings: Any) -> None:
    settings.PAYOUT_MINIMUM_MINOR = 1000


def test_an_owner_without_a_destination_is_told_to_set_it_and_where(studio: StudioPeople) -> None:
    # when: an owner with no payout destination opens their wallet
    page = text(signed_in(studio.owner).get("/studio/wallet/"))
    # then: they are sent to the destination form on the same page, not to another owner
    assert OWNER_HINT in page and 'id="destinations"' in page
    assert "ask an owner" not in page


def test_a_photographer_without_a_destination_is_told_to_ask_an_owner(studio: StudioPeople) -> None:
    page = text(signed_in(studio.photographer).get("/studio/wallet/"))
    assert ASK_AN_OWNER in page and OWNER_HINT not in page


def test_an_owner_with_a_destination_is_told_where_they_are_paid(studio: StudioPeople) -> None:
    with tenant_context(studio.org.pk):
        payout_destination_set(tenant=studio.org, owner=studio.owner, provider="sandbox", destination="bank-1")
    page = text(signed_in(studio.owner).get("/studio/wallet/"))
    assert "You are paid to" in page and "bank-1" in page
    assert OWNER_HINT not in page and ASK_AN_OWNER not in page


@pytest.mark.parametrize(
    ("currencies", "minimum"),
    [(["EUR"], "10.00 EUR"), (["JPY", "EUR"], "10.00 EUR / 1000 JPY"), (["KWD"], "1.000 KWD")],
)
def test_an_empty_wallet_states_the_minimum_in_the_studios_currencies(
    studio: StudioPeople, currencies: list[str], minimum: str
) -> None:
    # given: a studio whose events are priced in these currencies, and a staff member with no wallet
    for currency in currencies:
        PriceListFactory(event=new_event(studio.org), currency=currency)
    # when: they open their wallet
    page = text(signed_in(studio.staff).get("/studio/wallet/"))
    # then: the payout minimum is money in those currencies
    assert f"once it reaches {minimum}:" in page
    assert "smallest unit" not in page


@pytest.mark.parametrize("configured", [0, -500])
def test_a_platform_without_a_minimum_states_the_least_that_is_paid(
    studio: StudioPeople, settings: Any, configured: int
) -> None:
    # given: the platform configured with no payout minimum (0 or below: any positive balance is paid)
    settings.PAYOUT_MINIMUM_MINOR = configured
    PriceListFactory(event=new_event(studio.org), currency="EUR")
    # when: a member opens their wallet
    page = text(signed_in(studio.staff).get("/studio/wallet/"))
    # then: the page states the least balance a payout sends, never "0.00" or a negative amount
    assert "once it reaches 0.01 EUR:" in page


def test_an_empty_wallet_of_a_studio_without_prices_still_states_money(studio: StudioPeople) -> None:
    page = text(signed_in(studio.staff).get("/studio/wallet/"))
    assert "once it reaches the payout minimum of its currency (10.00 EUR for a euro wallet):" in page
    assert "smallest unit" not in page


def test_an_owner_pages_through_every_payout_of_the_studio(studio: StudioPeople) -> None:
    # given: 55 payouts of a photographer, the oldest of 1.01 EUR, the newest of 1.55 EUR
    wallet = make_wallet(studio.org, credited=0)
    start = timezone.now() - dt.timedelta(days=60)
    for n in range(55):
        with system_context("test: past payout runs"):
            batch = PayoutBatch.objects.create(
                trigger="test", epoch=n, status=PayoutBatch.Status.COMPLETED, completed_at=start
            )
        with tenant_context(studio.org.pk):
            Payout.objects.create(
                tenant=studio.org,
                batch=batch,
                account=wallet.account,
                owner=wallet.owner,
                amount_minor=101 + n,
                currency="EUR",
                provider="sandbox",
                destination="studio-bank-1",
                debit_event_id=n + 1,
                created_at=start + dt.timedelta(days=n),
            )
    client = signed_in(studio.owner)
    # when: the owner opens the wallet page, then follows its link to older payouts of the studio
    first = text(client.get("/studio/wallet/"))
    assert "1.55 EUR" in first and "1.01 EUR" not in first
    older = re.search(r'<a href="([^"]+)"[^>]*>Older payouts</a>', first)
    assert older, "the studio's payouts have no link to older ones"
    second = text(client.get("/studio/wallet/" + html.unescape(older.group(1))))
    # then: the oldest payouts are there, and the newest are not repeated
    assert "1.01 EUR" in second and "1.05 EUR" in second and "1.55 EUR" not in second
