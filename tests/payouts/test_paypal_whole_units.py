"""PayPal takes HUF, JPY and TWD in whole units only ("This currency does not support decimals.
If you pass a decimal amount, an error occurs.", https://developer.paypal.com/docs/api/reference/currency-codes/),
although ISO 4217 gives HUF and TWD two decimals. A wallet's balance in one of them is paid its
whole units; the fraction stays in the wallet for a later payout, instead of every payout being
refused and credited back. Real PostgreSQL and Redis; PayPal's API is a recording stand-in.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import transaction

from apps.ledger.models import LedgerAccount
from apps.ledger.projection import projection_rebuild
from apps.payments.providers.http import HttpRequest, HttpResponse
from apps.payments.providers.paypal import PayPalProvider
from apps.payouts.models import Payout
from apps.payouts.services import payout_batch_run, payout_destination_set, wallet_exact_balance
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import Organization
from tests.factories.tenancy import MembershipFactory, UserFactory
from tests.payouts.helpers import Wallet, post

RECEIVER = "photographer@example.com"


def paypal_wallet(studio: Organization, *, currency: str, credited: int) -> Wallet:
    """A photographer of `studio` paid through PayPal, with a wallet in `currency` credited `credited`."""
    owner = UserFactory()
    MembershipFactory(tenant=studio, user=owner, role="photographer")
    with tenant_context(studio.pk):
        account = LedgerAccount.objects.create(
            tenant=studio, kind=LedgerAccount.Kind.WALLET, currency=currency, owner=owner
        )
        payout_destination_set(tenant=studio, owner=owner, provider="paypal", destination=RECEIVER)
    post(studio, account, credited, kind="credit")
    return Wallet(tenant=studio, owner=owner, account=account)


def exact_balance(wallet: Wallet) -> int:
    with tenant_context(wallet.tenant.pk), transaction.atomic():
        return wallet_exact_balance(account=wallet.account, tenant=wallet.tenant)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("currency", "credited", "paid", "kept"),
    [
        ("HUF", 111_060, 111_000, 60),  # 1110.60 HUF: 1110 HUF paid, 0.60 kept
        ("TWD", 250_099, 250_000, 99),
        ("HUF", 500_000, 500_000, 0),  # already whole: all of it
        ("EUR", 111_060, 111_060, 0),  # PayPal takes cents of other currencies
    ],
)
def test_a_paypal_wallet_is_paid_the_whole_units_its_currency_allows(
    tenant_a: Any, currency: str, credited: int, paid: int, kept: int
) -> None:
    # given: a PayPal photographer's wallet in `currency`, projected
    wallet = paypal_wallet(tenant_a.org, currency=currency, credited=credited)
    projection_rebuild()

    # when: a batch runs
    payout_batch_run(trigger="test")

    # then: the payout and its ledger debit are the whole units; the fraction stays in the wallet
    with system_context("test: payouts"):
        [payout] = Payout.objects.filter(account=wallet.account)
    assert (payout.amount_minor, payout.currency) == (paid, currency)
    assert exact_balance(wallet) == kept


@pytest.mark.django_db(transaction=True)
def test_a_paypal_wallet_whose_whole_units_are_under_the_minimum_is_not_paid(tenant_a: Any, settings: Any) -> None:
    # given: 10.99 HUF with a minimum of 10.50 (1050 minor units): 10 HUF is under it
    settings.PAYOUT_MINIMUM_MINOR = 1050
    wallet = paypal_wallet(tenant_a.org, currency="HUF", credited=1099)
    projection_rebuild()
    # when
    payout_batch_run(trigger="test")
    # then: nothing is paid and nothing debited
    with system_context("test: payouts"):
        assert not Payout.objects.filter(account=wallet.account).exists()
    assert exact_balance(wallet) == 1099


class PayPalStandIn:
    """PayPal's token endpoint and `POST /v1/payments/payouts` (a PENDING one-item batch),
    recording what is sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, request: HttpRequest, *, timeout: float) -> HttpResponse:
        if request.url.endswith("/v1/oauth2/token"):
            return self._json(200, {"access_token": "A21-test", "token_type": "Bearer", "expires_in": 32400})
        assert request.method == "POST" and request.url.endswith("/v1/payments/payouts"), request.url
        body = json.loads(request.body or b"{}")
        self.sent.append(body)
        header = {
            "payout_batch_id": "BATCH1",
            "batch_status": "PENDING",
            "sender_batch_header": body["sender_batch_header"],
        }
        return self._json(201, {"batch_header": header, "links": []})

    @staticmethod
    def _json(status: int, payload: dict[str, Any]) -> HttpResponse:
        return HttpResponse(
            status=status, headers={"Content-Type": "application/json"}, body=json.dumps(payload).encode()
        )


def paypal(stand_in: PayPalStandIn) -> PayPalProvider:
    return PayPalProvider(
        client_id="client-local",
        client_secret="secret-local",
        webhook_id="WH-unused",
        api_base="https://api-m.sandbox.paypal.com",
        transport=stand_in,
    )


@pytest.mark.parametrize(
    ("currency", "amount_minor", "value"),
    [("HUF", 111_000, "1110"), ("TWD", 100, "1"), ("JPY", 500, "500"), ("EUR", 111_060, "1110.60")],
)
def test_paypal_payouts_in_whole_unit_currencies_are_sent_without_decimals(
    currency: str, amount_minor: int, value: str
) -> None:
    stand_in = PayPalStandIn()
    paypal(stand_in).payout(
        payout_id="0190f1e2-0000-7000-8000-000000000001",
        amount_minor=amount_minor,
        currency=currency,
        destination=RECEIVER,
        description="Darkroom payout",
    )
    [body] = stand_in.sent
    assert body["items"][0]["amount"] == {"value": value, "currency": currency}


def test_paypal_refuses_a_fraction_of_a_whole_unit_currency_before_sending_anything() -> None:
    # given: 1110.60 HUF, which PayPal would refuse
    stand_in = PayPalStandIn()
    # when / then: a ValueError (the payout is refused for certain: failed, credited back), and
    # nothing reached PayPal
    with pytest.raises(ValueError, match="HUF"):
        paypal(stand_in).payout(
            payout_id="0190f1e2-0000-7000-8000-000000000002",
            amount_minor=111_060,
            currency="HUF",
            destination=RECEIVER,
            description="Darkroom payout",
        )
    assert stand_in.sent == []
    # and: what it can send of it is the whole units
    assert paypal(stand_in).payout_sendable_minor(amount_minor=111_060, currency="HUF") == 111_000
    assert paypal(stand_in).payout_sendable_minor(amount_minor=111_060, currency="EUR") == 111_060
