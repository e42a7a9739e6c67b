"""Helpers for the payout tests: photographers with credited wallets and payout destinations, and
a photographer's real sale (for refunds under way: needs the `empty_broker` and
`row_lock_strategy` fixtures of tests/commerce/fixtures.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from apps.ledger.models import LedgerAccount
from apps.ledger.services import EntryIn, ledger_entries_append
from apps.payouts.services import payout_destination_set
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Organization, User
from tests.factories.commerce import make_shop
from tests.factories.tenancy import MembershipFactory, UserFactory
from tests.web.studio.conftest import StudioPeople, sold


@dataclass
class Wallet:
    tenant: Organization
    owner: User
    account: LedgerAccount


def make_wallet(tenant: Organization, *, credited: int, destination: str | None = "studio-bank-1") -> Wallet:
    """A photographer of `tenant` with a EUR wallet credited `credited` (and a sandbox destination)."""
    owner = UserFactory()
    MembershipFactory(tenant=tenant, user=owner, role="photographer")
    with tenant_context(tenant.pk):
        account = LedgerAccount.objects.create(
            tenant=tenant, kind=LedgerAccount.Kind.WALLET, currency="EUR", owner=owner
        )
        if credited:
            post(tenant, account, credited, kind="credit")
        if destination is not None:
            payout_destination_set(tenant=tenant, owner=owner, provider="sandbox", destination=destination)
    return Wallet(tenant=tenant, owner=owner, account=account)


def post(tenant: Organization, account: LedgerAccount, amount: int, *, kind: str) -> None:
    with tenant_context(tenant.pk):
        ledger_entries_append(
            tenant=tenant,
            entries=[
                EntryIn(
                    account_id=account.pk,
                    amount_minor=amount,
                    currency=account.currency,
                    idempotency_key=uuid.uuid4().hex,
                    kind=kind,  # type: ignore[arg-type]
                )
            ],
        )


def sale_to_wallet(
    people: StudioPeople, *, provider: str = "sandbox", destination: str = "studio-bank-1"
) -> tuple[str, Wallet]:
    """A paid sale of a download (9.00) and a print (25.00) of a photographer of the studio with a
    payout destination: 8.10 + 22.50 = 30.60 EUR in their wallet after the 10 % fee. Returns the
    checkout's id and the wallet."""
    shop = make_shop(org=people.org)
    MembershipFactory(tenant=people.org, user=shop.photographer, role="photographer")
    checkout_id = sold(people, shop, {"product": shop.download.pk}, {"product": shop.print.pk})
    with tenant_context(people.org.pk):
        account = LedgerAccount.objects.get(kind=LedgerAccount.Kind.WALLET, owner=shop.photographer)
        payout_destination_set(tenant=people.org, owner=shop.photographer, provider=provider, destination=destination)
    return checkout_id, Wallet(tenant=people.org, owner=shop.photographer, account=account)
