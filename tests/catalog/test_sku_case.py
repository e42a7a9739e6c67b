"""A studio's SKUs are unique whatever their case: Postgres refuses "print-a4" where "PRINT-A4"
exists, and so do the service, the API and the studio's event page (naming the SKU as stored,
writing nothing); migration catalog.0008 stops, naming them, on SKUs that already differ only in
case, and otherwise builds the case-insensitive unique index concurrently."""

from __future__ import annotations

import html
import importlib
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from django.db import IntegrityError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from apps.catalog.errors import ProductConflict
from apps.catalog.models import Product, ProductKind, Stock
from apps.catalog.services import product_create
from apps.tenancy.context import system_context, tenant_context
from tests.catalog.conftest import post
from tests.factories.catalog import EventFactory, PhotoFactory, ProductFactory
from tests.web.studio.conftest import form_nonce_on, signed_in, text

pytestmark = pytest.mark.django_db

CONSTRAINT = "catalog_product_unique_tenant_sku"


def products_of(org_id: int) -> list[tuple[str, str]]:
    with tenant_context(org_id):
        return sorted(Product.objects.values_list("kind", "sku"))


# --- the constraint -------------------------------------------------------------------------


def test_postgres_refuses_a_second_sku_differing_only_in_case_per_studio(tenant_a, tenant_b):
    # given: studio A sells "PRINT-A4"
    product = ProductFactory(event__tenant=tenant_a.org, sku="PRINT-A4")
    # then: studio B may use "print-a4"
    ProductFactory(event__tenant=tenant_b.org, sku="print-a4")
    # but: studio A may not, in any case
    for sku in ("print-a4", "Print-A4"):
        with tenant_context(tenant_a.org.pk), pytest.raises(IntegrityError) as refused, transaction.atomic():
            ProductFactory(event=product.event, sku=sku)
        assert CONSTRAINT in str(refused.value)
    assert products_of(tenant_a.org.pk) == [("download", "PRINT-A4")]


# --- the service, the API, the studio page -------------------------------------------------


def test_product_create_refuses_an_sku_differing_only_in_case_and_names_the_stored_one(tenant_a):
    # given: an A4 print sold as "PRINT-A4"
    first = PhotoFactory(event__tenant=tenant_a.org)
    second = PhotoFactory(event=first.event)
    create = {"tenant_id": tenant_a.org.pk, "event_id": first.event_id, "kind": ProductKind.PRINT, "size": "A4"}
    product_create(**create, photo_id=first.pk, sku="PRINT-A4", stock_quantity=5)
    # when: another photo's print is added as "print-a4"
    with pytest.raises(ProductConflict) as refused:
        product_create(**create, photo_id=second.pk, sku="print-a4", stock_quantity=5)
    # then: refused, naming the SKU the studio has as it is stored; no product, no stock written
    assert refused.value.detail == (
        "The SKU 'PRINT-A4' is already used, and SKUs are unique whatever their case: 'print-a4' is the same SKU."
    )
    assert products_of(tenant_a.org.pk) == [("print", "PRINT-A4")]
    with tenant_context(tenant_a.org.pk):
        assert Stock.objects.count() == 1


def test_the_api_answers_an_sku_differing_only_in_case_with_the_conflict_problem(tenant_a):
    client = tenant_a.client()
    photo = PhotoFactory(event__tenant=tenant_a.org)
    url = f"/api/v1/events/{photo.event_id}/products"
    # given: the bulk product sold as "Marathon-ALL"
    assert post(client, url, {"kind": "bulk", "sku": "Marathon-ALL"}).status_code == 201
    # when: a print is posted as "MARATHON-all"
    response = post(
        client, url, {"kind": "print", "photo_id": photo.pk, "size": "A4", "stock_quantity": 3, "sku": "MARATHON-all"}
    )
    # then: the 409 a taken SKU gets, naming the stored SKU; nothing written
    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert body["type"] == "/problems/product-conflict"
    assert "The SKU 'Marathon-ALL' is already used" in body["detail"]
    assert products_of(tenant_a.org.pk) == [("bulk", "Marathon-ALL")]
    with tenant_context(tenant_a.org.pk):
        assert Stock.objects.count() == 0


def test_the_studio_page_refuses_an_sku_differing_only_in_case(tenant_a):
    # given: an event whose download of a photo the owner sells as "GALA-1"
    photo = PhotoFactory(event__tenant=tenant_a.org)
    ProductFactory(event=photo.event, photo=photo, sku="GALA-1")
    other = PhotoFactory(event=photo.event)
    owner = signed_in(tenant_a.owner)
    page = owner.get(f"/studio/events/{photo.event_id}/")
    action = f"/studio/events/{photo.event_id}/products"
    # when: the owner adds another photo's download as "gala-1"
    refused = owner.post(
        action, {"nonce": form_nonce_on(page, action), "kind": "download", "photo": other.pk, "sku": "gala-1"}
    )
    # then: the page again with the service's 409, naming the stored SKU; nothing written
    assert refused.status_code == 409
    assert "The SKU 'GALA-1' is already used" in html.unescape(text(refused))
    assert products_of(tenant_a.org.pk) == [("download", "GALA-1")]


def test_a_made_up_sku_is_unique_whatever_the_case_and_a_repeated_product_still_says_so(tenant_a):
    # given: an event with two photos; the first's download has its made-up SKU
    first = PhotoFactory(event__tenant=tenant_a.org)
    second = PhotoFactory(event=first.event)
    event_id, org_id = first.event_id, tenant_a.org.pk
    made_up = product_create(tenant_id=org_id, event_id=event_id, kind=ProductKind.DOWNLOAD, photo_id=first.pk)
    assert made_up.sku == f"E{event_id}-DOWNLOAD-P{first.pk}"
    # when: the same download is asked for again without an SKU / then: it exists, not "SKU taken"
    with pytest.raises(ProductConflict, match=r"^This event already sells that product\.$"):
        product_create(tenant_id=org_id, event_id=event_id, kind=ProductKind.DOWNLOAD, photo_id=first.pk)
    # when: the bulk product is typed with that SKU in lower case / then: refused, naming it
    with pytest.raises(ProductConflict, match=rf"^The SKU '{made_up.sku}' is already used"):
        product_create(tenant_id=org_id, event_id=event_id, kind=ProductKind.BULK, sku=made_up.sku.lower())
    # given: the bulk product typed as the second photo's download SKU, in lower case
    typed = f"e{event_id}-download-p{second.pk}"
    product_create(tenant_id=org_id, event_id=event_id, kind=ProductKind.BULK, sku=typed)
    # when: the second photo's download is added without an SKU / then: its made-up SKU is the
    # typed one whatever the case: refused naming the typed SKU, not as a product the event sells
    with pytest.raises(ProductConflict, match=rf"^The SKU '{typed}' is already used"):
        product_create(tenant_id=org_id, event_id=event_id, kind=ProductKind.DOWNLOAD, photo_id=second.pk)
    assert products_of(org_id) == [("bulk", typed), ("download", made_up.sku)]


# --- the migration ---------------------------------------------------------------------------

# Each test below puts the products table back as it was before the migration (UNIQUE (tenant,
# sku)), outside any transaction, and its fixture applies the migration again afterwards.
migration_test = pytest.mark.django_db(transaction=True, databases=["default", "owner"])


def the_migration() -> ModuleType:
    return importlib.import_module("apps.catalog.migrations.0008_product_sku_unique_whatever_case")


def sku_unique_key(owner: BaseDatabaseWrapper) -> tuple[str, str]:
    """What the products table's SKU key is: ("constraint" or "index", its definition)."""
    with owner.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = %s), indexdef"
            "  FROM pg_indexes WHERE indexname = %s",
            [CONSTRAINT, CONSTRAINT],
        )
        is_constraint, indexdef = cursor.fetchone()
    return ("constraint" if is_constraint else "index", indexdef.split(" USING btree ")[1])


def leftover_indexes(owner: BaseDatabaseWrapper) -> list[str]:
    with owner.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'catalog_product' AND indexname LIKE %s",
            [f"{CONSTRAINT}_%"],
        )
        return [row[0] for row in cursor.fetchall()]


@pytest.fixture
def before_the_migration() -> Iterator[BaseDatabaseWrapper]:
    """The owner's connection (autocommit), with the SKU key as it was before the migration."""
    owner = connections["owner"]
    the_migration().skus_unique_exact_case_on(owner)
    assert sku_unique_key(owner) == ("constraint", "(tenant_id, sku)")
    yield owner
    with owner.cursor() as cursor:
        cursor.execute("TRUNCATE catalog_product CASCADE")  # the flush after the test empties it anyway
    the_migration().skus_unique_whatever_case_on(owner)
    assert sku_unique_key(owner) == ("index", "(tenant_id, lower((sku)::text))")


@migration_test
def test_the_migration_stops_on_skus_differing_only_in_case_naming_them(tenant_a, tenant_b, before_the_migration):
    owner, migration = before_the_migration, the_migration()
    # given: studio A has "PRINT-A4" and "print-a4" (allowed before), and unrelated SKUs; studio
    # B has "Print-A4", which only A's SKUs differ from in case
    event = EventFactory(tenant=tenant_a.org)
    upper = ProductFactory(event=event, sku="PRINT-A4")
    lower = ProductFactory(event=event, sku="print-a4")
    ProductFactory(event=event, sku="PRINT-A5")
    ProductFactory(event__tenant=tenant_b.org, sku="Print-A4")
    # when: the migration runs
    with pytest.raises(migration.SkuCaseClash) as stopped:
        migration.skus_unique_whatever_case_on(owner)
    # then: it names studio A, both products and their SKUs, and what to do; B is not named
    message = str(stopped.value)
    assert (
        f"studio {tenant_a.org.pk} ({tenant_a.org.slug}): product {upper.pk} 'PRINT-A4', product {lower.pk} 'print-a4'"
        in message
    )
    assert f"studio {tenant_b.org.pk} " not in message
    assert "1 group(s)" in message and "Rename all but one SKU of each group" in message
    # and: nothing changed: the old key is in place, no index was left behind
    assert sku_unique_key(owner) == ("constraint", "(tenant_id, sku)")
    assert leftover_indexes(owner) == []
    # when: the studio's "print-a4" is renamed and the migration runs again
    with tenant_context(tenant_a.org.pk):
        Product.objects.filter(pk=lower.pk).update(sku="PRINT-A4-GLOSSY")
    migration.skus_unique_whatever_case_on(owner)
    # then: the key is on lower(sku), and refuses "print-a4" in studio A
    assert sku_unique_key(owner) == ("index", "(tenant_id, lower((sku)::text))")
    assert leftover_indexes(owner) == []
    with tenant_context(tenant_a.org.pk), pytest.raises(IntegrityError, match=CONSTRAINT):
        ProductFactory(event=event, sku="print-a4")


@migration_test
def test_the_migration_passes_when_skus_differ_in_more_than_case(tenant_a, tenant_b, before_the_migration):
    owner, migration = before_the_migration, the_migration()
    # given: SKUs that differ in more than case in a studio, and the same SKU in another studio
    event = EventFactory(tenant=tenant_a.org)
    for sku in ("PRINT-A4", "PRINT-A5", "print-a4-matte"):
        ProductFactory(event=event, sku=sku)
    ProductFactory(event__tenant=tenant_b.org, sku="print-a4")
    # when: the migration's check runs, then the migration
    assert migration.sku_case_clashes_on(owner) == []
    migration.skus_unique_whatever_case_on(owner)
    # then: the case-insensitive key replaced the old one, every product kept its SKU
    assert sku_unique_key(owner) == ("index", "(tenant_id, lower((sku)::text))")
    assert leftover_indexes(owner) == []
    with system_context("test: skus"):
        assert sorted(Product.objects.values_list("sku", flat=True)) == [
            "PRINT-A4",
            "PRINT-A5",
            "print-a4",
            "print-a4-matte",
        ]
    # and: running it again changes nothing
    migration.skus_unique_whatever_case_on(owner)
    assert sku_unique_key(owner) == ("index", "(tenant_id, lower((sku)::text))")


@migration_test
def test_an_sku_written_in_another_case_during_the_build_stops_the_migration_cleanly(
    tenant_a, before_the_migration, monkeypatch: pytest.MonkeyPatch
):
    owner, migration = before_the_migration, the_migration()
    event = EventFactory(tenant=tenant_a.org)
    upper = ProductFactory(event=event, sku="PRINT-A4")
    checked = migration.sku_case_clashes_refuse
    written: list[Any] = []

    def check_then_a_studio_writes(connection: BaseDatabaseWrapper) -> None:
        checked(connection)
        if not written:
            # a studio adds "print-a4" (the old key allows it) just after the check passed
            written.append(ProductFactory(event=event, sku="print-a4"))

    monkeypatch.setattr(migration, "sku_case_clashes_refuse", check_then_a_studio_writes)
    # when: the migration runs, and its concurrent build finds the new clash
    with pytest.raises(migration.SkuCaseClash) as stopped:
        migration.skus_unique_whatever_case_on(owner)
    # then: it stops with the check's message naming both products
    assert f"product {upper.pk} 'PRINT-A4', product {written[0].pk} 'print-a4'" in str(stopped.value)
    # and: the failed build's invalid index is gone (writes would keep updating it), the old key stays
    assert leftover_indexes(owner) == []
    assert sku_unique_key(owner) == ("constraint", "(tenant_id, sku)")
    ProductFactory(event=event, sku="Print-A4")
