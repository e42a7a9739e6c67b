"""What an operator meets in the Django admin: adding people, print stock, the products list.

Found walking the admin as an operator: a second account added without an e-mail address was a
500; a stock row could be moved to another product (or studio) or deleted from its change page,
unaudited; the products list read each row's photo with its own query."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.catalog.models import Photo, Stock
from apps.tenancy.context import tenant_context
from apps.tenancy.models import User
from tests.core.test_admin_money_guards import admin_client  # noqa: F401 - a fixture, used by name
from tests.factories.catalog import PhotoFactory, ProductFactory, StockFactory
from tests.factories.tenancy import UserFactory

pytestmark = pytest.mark.django_db


def add_user(client: Client, username: str, **fields: str) -> Any:
    return client.post(
        "/admin/tenancy/user/add/",
        {
            "username": username,
            "usable_password": "true",
            "password1": "a-long-pass-phrase-9",
            "password2": "a-long-pass-phrase-9",
            **fields,
        },
    )


def test_adding_people_asks_for_their_e_mail_address_instead_of_crashing(admin_client: Client) -> None:  # noqa: F811
    # given: an account without an e-mail address already (as the old add form made them)
    UserFactory(username="first", email="")
    # when: the operator adds another one, leaving the address out
    response = add_user(admin_client, "second")
    # then: the form asks for the address (no IntegrityError, nothing written)
    assert response.status_code == 200
    assert 'name="email"' in response.content.decode() and "This field is required." in response.content.decode()
    assert not User.objects.filter(username="second").exists()


def test_an_added_persons_e_mail_address_is_unique_whatever_its_case(admin_client: Client) -> None:  # noqa: F811
    # given: an account with ann@example.test
    UserFactory(username="ann", email="ann@example.test")
    # when: the operator adds someone with ANN@example.test, then someone with a new address
    taken = add_user(admin_client, "ann2", email="ANN@example.test")
    added = add_user(admin_client, "bob", email="bob@example.test")
    # then: the first is refused in the form (invitations match addresses whatever their case)
    assert taken.status_code == 200 and "already has an account" in taken.content.decode()
    assert not User.objects.filter(username="ann2").exists()
    # and: the second is added with that address
    assert added.status_code == 302
    assert User.objects.get(username="bob").email == "bob@example.test"


def test_print_stock_cannot_be_moved_or_deleted_from_the_admin(tenant_a: Any, admin_client: Client) -> None:  # noqa: F811
    # given: a print's stock of 5 and another product of the studio
    stock = StockFactory(product__event__tenant=tenant_a.org, quantity=5, initial_quantity=5)
    other = ProductFactory(event=stock.product.event)
    url = f"/admin/catalog/stock/{stock.pk}/change/"
    # when: the operator opens the stock row, posts it naming the other product, and deletes it
    page = admin_client.get(url)
    moved = admin_client.post(url, {"tenant": str(tenant_a.org.pk), "product": str(other.pk)})
    deleted = admin_client.post(f"/admin/catalog/stock/{stock.pk}/delete/", {"post": "yes"})
    # then: the page shows the stock without a field to edit; the post and the deletion are refused
    assert page.status_code == 200
    assert 'name="product"' not in page.content.decode() and 'name="tenant"' not in page.content.decode()
    assert (moved.status_code, deleted.status_code) == (403, 403)
    with tenant_context(tenant_a.org.pk):
        assert Stock.objects.filter(pk=stock.pk, product_id=stock.product_id, quantity=5).exists()


def test_a_photo_is_not_deleted_from_the_admin(tenant_a: Any, admin_client: Client) -> None:  # noqa: F811
    # given: a photo (withdrawing one goes through photo_withdraw: audited, its files cleaned up)
    photo = PhotoFactory(event__tenant=tenant_a.org)
    # when: the operator tries to delete it
    response = admin_client.post(f"/admin/catalog/photo/{photo.pk}/delete/", {"post": "yes"})
    # then: refused; the photo is still there
    assert response.status_code == 403
    with tenant_context(tenant_a.org.pk):
        assert Photo.objects.filter(pk=photo.pk).exists()


def test_the_products_list_reads_its_rows_photos_in_one_query(tenant_a: Any, admin_client: Client) -> None:  # noqa: F811
    # given: products of 2, then of 8 photos
    def products_list_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get("/admin/catalog/product/").status_code == 200
        return len(queries)

    ProductFactory.create_batch(2, event__tenant=tenant_a.org)
    few = products_list_queries()
    ProductFactory.create_batch(6, event__tenant=tenant_a.org)
    # then: the list costs as many queries with 8 rows as with 2
    assert products_list_queries() == few


def test_a_studio_keeps_its_slug_and_is_neither_added_nor_deleted_in_the_admin(
    tenant_a: Any,
    admin_client: Client,  # noqa: F811
) -> None:
    org = tenant_a.org
    # when: the operator posts the studio's change form with a new slug and a new name
    page = admin_client.get(f"/admin/tenancy/organization/{org.pk}/change/").content.decode()
    response = admin_client.post(
        f"/admin/tenancy/organization/{org.pk}/change/", {"slug": "renamed", "name": "New Name"}
    )
    # then: the name changed; the slug (in every shop link sent, and how whale ledgers are named) did not
    assert 'name="slug"' not in page and response.status_code == 302
    org.refresh_from_db()
    assert (org.slug, org.name) == (tenant_a.org.slug, "New Name")
    # and: it cannot be deleted there
    assert admin_client.get(f"/admin/tenancy/organization/{org.pk}/delete/").status_code == 403
    # and: studios are not added there (tenant_create makes one with its owner, audited)
    assert admin_client.get("/admin/tenancy/organization/add/").status_code == 403


def change_user(client: Client, user: User, **fields: str) -> Any:
    """Post the user's change form as the operator saves it, with `fields` changed."""
    return client.post(
        f"/admin/tenancy/user/{user.pk}/change/",
        {
            "username": user.username,
            "email": user.email,
            "is_active": "on",
            "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
            "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
            **fields,
        },
    )


def test_a_changed_e_mail_address_stays_unique_whatever_its_case(admin_client: Client) -> None:  # noqa: F811
    # given: Ann's and Bob's accounts
    UserFactory(username="ann", email="ann@example.test")
    bob = UserFactory(username="bob", email="bob@example.test")
    # when: the operator gives Bob ANN@example.test
    taken = change_user(admin_client, bob, email="ANN@example.test")
    # then: the form refuses it, and Bob keeps his address
    assert taken.status_code == 200 and "already has an account" in taken.content.decode()
    assert User.objects.get(pk=bob.pk).email == "bob@example.test"
    # and: Bob's own address in another case, or a new one, is saved
    assert change_user(admin_client, bob, email="Bob@example.test").status_code == 302
    assert change_user(admin_client, bob, email="robert@example.test").status_code == 302
    assert User.objects.get(pk=bob.pk).email == "robert@example.test"
