"""Postgres refuses bad catalog data, whatever the Python code does (runtime role, RLS on)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import IntegrityError, connection, transaction

from apps.catalog.models import Event, Photo, Price, Product, ProductKind, Stock
from apps.tenancy.context import tenant_context
from tests.factories.catalog import (
    EventFactory,
    PhotoFactory,
    PriceFactory,
    PriceListFactory,
    ProductFactory,
    StockFactory,
)

pytestmark = pytest.mark.django_db


@contextmanager
def refused(tenant_id: int, constraint: str) -> Iterator[None]:
    """The block, run for `tenant_id`, must fail with an IntegrityError naming `constraint`."""
    with tenant_context(tenant_id), pytest.raises(IntegrityError) as excinfo, transaction.atomic():
        yield
    assert constraint in str(excinfo.value)


def test_stock_quantity_cannot_go_negative(tenant_a):
    # given: a print with 2 units left
    stock = StockFactory(product__event__tenant=tenant_a.org, initial_quantity=2)
    # when: a writer decrements by 3 / then: the check constraint refuses, stock unchanged
    with refused(tenant_a.org.pk, "catalog_stock_quantity_non_negative"):
        Stock.objects.filter(pk=stock.pk).update(quantity=stock.quantity - 3)
    with tenant_context(tenant_a.org.pk):
        assert Stock.objects.get(pk=stock.pk).quantity == 2


def test_stock_cannot_exceed_its_initial_quantity(tenant_a):
    stock = StockFactory(product__event__tenant=tenant_a.org, initial_quantity=5)
    with refused(tenant_a.org.pk, "catalog_stock_quantity_within_initial"):
        Stock.objects.filter(pk=stock.pk).update(quantity=6)


def test_one_stock_row_per_product(tenant_a):
    stock = StockFactory(product__event__tenant=tenant_a.org)
    with refused(tenant_a.org.pk, "catalog_stock_unique_tenant_product"):
        Stock.objects.create(tenant=tenant_a.org, product=stock.product, quantity=1, initial_quantity=1)


def test_stock_epoch_defaults_to_zero_in_the_database(tenant_a):
    # given: a print product
    product = ProductFactory(event__tenant=tenant_a.org, kind=ProductKind.PRINT)
    # when: a stock row is inserted by SQL that does not name the epoch
    with tenant_context(tenant_a.org.pk), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO catalog_stock (tenant_id, product_id, quantity, initial_quantity, updated_at)"
            " VALUES (%s, %s, 3, 3, now()) RETURNING epoch",
            [tenant_a.org.pk, product.pk],
        )
        # then: the database default is 0
        assert cursor.fetchone()[0] == 0


@pytest.mark.parametrize("currency", ["eur", "EU", "E1R", "", "€UR"])
def test_price_currency_must_be_three_uppercase_letters(tenant_a, currency):
    price_list = PriceListFactory(event__tenant=tenant_a.org)
    with refused(tenant_a.org.pk, "catalog_price_currency_iso4217"):
        Price.objects.create(
            tenant=tenant_a.org,
            price_list=price_list,
            event=price_list.event,
            kind=ProductKind.DOWNLOAD,
            amount_minor=500,
            currency=currency,
        )


def test_price_list_currency_must_be_iso_shaped(tenant_a):
    event = EventFactory(tenant=tenant_a.org)
    with refused(tenant_a.org.pk, "catalog_pricelist_currency_iso4217"):
        PriceListFactory(event=event, currency="usd")


def test_price_in_another_currency_than_its_list_is_refused(tenant_a):
    # given: an EUR price list
    price_list = PriceListFactory(event__tenant=tenant_a.org, currency="EUR")
    # when: a price in USD is attached / then: the composite foreign key refuses it
    with refused(tenant_a.org.pk, "catalog_price_list_same_tenant_event_currency"):
        PriceFactory(price_list=price_list, currency="USD")


def test_duplicate_price_row_is_refused(tenant_a):
    # given: a price for A4 prints of an event
    price = PriceFactory(price_list__event__tenant=tenant_a.org, kind=ProductKind.PRINT, size="A4")
    # when: a second row for the same (event, kind, size) / then: refused
    with refused(tenant_a.org.pk, "catalog_price_unique_tenant_event_kind_size"):
        PriceFactory(price_list=price.price_list, kind=ProductKind.PRINT, size="A4", amount_minor=1)


def test_price_amount_must_be_positive_integer_minor_units(tenant_a):
    with refused(tenant_a.org.pk, "catalog_price_amount_positive"):
        PriceFactory(price_list__event__tenant=tenant_a.org, amount_minor=-100)


def test_duplicate_event_slug_is_refused_per_tenant_only(tenant_a, tenant_b):
    # given: tenant A has an event "finals"
    EventFactory(tenant=tenant_a.org, slug="finals")
    # then: tenant B may use the same slug
    EventFactory(tenant=tenant_b.org, slug="finals")
    # but: tenant A may not use it twice
    with refused(tenant_a.org.pk, "catalog_event_unique_tenant_slug"):
        EventFactory(tenant=tenant_a.org, slug="finals")


@pytest.mark.parametrize("slug", ["cart", "checkouts", "orders"])
def test_event_slug_must_not_name_a_shop_page(tenant_a, slug):
    # the shop's /s/<studio>/cart/, /checkouts/ and /orders/ would hide such an event's gallery
    with refused(tenant_a.org.pk, "catalog_event_slug_not_reserved"):
        EventFactory(tenant=tenant_a.org, slug=slug)


def test_access_code_hash_must_match_visibility(tenant_a):
    with refused(tenant_a.org.pk, "catalog_event_access_code_matches_visibility"):
        EventFactory(tenant=tenant_a.org, visibility=Event.Visibility.ACCESS_CODE, access_code_hash="")
    with refused(tenant_a.org.pk, "catalog_event_access_code_matches_visibility"):
        EventFactory(tenant=tenant_a.org, visibility=Event.Visibility.PUBLIC, access_code_hash="pbkdf2$x")


def test_duplicate_sku_is_refused_per_tenant(tenant_a):
    product = ProductFactory(event__tenant=tenant_a.org, sku="FINALS-1")
    with refused(tenant_a.org.pk, "catalog_product_unique_tenant_sku"):
        ProductFactory(event=product.event, sku="FINALS-1")


@pytest.mark.parametrize(
    ("kind", "with_photo", "size", "constraint"),
    [
        (ProductKind.PRINT, True, "", "catalog_product_size_matches_kind"),
        (ProductKind.DOWNLOAD, True, "A4", "catalog_product_size_matches_kind"),
        (ProductKind.DOWNLOAD, False, "", "catalog_product_photo_matches_kind"),
        (ProductKind.BULK, True, "", "catalog_product_photo_matches_kind"),
    ],
)
def test_product_shape_must_match_its_kind(tenant_a, kind, with_photo, size, constraint):
    photo = PhotoFactory(event__tenant=tenant_a.org)
    with refused(tenant_a.org.pk, constraint):
        Product.objects.create(
            tenant=tenant_a.org,
            event=photo.event,
            kind=kind,
            photo=photo if with_photo else None,
            size=size,
            sku="X-1",
        )


def test_one_bulk_product_per_event(tenant_a):
    bulk = ProductFactory(event__tenant=tenant_a.org, kind=ProductKind.BULK)
    with refused(tenant_a.org.pk, "catalog_product_unique_bulk_per_event"):
        ProductFactory(event=bulk.event, kind=ProductKind.BULK)


def test_photo_cannot_reference_another_tenants_event(tenant_a, tenant_b):
    # given: an event of tenant A
    event_a = EventFactory(tenant=tenant_a.org)
    # when: tenant B inserts a photo pointing at it (RLS hides the event, but a plain FK check
    # would not) / then: the composite (tenant_id, event_id) foreign key refuses it
    with refused(tenant_b.org.pk, "catalog_photo_event_same_tenant"):
        Photo.objects.create(
            tenant=tenant_b.org,
            event_id=event_a.pk,
            photographer=tenant_b.owner,
            original="private/originals/x.jpg",
            width=10,
            height=10,
        )


def test_ready_photo_must_have_both_derivatives(tenant_a):
    photo = PhotoFactory(event__tenant=tenant_a.org)
    with refused(tenant_a.org.pk, "catalog_photo_ready_has_derivatives"):
        Photo.objects.filter(pk=photo.pk).update(derivatives_status="ready", preview="public/p.jpg")
