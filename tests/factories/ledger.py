"""Factories for the ledger. Accounts are created inside their tenant context (RLS WITH CHECK)."""

from __future__ import annotations

import factory

from apps.ledger.models import LedgerAccount
from tests.factories.tenancy import OrganizationFactory, TenantScopedFactory


class LedgerAccountFactory(TenantScopedFactory):
    class Meta:
        model = LedgerAccount

    tenant = factory.SubFactory(OrganizationFactory)
    kind = LedgerAccount.Kind.USAGE
    currency = "EUR"
    client_id = ""
