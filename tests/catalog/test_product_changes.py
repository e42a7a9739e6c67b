"""Stopping and resuming sales of a product, restocking a print: the services, their audit
rows, their constraints, and the API (`PATCH /api/v1/products/{id}`,
`POST /api/v1/products/{id}/restock`) with its Idempotency-Key replay and 4xx problems."""

from __future__ import annotations

import json
import uuid
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.db import IntegrityError, InternalError, ProgrammingError, connection, transaction

from apps.catalog.errors import ProductNotFound, ProductNotRestockable, StockLimitExceeded
from apps.catalog.models import Product, Stock, StockRestock
from apps.catalog.products import (
    PRODUCT_DEACTIVATED,
    PRODUCT_REACTIVATED,
    RESTOCK_MAX_UNITS,
    STOCK_MAX_UNITS,
    Actor,
    product_set_active,
    stock_restock,
)
from apps.commerce.errors import InvalidCheckoutLine
from apps.commerce.services import LineIn, checkout_create
from apps.core.problems import InvalidInput
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from tests.factories.commerce import Shop, make_shop, shipping_in
from tests.fixtures import TenantBundle

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(tenant_a: TenantBundle, settings: Any) -> Shop:
    settings.INVENTORY_STRATEGY = "row_lock"
    return make_shop(org=tenant_a.org, stock=10)


def owner_actor(bundle: TenantBundle) -> Actor:
    return Actor.member(bundle.owner)


def stock_of(shop: Shop) -> tuple[int, int]:
    with tenant_context(shop.org.pk):
        row = Stock.objects.get(pk=shop.stock.pk)
    return row.quantity, row.initial_quantity


def restocks(org_id: int) -> list[StockRestock]:
    with tenant_context(org_id):
        return list(StockRestock.objects.filter(tenant_id=org_id).order_by("id"))


def audit_actions(org_id: int) -> list[str]:
    with tenant_context(org_id):
        return list(
            AuditLog.objects.filter(tenant_id=org_id, target_type="product")
            .order_by("id")
            .values_list("action", flat=True)
        )


def buy(shop: Shop, product: Product, quantity: int = 1) -> Any:
    with tenant_context(shop.org.pk):
        return checkout_create(
            tenant_id=shop.org.pk,
            email="ann@example.test",
            provider="sandbox",
            lines=[LineIn(product_id=product.pk, quantity=quantity)],
            shipping=shipping_in() if product.kind == "print" else None,
        )


def reconciled() -> str:
    out = StringIO()
    call_command("inventory_reconcile", stdout=out)  # SystemExit(1) on drift
    return out.getvalue()


# --- product_set_active -------------------------------------------------------------------


def test_a_deactivated_product_cannot_be_bought_and_earlier_checkouts_keep_it(shop: Shop, tenant_a) -> None:
    # given: a checkout of the print made while it was on sale
    earlier = buy(shop, shop.print, 2)
    # when: the owner deactivates the print
    product = product_set_active(
        tenant_id=shop.org.pk, product_id=shop.print.pk, active=False, actor=owner_actor(tenant_a)
    )
    # then: it is inactive, a new checkout is refused, and the earlier checkout is untouched
    assert product.active is False
    with pytest.raises(InvalidCheckoutLine, match="not for sale"), transaction.atomic():
        buy(shop, shop.print)
    with tenant_context(shop.org.pk):
        lines = list(earlier.lines.values_list("product_id", "quantity", "state"))
    assert lines == [(shop.print.pk, 2, "confirmed")]
    assert stock_of(shop) == (8, 10)
    # and: the change is audited with who did it
    with tenant_context(shop.org.pk):
        audit = AuditLog.objects.get(tenant_id=shop.org.pk, action=PRODUCT_DEACTIVATED)
    assert (audit.actor_user_id, audit.actor_label, audit.target_id) == (
        tenant_a.owner.pk,
        f"user:{tenant_a.owner.pk}",
        str(shop.print.pk),
    )


def test_reactivating_puts_the_product_back_on_sale(shop: Shop, tenant_a) -> None:
    actor = owner_actor(tenant_a)
    product_set_active(tenant_id=shop.org.pk, product_id=shop.download.pk, active=False, actor=actor)
    product_set_active(tenant_id=shop.org.pk, product_id=shop.download.pk, active=True, actor=actor)
    checkout = buy(shop, shop.download)
    assert checkout.amount_minor == shop.prices["download"]
    assert audit_actions(shop.org.pk) == [PRODUCT_DEACTIVATED, PRODUCT_REACTIVATED]


def test_setting_the_state_a_product_already_has_changes_and_audits_nothing(shop: Shop, tenant_a) -> None:
    actor = owner_actor(tenant_a)
    for _ in range(2):
        product_set_active(tenant_id=shop.org.pk, product_id=shop.bulk.pk, active=False, actor=actor)
    product_set_active(tenant_id=shop.org.pk, product_id=shop.print.pk, active=True, actor=actor)
    assert audit_actions(shop.org.pk) == [PRODUCT_DEACTIVATED]


def test_another_tenants_product_is_not_found(shop: Shop, tenant_b) -> None:
    with pytest.raises(ProductNotFound):
        product_set_active(
            tenant_id=tenant_b.org.pk, product_id=shop.print.pk, active=False, actor=owner_actor(tenant_b)
        )
    with pytest.raises(ProductNotFound):
        stock_restock(tenant_id=tenant_b.org.pk, product_id=shop.print.pk, add_quantity=5, actor=owner_actor(tenant_b))
    with tenant_context(shop.org.pk):
        assert Product.objects.get(pk=shop.print.pk).active is True
    assert stock_of(shop) == (10, 10)
    assert restocks(shop.org.pk) == [] and restocks(tenant_b.org.pk) == []


# --- stock_restock --------------------------------------------------------------------------


def test_a_restock_adds_to_stock_and_initial_and_is_audited(shop: Shop, tenant_a) -> None:
    # given: 3 of 10 prints sold
    buy(shop, shop.print, 3)
    # when: the owner adds 15 units
    restock = stock_restock(
        tenant_id=shop.org.pk, product_id=shop.print.pk, add_quantity=15, actor=owner_actor(tenant_a)
    )
    # then: 22 left of 25, the restock row says who and how many, and the books balance
    assert stock_of(shop) == (22, 25)
    assert (restock.added_quantity, restock.quantity_after, restock.initial_quantity_after) == (15, 22, 25)
    assert (restock.actor_user_id, restock.actor_label) == (tenant_a.owner.pk, f"user:{tenant_a.owner.pk}")
    assert restock.created_at is not None
    assert "0 drifting" in reconciled()


def test_a_restocked_sold_out_print_sells_again(shop: Shop, tenant_a) -> None:
    # given: every print sold, and a shopper told "sold out"
    buy(shop, shop.print, 10)
    refused = buy(shop, shop.print, 1)
    assert refused.status == "sold_out"
    # when: 5 units are added
    stock_restock(tenant_id=shop.org.pk, product_id=shop.print.pk, add_quantity=5, actor=owner_actor(tenant_a))
    # then: the next shopper gets one; the earlier sold-out checkout stays sold out
    again = buy(shop, shop.print, 1)
    with tenant_context(shop.org.pk):
        assert again.lines.get().state == "confirmed"
        refused.refresh_from_db()
    assert refused.status == "sold_out"
    assert stock_of(shop) == (4, 15)
    assert "0 drifting" in reconciled()


@pytest.mark.parametrize("product_name", ["download", "bulk"])
def test_only_prints_are_restocked(shop: Shop, tenant_a, product_name: str) -> None:
    product = getattr(shop, product_name)
    with pytest.raises(ProductNotRestockable):
        stock_restock(tenant_id=shop.org.pk, product_id=product.pk, add_quantity=1, actor=owner_actor(tenant_a))
    assert restocks(shop.org.pk) == []


@pytest.mark.parametrize("add_quantity", [0, -1, RESTOCK_MAX_UNITS + 1])
def test_a_restock_outside_its_bounds_is_refused(shop: Shop, tenant_a, add_quantity: int) -> None:
    with pytest.raises(InvalidInput) as refused:
        stock_restock(
            tenant_id=shop.org.pk, product_id=shop.print.pk, add_quantity=add_quantity, actor=owner_actor(tenant_a)
        )
    assert "add_quantity" in refused.value.extra["errors"]
    assert stock_of(shop) == (10, 10) and restocks(shop.org.pk) == []


def test_a_restock_past_the_ceiling_is_refused_and_writes_nothing(shop: Shop, tenant_a) -> None:
    # given: a print just under the ceiling
    with tenant_context(shop.org.pk):
        Stock.objects.filter(pk=shop.stock.pk).update(
            quantity=STOCK_MAX_UNITS - 5, initial_quantity=STOCK_MAX_UNITS - 5
        )
    actor = owner_actor(tenant_a)
    # when/then: 6 more is refused, 5 more is the last that fits
    with pytest.raises(StockLimitExceeded):
        stock_restock(tenant_id=shop.org.pk, product_id=shop.print.pk, add_quantity=6, actor=actor)
    assert stock_of(shop) == (STOCK_MAX_UNITS - 5, STOCK_MAX_UNITS - 5)
    stock_restock(tenant_id=shop.org.pk, product_id=shop.print.pk, add_quantity=5, actor=actor)
    assert stock_of(shop) == (STOCK_MAX_UNITS, STOCK_MAX_UNITS)


def test_an_inactive_print_can_be_restocked_before_it_is_reactivated(shop: Shop, tenant_a) -> None:
    actor = owner_actor(tenant_a)
    product_set_active(tenant_id=shop.org.pk, product_id=shop.print.pk, active=False, actor=actor)
    stock_restock(tenant_id=shop.org.pk, product_id=shop.print.pk, add_quantity=2, actor=actor)
    assert stock_of(shop) == (12, 12)


def test_a_restock_leaves_the_writer_epoch_alone(shop: Shop, tenant_a) -> None:
    # given: a stock row last written by the writer of epoch 7
    with tenant_context(shop.org.pk):
        Stock.objects.filter(pk=shop.stock.pk).update(epoch=7)
    # when: it is restocked
    stock_restock(tenant_id=shop.org.pk, product_id=shop.print.pk, add_quantity=1, actor=owner_actor(tenant_a))
    # then: the fence still names that writer (its next batch is not refused)
    with tenant_context(shop.org.pk):
        assert Stock.objects.get(pk=shop.stock.pk).epoch == 7


# --- the StockRestock table -----------------------------------------------------------------


def _restock_row(shop: Shop, **fields: Any) -> StockRestock:
    values = {
        "tenant_id": shop.org.pk,
        "product_id": shop.print.pk,
        "added_quantity": 1,
        "quantity_after": 1,
        "initial_quantity_after": 1,
        "actor_label": "user:1",
        **fields,
    }
    return StockRestock.objects.create(**values)


@pytest.mark.parametrize(
    ("fields", "constraint"),
    [
        ({"added_quantity": 0}, "catalog_stockrestock_added_positive"),
        ({"quantity_after": 2}, "catalog_stockrestock_after_within_initial"),
        ({"quantity_after": -1}, "catalog_stockrestock_after_within_initial"),
        ({"actor_label": ""}, "catalog_stockrestock_actor_not_empty"),
    ],
)
def test_restock_rows_are_well_formed(shop: Shop, fields: dict[str, Any], constraint: str) -> None:
    with tenant_context(shop.org.pk), pytest.raises(IntegrityError, match=constraint), transaction.atomic():
        _restock_row(shop, **fields)


def test_a_restock_cannot_name_another_tenants_product(shop: Shop, tenant_b) -> None:
    with system_context("test cross-tenant insert"), pytest.raises(IntegrityError, match="same_tenant"):
        with transaction.atomic():
            _restock_row(shop, tenant_id=tenant_b.org.pk)


def test_restock_rows_are_append_only_for_the_runtime_role(shop: Shop, tenant_a) -> None:
    restock = stock_restock(
        tenant_id=shop.org.pk, product_id=shop.print.pk, add_quantity=1, actor=owner_actor(tenant_a)
    )
    for statement in (
        "UPDATE catalog_stockrestock SET added_quantity = 99 WHERE id = %s",
        "DELETE FROM catalog_stockrestock WHERE id = %s",
    ):
        with tenant_context(shop.org.pk), pytest.raises((ProgrammingError, InternalError)) as refused:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(statement, [restock.pk])
        assert "permission denied" in str(refused.value) or "Cannot update or delete" in str(refused.value)
    assert [r.added_quantity for r in restocks(shop.org.pk)] == [1]


# --- the API --------------------------------------------------------------------------------


def patch(client: Any, url: str, body: Any, *, key: str | None = None) -> Any:
    return client.patch(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()))


def post(client: Any, url: str, body: Any, *, key: str | None = None) -> Any:
    return client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()))


def problem(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == "application/problem+json", response.content
    return json.loads(response.content)


def test_api_deactivates_a_product_once_and_replays_the_answer(shop: Shop, tenant_a) -> None:
    client = tenant_a.client()
    url = f"/api/v1/products/{shop.print.pk}"
    # when: the same PATCH is sent twice with one key
    first = patch(client, url, {"active": False}, key="deactivate-1")
    again = patch(client, url, {"active": False}, key="deactivate-1")
    # then: one change, the same body replayed, and the product reads back inactive
    assert first.status_code == again.status_code == 200
    assert first.json()["active"] is False and first.json()["stock"] == {"quantity": 10, "initial_quantity": 10}
    assert again.content == first.content and again["Idempotent-Replayed"] == "true"
    assert client.get(url).json()["active"] is False
    assert audit_actions(shop.org.pk) == [PRODUCT_DEACTIVATED]
    with tenant_context(shop.org.pk):
        audit = AuditLog.objects.get(action=PRODUCT_DEACTIVATED)
    assert audit.actor_label.startswith("api_key:") and audit.actor_user_id is None
    # and: a checkout naming it is a 400 problem
    checkout = post(
        client,
        "/api/v1/checkouts",
        {"email": "a@example.test", "provider": "sandbox", "lines": [{"product": shop.print.pk}]},
    )
    assert checkout.status_code == 400
    assert problem(checkout)["type"] == "/problems/invalid-checkout-line"


def test_api_restocks_once_per_key(shop: Shop, tenant_a) -> None:
    client = tenant_a.client()
    url = f"/api/v1/products/{shop.print.pk}/restock"
    first = post(client, url, {"add_quantity": 5}, key="restock-1")
    again = post(client, url, {"add_quantity": 5}, key="restock-1")
    other_body = post(client, url, {"add_quantity": 6}, key="restock-1")
    assert first.status_code == again.status_code == 201
    body = first.json()
    assert {k: body[k] for k in ("product_id", "added_quantity", "quantity", "initial_quantity")} == {
        "product_id": shop.print.pk,
        "added_quantity": 5,
        "quantity": 15,
        "initial_quantity": 15,
    }
    assert body["actor"].startswith("api_key:")
    assert again.content == first.content and again["Idempotent-Replayed"] == "true"
    assert other_body.status_code == 422
    assert stock_of(shop) == (15, 15) and len(restocks(shop.org.pk)) == 1


@pytest.mark.parametrize(
    ("body", "status", "type_"),
    [
        ({"add_quantity": 0}, 400, "/problems/validation-error"),
        ({"add_quantity": -3}, 400, "/problems/validation-error"),
        ({"add_quantity": RESTOCK_MAX_UNITS + 1}, 400, "/problems/validation-error"),
        ({"add_quantity": "many"}, 400, "/problems/validation-error"),
        ({"add_quantity": 1.5}, 400, "/problems/validation-error"),
        ({}, 400, "/problems/validation-error"),
        ({"add_quantity": 1, "note": "x"}, 400, "/problems/validation-error"),
    ],
)
def test_api_refuses_bad_restocks_with_a_problem_and_writes_nothing(shop: Shop, tenant_a, body, status, type_) -> None:
    response = post(tenant_a.client(), f"/api/v1/products/{shop.print.pk}/restock", body)
    assert response.status_code == status
    assert problem(response)["type"] == type_
    assert stock_of(shop) == (10, 10) and restocks(shop.org.pk) == []


def test_api_refuses_to_restock_a_download_and_past_the_ceiling(shop: Shop, tenant_a) -> None:
    client = tenant_a.client()
    download = post(client, f"/api/v1/products/{shop.download.pk}/restock", {"add_quantity": 1})
    assert download.status_code == 422
    assert problem(download)["type"] == "/problems/product-not-restockable"
    with tenant_context(shop.org.pk):
        Stock.objects.filter(pk=shop.stock.pk).update(initial_quantity=STOCK_MAX_UNITS)
    ceiling = post(client, f"/api/v1/products/{shop.print.pk}/restock", {"add_quantity": 1})
    assert ceiling.status_code == 422
    assert problem(ceiling)["type"] == "/problems/stock-limit-exceeded"
    assert restocks(shop.org.pk) == []


@pytest.mark.parametrize("body", [{}, {"active": "perhaps"}, {"active": False, "sku": "X"}, [], {"active": None}])
def test_api_refuses_a_malformed_patch(shop: Shop, tenant_a, body: Any) -> None:
    response = patch(tenant_a.client(), f"/api/v1/products/{shop.print.pk}", body)
    assert response.status_code == 400
    problem(response)
    with tenant_context(shop.org.pk):
        assert Product.objects.get(pk=shop.print.pk).active is True


def test_api_without_an_idempotency_key_is_refused(shop: Shop, tenant_a) -> None:
    client = tenant_a.client()
    for response in (
        client.patch(f"/api/v1/products/{shop.print.pk}", {"active": False}, format="json"),
        client.post(f"/api/v1/products/{shop.print.pk}/restock", {"add_quantity": 1}, format="json"),
    ):
        assert response.status_code == 400
        assert problem(response)["type"] == "/problems/idempotency-key-missing"
    assert stock_of(shop) == (10, 10)


def test_api_another_tenants_or_an_unknown_product_is_a_404(shop: Shop, tenant_b) -> None:
    other = tenant_b.client()
    for missing in (shop.print.pk, 987654321):
        assert other.get(f"/api/v1/products/{missing}").status_code == 404
        response = patch(other, f"/api/v1/products/{missing}", {"active": False})
        assert response.status_code == 404
        assert problem(response)["type"] == "/problems/product-not-found"
        response = post(other, f"/api/v1/products/{missing}/restock", {"add_quantity": 1})
        assert response.status_code == 404
    with tenant_context(shop.org.pk):
        assert Product.objects.get(pk=shop.print.pk).active is True
    assert stock_of(shop) == (10, 10)


@pytest.mark.parametrize("role", ["staff", "photographer"])
def test_api_only_owners_and_api_keys_change_products(shop: Shop, tenant_a, member_client, role: str) -> None:
    client, _ = member_client(tenant_a.org, role)
    assert client.get(f"/api/v1/products/{shop.print.pk}").status_code == 200
    assert patch(client, f"/api/v1/products/{shop.print.pk}", {"active": False}).status_code == 403
    assert post(client, f"/api/v1/products/{shop.print.pk}/restock", {"add_quantity": 1}).status_code == 403
    assert stock_of(shop) == (10, 10) and audit_actions(shop.org.pk) == []


def test_api_a_signed_in_owner_is_the_audited_actor(shop: Shop, tenant_a, member_client) -> None:
    client, owner = member_client(tenant_a.org, "owner")
    assert post(client, f"/api/v1/products/{shop.print.pk}/restock", {"add_quantity": 2}).status_code == 201
    [restock] = restocks(shop.org.pk)
    assert (restock.actor_user_id, restock.actor_label) == (owner.pk, f"user:{owner.pk}")
