"""The hot-stock operator page: staff only, per-SKU pending depth and drain rate."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.commerce.batched import inventory_sku_drain
from tests.commerce.helpers import buy_print
from tests.factories.commerce import Shop
from tests.factories.tenancy import UserFactory
from tests.fixtures import TenantBundle

pytestmark = pytest.mark.django_db(transaction=True)


def staff_client() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True))
    return client


def test_only_platform_staff_see_the_page(tenant_a: TenantBundle) -> None:
    # given: an anonymous visitor and a studio owner who is not platform staff
    owner = Client()
    owner.force_login(tenant_a.owner)
    # when / then: both are sent to the login page; staff get the page
    assert Client().get("/ops/inventory").status_code == 302
    assert owner.get("/ops/inventory").status_code == 302
    assert staff_client().get("/ops/inventory").status_code == 200


def test_the_page_shows_pending_depth_then_the_drain_rate(shop_a: Shop, settings: Any) -> None:
    # given: three pending reservations of one print (batched, writer not yet run)
    settings.INVENTORY_STRATEGY = "batched"
    settings.INVENTORY_OPS_RATE_WINDOW_SECONDS = 60
    for n in range(3):
        buy_print(shop_a, n)
    client = staff_client()

    # when: an operator looks
    before = client.get("/ops/inventory?format=json").json()["skus"]

    # then: the SKU shows 3 pending and no decisions yet
    (row,) = [r for r in before if r["product_id"] == shop_a.print.pk]
    assert (row["pending_count"], row["decided_in_window"], row["quantity"]) == (3, 0, 10)
    assert row["oldest_pending_age_seconds"] >= 0

    # when: the writer drains and the operator looks again
    inventory_sku_drain(tenant_id=shop_a.org.pk, product_id=shop_a.print.pk)
    after = client.get("/ops/inventory?format=json").json()["skus"]
    page = client.get("/ops/inventory").content.decode()

    # then: nothing pending, 3 decisions in the window (3/60 per second), stock 7, lease shown
    (row,) = [r for r in after if r["product_id"] == shop_a.print.pk]
    assert (row["pending_count"], row["decided_in_window"], row["quantity"]) == (0, 3, 7)
    assert row["drain_rate_per_second"] == pytest.approx(3 / 60)
    assert row["writer_epoch"] >= 1 and row["writer_state"] == "released"
    assert shop_a.print.sku in page
