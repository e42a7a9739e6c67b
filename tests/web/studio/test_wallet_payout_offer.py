"""The wallet page offers "Request payout" only for a wallet the request would pay, and says why
not for the others, by the rule `payout_wallet_request` applies (destination, projected balance
less the refunds under way against the minimum, no payout pending), which still refuses a request
sent anyway."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.utils import timezone

from apps.commerce.models import CheckoutLine
from apps.ledger.models import LedgerAccount
from apps.ledger.projection import projection_rebuild
from apps.payouts.models import Payout, PayoutBatch
from apps.payouts.services import payout_destination_set
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import User
from tests.commerce.fixtures import empty_broker, row_lock_strategy  # noqa: F401 - fixtures by name
from tests.commerce.refunds import ask
from tests.payouts.helpers import Wallet, make_wallet, post
from tests.web.studio.conftest import StudioPeople, new_member, signed_in, text

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_broker", "row_lock_strategy")]

ACTION = 'action="/studio/wallet/payout-request"'
BUTTON = ">Request payout</button>"
WHY_NOT = re.compile(r'<p class="meta" data-payout-refusal>(.*?)</p>', re.S)


@pytest.fixture(autouse=True)
def payout_minimum(settings: Any) -> None:
    settings.PAYOUT_MINIMUM_MINOR = 1000


def why_not(page: str) -> list[str]:
    return [" ".join(found.split()) for found in WHY_NOT.findall(page)]


def offered_accounts(page: str) -> list[int]:
    form = re.search(rf"<form[^>]*{ACTION}.*?</form>", page, re.S)
    return [int(v) for v in re.findall(r'<option value="(\d+)"', form.group(0))] if form else []


def pending_payout(wallet: Wallet) -> None:
    with system_context("test: a payout run"):
        batch = PayoutBatch.objects.create(
            trigger="test", epoch=1, status=PayoutBatch.Status.COMPLETED, completed_at=timezone.now()
        )
    with tenant_context(wallet.tenant.pk):
        Payout.objects.create(
            tenant=wallet.tenant,
            batch=batch,
            account=wallet.account,
            owner=wallet.owner,
            amount_minor=100,
            currency="EUR",
            provider="sandbox",
            destination="studio-bank-1",
            debit_event_id=1,
        )


@pytest.mark.parametrize(
    ("credited", "destination", "pending", "told"),
    [
        (0, "bank-1", False, "Your balance is 0.00 EUR; payouts start at 10.00 EUR."),
        (999, "bank-1", False, "Your balance is 9.99 EUR; payouts start at 10.00 EUR."),
        (5000, None, False, None),  # the page says already that no destination is set
        (5000, "bank-1", True, "A payout of this wallet is already being sent; it is listed below."),
        (1000, "bank-1", False, None),
    ],
    ids=["empty", "below-the-minimum", "no-destination", "payout-pending", "due"],
)
def test_the_button_is_offered_exactly_when_the_request_would_be_accepted(
    studio: StudioPeople, credited: int, destination: str | None, pending: bool, told: str | None
) -> None:
    # given: a photographer's EUR wallet in this state, projected
    wallet = make_wallet(studio.org, credited=credited, destination=destination)
    if pending:
        pending_payout(wallet)
    projection_rebuild()
    client = signed_in(wallet.owner)
    # when: they open the wallet
    page = text(client.get("/studio/wallet/"))
    offered = wallet.account.pk in offered_accounts(page)
    # then: the form and its button are there only when the request qualifies, else the reason is
    assert (BUTTON in page) == offered
    assert why_not(page) == ([told] if told and not offered else [])
    if told:
        assert told.split(";")[0] in page
    if destination is None:
        assert "You have not set where to pay you yet" in page or "ask an owner" in page
    # and: the service agrees: a request sent anyway is accepted exactly when offered
    sent = client.post("/studio/wallet/payout-request", {"nonce": "n" * 24, "account": str(wallet.account.pk)})
    assert sent.status_code == (303 if offered else 409)
    assert offered == (credited >= 1000 and destination is not None and not pending)


def test_money_held_for_refunds_under_way_is_said_and_no_button_is_offered(
    studio: StudioPeople, sale: str, settings: Any
) -> None:
    # given: the sale's photographer (8.10 + 22.50 EUR credited) with a destination, and the studio
    # has asked to refund the print (22.50), not landed yet: 8.10 EUR payable, below 10.00 EUR
    with tenant_context(studio.org.pk):
        lines = {line.kind: line for line in CheckoutLine.objects.filter(checkout_id=sale)}
        photographer = User.objects.get(pk=lines["print"].photographer_id)
        new_member(studio.org, "photographer", photographer)
        payout_destination_set(tenant=studio.org, owner=photographer, provider="sandbox", destination="bank-1")
    ask(studio, sale, [lines["print"].pk])
    projection_rebuild()
    # when: they open their wallet
    page = text(signed_in(photographer).get("/studio/wallet/"))
    # then: no button, and why: the balance, what is held, and the minimum
    assert BUTTON not in page and ACTION not in page
    assert why_not(page) == [
        "Your balance is 30.60 EUR, 22.50 EUR of it held for refunds under way; payouts start at 10.00 EUR."
    ]


def test_with_wallets_in_two_currencies_only_the_one_that_can_be_paid_is_offered(studio: StudioPeople) -> None:
    # given: a photographer with 50.00 EUR and 300 JPY (the minimum is 1000 JPY)
    euros = make_wallet(studio.org, credited=5000)
    with tenant_context(studio.org.pk):
        yen = LedgerAccount.objects.create(
            tenant=studio.org, kind=LedgerAccount.Kind.WALLET, currency="JPY", owner=euros.owner
        )
    post(studio.org, yen, 300, kind="credit")
    projection_rebuild()
    client = signed_in(euros.owner)
    # when: they open their wallet
    page = text(client.get("/studio/wallet/"))
    # then: the form offers the EUR wallet alone, and says why not the JPY one
    assert offered_accounts(page) == [euros.account.pk]
    assert why_not(page) == ["JPY wallet: Your balance is 300 JPY; payouts start at 1000 JPY."]
    # and: a request for the JPY wallet sent anyway is still refused, saying why
    refused = client.post("/studio/wallet/payout-request", {"nonce": "j" * 24, "account": str(yen.pk)})
    assert refused.status_code == 409 and "payouts start at 1000 JPY" in text(refused)


def test_a_refused_request_shows_why_without_offering_the_button_again(studio: StudioPeople) -> None:
    # given: a wallet paid meanwhile down to 5.00 EUR (the page was opened before)
    wallet = make_wallet(studio.org, credited=500)
    projection_rebuild()
    client = signed_in(wallet.owner)
    # when: its stale form is sent
    response = client.post("/studio/wallet/payout-request", {"nonce": "s" * 24, "account": str(wallet.account.pk)})
    page = text(response)
    # then: 409 with the refusal, and the page no longer offers a request that cannot work
    assert response.status_code == 409
    assert "Balance below the payout minimum: Your balance is 5.00 EUR; payouts start at 10.00 EUR." in page
    assert BUTTON not in page and ACTION not in page
