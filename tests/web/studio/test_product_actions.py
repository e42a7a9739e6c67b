"""Deactivating, reactivating and restocking products from the event page's products table,
and that table's pagination."""

from __future__ import annotations

import re
from typing import cast

import pytest

from apps.catalog.models import Event, Product, ProductKind, Stock, StockRestock
from apps.catalog.products import PRODUCT_DEACTIVATED, PRODUCT_REACTIVATED
from apps.tenancy.context import tenant_context
from apps.tenancy.models import AuditLog
from tests.factories.catalog import ProductFactory, StockFactory
from tests.web.studio.conftest import StudioPeople, form_nonce_on, new_event, new_photo, signed_in, text

pytestmark = pytest.mark.django_db


def a_print(event: Event, stock: int = 10) -> Product:
    product = cast(Product, ProductFactory(event=event, kind=ProductKind.PRINT, photo=new_photo(event)))
    StockFactory(product=product, initial_quantity=stock, quantity=stock)
    return product


def a_download(event: Event) -> Product:
    return cast(Product, ProductFactory(event=event, kind=ProductKind.DOWNLOAD, photo=new_photo(event)))


def page_url(event: Event) -> str:
    return f"/studio/events/{event.pk}/"


def active_url(product: Product, page: int = 1) -> str:
    return f"/studio/events/{product.event_id}/products/{product.pk}/active?products_page={page}"


def restock_url(product: Product, page: int = 1) -> str:
    return f"/studio/events/{product.event_id}/products/{product.pk}/restock?products_page={page}"


def stock_of(product: Product) -> tuple[int, int]:
    with tenant_context(product.tenant_id):
        row = Stock.objects.get(product=product)
    return row.quantity, row.initial_quantity


def is_active(product: Product) -> bool:
    with tenant_context(product.tenant_id):
        return Product.objects.get(pk=product.pk).active


def audits(product: Product) -> list[str]:
    with tenant_context(product.tenant_id):
        return list(
            AuditLog.objects.filter(target_type="product", target_id=str(product.pk))
            .order_by("id")
            .values_list("action", flat=True)
        )


def restocks(product: Product) -> list[int]:
    with tenant_context(product.tenant_id):
        return list(
            StockRestock.objects.filter(product=product).order_by("id").values_list("added_quantity", flat=True)
        )


def row_of(body: str, product: Product) -> str:
    match = re.search(rf'<tr id="product-{product.pk}">.*?</tr>', body, re.S)
    assert match, f"no row for product {product.pk}"
    return match.group(0)


def test_owner_deactivates_and_reactivates_a_product_once_per_form(studio: StudioPeople) -> None:
    # given: the event page with a print on sale
    event = new_event(studio.org)
    product = a_print(event)
    client = signed_in(studio.owner)
    page = client.get(page_url(event))
    assert "Deactivate" in row_of(text(page), product)
    prefix = f"product-{product.pk}"
    form = {"nonce": form_nonce_on(page, active_url(product)), f"{prefix}-active": "0"}
    # when: its Deactivate button is clicked twice (a double click)
    first = client.post(active_url(product), form)
    second = client.post(active_url(product), form)
    # then: deactivated once, back on the products table with a message, and a Reactivate button
    assert first.status_code == second.status_code == 303
    assert first["Location"] == f"{page_url(event)}#products"
    assert not is_active(product)
    assert audits(product) == [PRODUCT_DEACTIVATED]
    after = client.get(first["Location"])
    row = row_of(text(after), product)
    assert '<td data-label="Active">no</td>' in row and "Reactivate" in row
    assert "deactivated: the shop no longer offers it" in text(after)
    # when: Reactivate is clicked
    form = {"nonce": form_nonce_on(after, active_url(product)), f"{prefix}-active": "1"}
    assert client.post(active_url(product), form).status_code == 303
    # then: it is on sale again
    assert is_active(product)
    assert audits(product) == [PRODUCT_DEACTIVATED, PRODUCT_REACTIVATED]


def test_owner_restocks_a_print_once_per_form(studio: StudioPeople) -> None:
    event = new_event(studio.org)
    product = a_print(event, stock=10)
    client = signed_in(studio.owner)
    page = client.get(page_url(event))
    form = {"nonce": form_nonce_on(page, restock_url(product)), f"product-{product.pk}-add_quantity": "5"}
    first = client.post(restock_url(product), form)
    second = client.post(restock_url(product), form)
    assert first.status_code == second.status_code == 303
    assert stock_of(product) == (15, 15) and restocks(product) == [5]
    after = text(client.get(first["Location"]))
    assert "15 / 15" in row_of(after, product)
    assert f"Added 5 units to {product.sku}: stock now 15 / 15." in after
    # and: a single unit is counted in the singular
    page = client.get(page_url(event))
    form = {"nonce": form_nonce_on(page, restock_url(product)), f"product-{product.pk}-add_quantity": "1"}
    after = text(client.post(restock_url(product), form, follow=True))
    assert f"Added 1 unit to {product.sku}: stock now 16 / 16." in after and "(s)" not in after


def test_only_prints_have_a_restock_form(studio: StudioPeople) -> None:
    event = new_event(studio.org)
    print_product, download = a_print(event), a_download(event)
    body = text(signed_in(studio.owner).get(page_url(event)))
    assert "Restock" in row_of(body, print_product) and "Add units" in row_of(body, print_product)
    assert "Restock" not in row_of(body, download) and "Deactivate" in row_of(body, download)


@pytest.mark.parametrize("units", ["0", "-2", "", "abc", "10000001"])
def test_a_bad_restock_re_renders_with_the_error_and_writes_nothing(studio: StudioPeople, units: str) -> None:
    product = a_print(new_event(studio.org))
    client = signed_in(studio.owner)
    response = client.post(restock_url(product), {"nonce": "n" * 24, f"product-{product.pk}-add_quantity": units})
    assert response.status_code == 400
    assert 'aria-invalid="true"' in row_of(text(response), product)
    assert stock_of(product) == (10, 10) and restocks(product) == []


def test_restocking_a_download_is_refused_with_the_services_422(studio: StudioPeople) -> None:
    download = a_download(new_event(studio.org))
    client = signed_in(studio.owner)
    response = client.post(restock_url(download), {"nonce": "n" * 24, f"product-{download.pk}-add_quantity": "3"})
    assert response.status_code == 422
    assert "only prints have stock" in text(response)
    with tenant_context(studio.org.pk):
        assert StockRestock.objects.count() == 0


def test_another_events_or_studios_product_is_a_404(studio: StudioPeople, other_studio: StudioPeople) -> None:
    event, elsewhere = new_event(studio.org), new_event(studio.org)
    product = a_print(elsewhere)
    foreign = a_print(new_event(other_studio.org))
    client = signed_in(studio.owner)
    for url in (
        f"/studio/events/{event.pk}/products/{product.pk}/active",
        f"/studio/events/{event.pk}/products/{product.pk}/restock",
        f"/studio/events/{event.pk}/products/{foreign.pk}/active",
        f"/studio/events/{event.pk}/products/{foreign.pk}/restock",
    ):
        body = {"nonce": "n" * 24, "product-0-active": "0"}
        assert client.post(url, body).status_code == 404, url
    assert is_active(product) and is_active(foreign)
    assert stock_of(product) == (10, 10) and stock_of(foreign) == (10, 10)


@pytest.mark.parametrize("role", ["photographer", "staff"])
def test_only_owners_deactivate_and_restock(studio: StudioPeople, role: str) -> None:
    event = new_event(studio.org)
    product = a_print(event)
    client = signed_in(getattr(studio, role))
    body = text(client.get(page_url(event)))
    row = row_of(body, product)
    assert "Deactivate" not in row and "Restock" not in row and "Manage" not in body
    prefix = f"product-{product.pk}"
    assert client.post(active_url(product), {"nonce": "n" * 24, f"{prefix}-active": "0"}).status_code == 403
    assert client.post(restock_url(product), {"nonce": "m" * 24, f"{prefix}-add_quantity": "5"}).status_code == 403
    assert is_active(product) and stock_of(product) == (10, 10)


def test_the_products_table_is_paginated_apart_from_the_photos(studio: StudioPeople) -> None:
    # given: 30 download products (25 a page)
    event = new_event(studio.org)
    products = [a_download(event) for _ in range(30)]
    client = signed_in(studio.owner)
    # when: the event page is opened, then the second products page
    first = text(client.get(page_url(event)))
    second_page = client.get(f"{page_url(event)}?products_page=2")
    second = text(second_page)
    # then: 25 rows, then 5, with links between them that keep to the products table
    assert sum(f'id="product-{p.pk}"' in first for p in products) == 25
    assert sum(f'id="product-{p.pk}"' in second for p in products) == 5
    assert 'href="?products_page=2#products"' in first and "Page 1 of 2" in first
    assert 'href="?products_page=1#products"' in second
    # and: a form sent from page 2 comes back to page 2
    last = products[-1]
    form = {"nonce": form_nonce_on(second_page, active_url(last, page=2)), f"product-{last.pk}-active": "0"}
    response = client.post(active_url(last, page=2), form)
    assert response["Location"] == f"{page_url(event)}?products_page=2#products"
    assert not is_active(last)
