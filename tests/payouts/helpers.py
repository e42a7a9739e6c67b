"""Helpers for the payout tests: photographers with credited wallets and payout destinations."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from apps.ledger.models import LedgerAccount
from apps.ledger.services import EntryIn, ledger_entries_append
from apps.payouts.services import payout_destination_set
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Organization, User
from tests.factories.tenancy import MembershipFactory, UserFactory


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
