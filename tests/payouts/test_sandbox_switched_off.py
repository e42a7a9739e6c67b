"""Where the sandbox is switched off (SANDBOX_ENABLED false, production's default), nobody is
"paid" through it: its payouts are marked paid at once without moving money, so a sandbox
destination would empty a photographer's wallet into nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.ledger.projection import projection_rebuild
from apps.payments.providers.base import PayoutDestinationError
from apps.payouts.admin import PayoutDestinationForm
from apps.payouts.models import Payout, PayoutDestination
from apps.payouts.services import payout_batch_run, payout_destination_set, payout_submit
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import Organization
from tests.factories.tenancy import MembershipFactory, UserFactory
from tests.payouts.helpers import make_wallet
from tests.payouts.test_payouts import exact_balance, payouts_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def studio(tenant_a: Any) -> Organization:
    return tenant_a.org


def test_a_sandbox_destination_is_refused_where_the_sandbox_is_off(studio: Organization, settings: Any) -> None:
    # given: a photographer, and a platform without the sandbox
    settings.SANDBOX_ENABLED = False
    member = UserFactory()
    MembershipFactory(tenant=studio, user=member, role="photographer")
    # when / then: the service refuses a sandbox destination and writes nothing
    with tenant_context(studio.pk), pytest.raises(PayoutDestinationError, match="sandbox is switched off"):
        payout_destination_set(tenant=studio, owner=member, provider="sandbox", destination="bank-1")
    with tenant_context(studio.pk):
        assert not PayoutDestination.objects.filter(owner=member).exists()
    # and: the admin's form says so at the destination
    form = PayoutDestinationForm(
        data={"tenant": studio.pk, "owner": member.pk, "provider": "sandbox", "destination": "bank-1"}
    )
    with system_context("test: admin form"):
        assert not form.is_valid()
    assert "sandbox is switched off" in str(form.errors["destination"])


def test_the_owner_setting_a_sandbox_destination_gets_a_400_where_the_sandbox_is_off(
    tenant_a: Any, settings: Any
) -> None:
    settings.SANDBOX_ENABLED = False
    member = UserFactory()
    MembershipFactory(tenant=tenant_a.org, user=member, role="photographer")
    client = Client()
    client.force_login(tenant_a.owner)
    response = client.put(
        f"/api/v1/payouts/destinations/{member.pk}",
        data={"provider": "sandbox", "destination": "bank-1"},
        content_type="application/json",
        headers={"Idempotency-Key": "sandbox-off-1"},
    )
    assert response.status_code == 400 and response.json()["type"].endswith("/invalid-payout-destination")
    with tenant_context(tenant_a.org.pk):
        assert not PayoutDestination.objects.filter(owner=member).exists()


def test_a_payout_to_a_sandbox_destination_set_before_it_was_switched_off_fails_and_credits_back(
    studio: Organization, settings: Any
) -> None:
    # given: a wallet due, with a sandbox destination set while the sandbox was on
    wallet = make_wallet(studio, credited=3000)
    projection_rebuild()
    [payout_id] = payout_batch_run(trigger="test").payout_ids
    # when: the sandbox is switched off before the payout is sent
    settings.SANDBOX_ENABLED = False
    with tenant_context(studio.pk):
        payout_submit(payout_id=payout_id)
    # then: it is not "paid": it failed, saying why, and the money is back in the wallet
    [payout] = payouts_of(wallet)
    assert payout.status == Payout.Status.FAILED and "sandbox is switched off" in payout.last_error
    assert payout.provider_payout_id is None
    assert exact_balance(wallet) == 3000
