"""Migration commerce 0027: a second charge's refund that failed at the provider after it landed,
recorded before it as an order's refund is (kept `submitted` and landed, owed), turns `failed`, as
`refund_apply_provider_failure` records it now; an order's own owed refund stays owed (real
Postgres; the Flutterwave checkouts of `tests/payments/test_second_charge.py`)."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F

from apps.commerce.models import Refund
from apps.commerce.services import checkout_refund_request
from apps.commerce.services.payment import refund_retry
from apps.tenancy.context import system_context, tenant_context
from tests.commerce.helpers import drain_outbox
from tests.payments.test_second_charge import (  # noqa: F401 - `flutterwave` is a fixture
    PRICE,
    FlutterwaveApi,
    charged,
    delivered,
    flutterwave,
    paid,
    refund_completed,
    refunds_of,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("empty_broker", "flutterwave"),
]

MIGRATION = importlib.import_module("apps.commerce.migrations.0027_second_charge_refunds_failed_after_landing")


def test_0027_turns_an_owed_second_charges_refund_failed_and_leaves_the_orders_own_owed(tenant_a, shop_a) -> None:
    # given: an order charged twice; the second charge's refund landed, the studio's whole refund
    # of the order landed; then each failed at the provider, recorded as the code before 0027 did:
    # kept as it was, its failure after its landing (owed)
    checkout_id, first = paid(tenant_a, shop_a)
    second, body = charged(checkout_id)
    assert delivered(body).status == "processed"
    drain_outbox()
    [back] = FlutterwaveApi.refunds
    assert delivered(refund_completed(str(back["id"]), second, PRICE)).status == "processed"
    with tenant_context(tenant_a.org.pk):
        checkout_refund_request(tenant_id=tenant_a.org.pk, checkout_id=checkout_id, actor_label="test")
    drain_outbox()
    studios = FlutterwaveApi.refunds[-1]
    assert delivered(refund_completed(str(studios["id"]), first, PRICE, tx_ref=checkout_id)).status == "processed"
    with tenant_context(tenant_a.org.pk):
        Refund.objects.filter(transaction__checkout_id=checkout_id).update(
            provider_failed_at=F("landed_at") + timedelta(seconds=1), last_error="Card closed"
        )
    owed_second, owed_studio = refunds_of(tenant_a, checkout_id)
    assert (owed_second.still_owed, owed_studio.still_owed) == (True, True)
    # when: the migration's update runs (twice: a second run finds nothing)
    with system_context("test: migrate"):
        counts = [MIGRATION.fail_owed_second_charge_refunds_on(connection) for _ in range(2)]
    # then: the second charge's refund is failed, no longer landed, its attempt with the failed ones
    assert counts == [1, 0]
    given_back, studio = refunds_of(tenant_a, checkout_id)
    assert (given_back.status, given_back.landed_at, given_back.provider_refund_id) == ("failed", None, None)
    assert given_back.failed_provider_refund_ids == [str(back["id"])]
    assert (given_back.provider_failed_at, given_back.last_error) == (owed_second.provider_failed_at, "Card closed")
    # and: the order's own refund is left as it was, owed
    assert (studio.status, studio.landed_at, studio.provider_refund_id, studio.still_owed) == (
        "submitted",
        owed_studio.landed_at,
        owed_studio.provider_refund_id,
        True,
    )
    # and: an operator can retry the second charge's refund now
    back["amount"] = 0  # (Flutterwave holds that money again)
    with system_context("test: admin"):
        assert refund_retry(refund_id=given_back.pk, actor_label="admin:ops")
    drain_outbox()
    assert (FlutterwaveApi.refunds[-1]["transaction_id"], refunds_of(tenant_a, checkout_id)[0].status) == (
        second,
        "submitted",
    )
