"""The operator's "Pay out now" on the production path: admin → outbox → relay → real Celery
worker (`payouts.batch_run_requested`: the fenced batch) → outbox → relay → worker on the
providers queue (`payouts.submit`: the sandbox provider) → paid; each wallet paid once."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.ledger.projection import projection_rebuild
from apps.payouts.models import Payout, PayoutBatch
from apps.tenancy.context import system_context
from tests.commerce.fixtures import worker_running
from tests.factories.tenancy import UserFactory
from tests.payments.test_e2e_sandbox import outbox_idle, running_relay, wait_until
from tests.payouts.helpers import make_wallet

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def payouts() -> list[Payout]:
    with system_context("test: payouts"):
        return list(Payout.objects.order_by("created_at"))


def test_pay_out_now_pays_each_due_wallet_once_through_relay_and_workers(tenant_a, tenant_b) -> None:
    # given: due wallets in two studios, projected
    wallets = [make_wallet(tenant_a.org, credited=4200), make_wallet(tenant_b.org, credited=1700)]
    projection_rebuild()
    operator = Client()
    operator.force_login(UserFactory(is_staff=True, is_superuser=True))
    with worker_running(), running_relay():
        # when: the operator presses "Pay out now" twice
        assert operator.post("/admin/payouts/payoutbatch/pay-out-now/").status_code == 302
        assert operator.post("/admin/payouts/payoutbatch/pay-out-now/").status_code == 302
        # then: the batches run and the sandbox pays
        wait_until(lambda: len(payouts()) == 2 and all(p.status == Payout.Status.PAID for p in payouts()))
        wait_until(outbox_idle)
    # and: each wallet was paid its balance once, by two completed batches
    assert sorted((p.account_id, p.amount_minor) for p in payouts()) == sorted(
        [(wallets[0].account.pk, 4200), (wallets[1].account.pk, 1700)]
    )
    assert all(p.provider_payout_id and p.provider_payout_id.startswith("sbx_po_") for p in payouts())
    with system_context("test"):
        assert list(PayoutBatch.objects.values_list("status", flat=True)) == ["completed", "completed"]
