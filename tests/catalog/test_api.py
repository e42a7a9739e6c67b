"""The catalog API: events, uploads, products, prices; tenant isolation; no original URLs."""

from __future__ import annotations

import importlib
import json

import pytest
from django.contrib.auth.hashers import check_password
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from apps.catalog.models import Event, Photo, Price, PriceList, Product, Stock
from apps.catalog.services import photo_generate_derivatives
from apps.tenancy.context import system_context, tenant_context
from tests.catalog.conftest import post
from tests.factories.catalog import EventFactory, PhotoFactory, image_bytes

pytestmark = pytest.mark.django_db
# An upload stores its original outside any transaction (and refuses inside one), so tests that
# upload run outside the test-case transaction.
uploads = pytest.mark.django_db(transaction=True, databases=["default", "owner"])

EVENT = {"title": "City Marathon", "date": "2026-05-17", "slug": "city-marathon"}


def jpeg_upload(name: str = "IMG_0001.JPG", **kwargs) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, image_bytes(**kwargs), content_type="image/jpeg")


def problem(response) -> dict:
    assert response["Content-Type"] == "application/problem+json", response.content
    return json.loads(response.content)


# --- events -------------------------------------------------------------------------------


def test_owner_creates_lists_and_reads_events(tenant_a):
    client = tenant_a.client()
    # when: two events are created
    first = post(client, "/api/v1/events", EVENT)
    second = post(client, "/api/v1/events", {**EVENT, "slug": "relay", "date": "2026-06-01"})
    # then: both exist, newest first, and each reads back by id
    assert (first.status_code, second.status_code) == (201, 201)
    listed = client.get("/api/v1/events").json()
    assert listed["count"] == 2
    assert [e["slug"] for e in listed["results"]] == ["relay", "city-marathon"]
    detail = client.get(f"/api/v1/events/{first.json()['id']}").json()
    assert detail == first.json()
    assert detail["visibility"] == "public"


def test_access_code_event_stores_only_a_hash_and_never_returns_it(tenant_a):
    # when: an access-code event is created
    response = post(
        tenant_a.client(), "/api/v1/events", {**EVENT, "visibility": "access_code", "access_code": "sunrise-42"}
    )
    # then: the response carries neither code nor hash; the row holds a verifiable hash
    assert response.status_code == 201
    assert "sunrise-42" not in response.content.decode()
    assert "access_code" not in response.json()
    with tenant_context(tenant_a.org.pk):
        event = Event.objects.get(pk=response.json()["id"])
    assert event.access_code_hash != "sunrise-42"
    assert check_password("sunrise-42", event.access_code_hash)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**EVENT, "date": "17/05/2026"}, "date"),
        ({**EVENT, "date": "0001-01-01"}, "date"),
        ({**EVENT, "date": "9999-12-31"}, "date"),
        ({**EVENT, "slug": "not a slug"}, "slug"),
        ({**EVENT, "colour": "red"}, "colour"),
        ({**EVENT, "visibility": "access_code"}, "access_code"),
        ({**EVENT, "visibility": "access_code", "access_code": "abc"}, "access_code"),
        ({**EVENT, "access_code": "secret-code"}, "access_code"),
        ({**EVENT, "visibility": "secret"}, "visibility"),
        ({**EVENT, "slug": "cart"}, "slug"),
        ({**EVENT, "slug": "checkouts"}, "slug"),
    ],
)
def test_invalid_event_is_a_400_problem_and_writes_nothing(tenant_a, body, field):
    response = post(tenant_a.client(), "/api/v1/events", body)
    assert response.status_code == 400
    assert field in problem(response)["errors"]
    with tenant_context(tenant_a.org.pk):
        assert Event.objects.count() == 0


def test_duplicate_slug_is_a_409_problem(tenant_a):
    client = tenant_a.client()
    assert post(client, "/api/v1/events", EVENT).status_code == 201
    response = post(client, "/api/v1/events", {**EVENT, "title": "Again"})
    assert response.status_code == 409
    assert problem(response)["type"] == "/problems/event-slug-taken"
    with tenant_context(tenant_a.org.pk):
        assert Event.objects.count() == 1


def test_slugs_are_lower_case_and_the_shop_finds_an_event_whatever_the_case(tenant_a):
    client = tenant_a.client()
    # when: an event is made with an upper-case slug, then again in another case
    created = post(client, "/api/v1/events", {**EVENT, "slug": "Spring-GALA"})
    again = post(client, "/api/v1/events", {**EVENT, "slug": "spring-gala"})
    # then: stored lower-case, and the second is the same slug (409), not another event
    assert created.status_code == 201 and created.json()["slug"] == "spring-gala"
    assert again.status_code == 409
    # and: the shop's link works typed in any case
    for typed in ("spring-gala", "Spring-Gala", "SPRING-GALA"):
        page = Client().get(f"/s/{tenant_a.org.slug}/{typed}/")
        assert page.status_code == 200, typed


def test_the_migration_lowers_older_mixed_case_slugs_the_shop_then_finds_in_any_case(tenant_a, tenant_b):
    from django.db import connection, transaction

    migration = importlib.import_module("apps.catalog.migrations.0007_event_slugs_lower_case")
    # given: events made before slugs were lower-cased (EventFactory stores the slug as given)
    slugs_a = ["Summer-Run", "Ball", "ball", "Night", "NIGHT", "CART", "plain"]
    events = {slug: EventFactory(tenant=tenant_a.org, slug=slug) for slug in slugs_a}
    theirs = EventFactory(tenant=tenant_b.org, slug="Summer-Run")
    # when: the migration's update runs
    with transaction.atomic():
        changed = migration.lower_event_slugs_on(connection)
    # then: lowered where the lower-case form is free and not reserved, in every studio; a studio's
    # pair that differs only in case, and a slug that would become reserved, are left as they are
    with system_context("test"):
        after = {slug: Event.objects.get(pk=event.pk).slug for slug, event in events.items()}
        assert Event.objects.get(pk=theirs.pk).slug == "summer-run"
    assert after == {**{slug: slug for slug in slugs_a}, "Summer-Run": "summer-run"}
    assert changed == 2
    # and: the shop finds the lowered event by its old link and in any case
    for typed in ("Summer-Run", "summer-run", "SUMMER-RUN"):
        assert Client().get(f"/s/{tenant_a.org.slug}/{typed}/").status_code == 200, typed


def test_staff_member_cannot_create_events(tenant_a, member_client):
    client, _ = member_client(tenant_a.org, "staff")
    assert post(client, "/api/v1/events", EVENT).status_code == 403
    assert client.get("/api/v1/events").status_code == 200


# --- tenant isolation ---------------------------------------------------------------------


def test_another_tenant_sees_and_touches_nothing_through_the_api(tenant_a, tenant_b):
    # given: tenant A's event with a photo and a product
    photo = PhotoFactory(event__tenant=tenant_a.org)
    event_id = photo.event_id
    assert post(tenant_a.client(), f"/api/v1/events/{event_id}/products", {"kind": "bulk"}).status_code == 201
    other = tenant_b.client()
    # when/then: tenant B lists nothing and gets 404 for every A resource
    assert other.get("/api/v1/events").json()["count"] == 0
    for url in ("", "/photos", "/products", "/prices"):
        assert other.get(f"/api/v1/events/{event_id}{url}").status_code == 404
    # and: B cannot write into A's event
    refused = [
        post(other, f"/api/v1/events/{event_id}/products", {"kind": "download", "photo_id": photo.pk}),
        post(
            other,
            f"/api/v1/events/{event_id}/prices",
            {"currency": "EUR", "prices": [{"kind": "bulk", "amount_minor": 1}]},
        ),
    ]
    assert [r.status_code for r in refused] == [404, 404]
    with system_context("test: verify isolation"):
        assert Product.objects.filter(tenant=tenant_b.org).count() == 0
        assert PriceList.objects.count() == 0
        assert Product.objects.filter(event_id=event_id).count() == 1


# --- photos -------------------------------------------------------------------------------


@uploads
def test_photographer_uploads_a_photo_stored_privately_with_derivatives_pending(tenant_a, member_client):
    # given: an event and a signed-in photographer
    event = EventFactory(tenant=tenant_a.org)
    client, photographer = member_client(tenant_a.org, "photographer")
    # when: they upload a JPEG
    response = post(client, f"/api/v1/events/{event.pk}/photos", {"image": jpeg_upload()}, multipart=True)
    # then: a pending photo of theirs with the image's size, its original under the private prefix
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["photographer_id"] == photographer.pk
    assert (body["width"], body["height"], body["derivatives_status"]) == (2400, 1600, "pending")
    assert body["preview_url"] is None and body["thumbnail_url"] is None
    with tenant_context(tenant_a.org.pk):
        photo = Photo.objects.get(pk=body["id"])
    assert photo.original.name.startswith(f"private/originals/t{tenant_a.org.pk}/e{event.pk}/")
    assert photo.original.name.endswith(".jpg") and "IMG_0001" not in photo.original.name
    assert photo.original.storage.exists(photo.original.name)
    assert "original" not in body and photo.original.name not in response.content.decode()


@uploads
def test_upload_honours_exif_orientation_for_dimensions(tenant_a, member_client):
    event = EventFactory(tenant=tenant_a.org)
    client, _ = member_client(tenant_a.org, "photographer")
    upload = jpeg_upload(width=600, height=400, exif_orientation=6)  # rotated 90°: shown portrait
    response = post(client, f"/api/v1/events/{event.pk}/photos", {"image": upload}, multipart=True)
    assert (response.json()["width"], response.json()["height"]) == (400, 600)


@uploads
def test_owner_uploads_on_behalf_of_a_photographer_but_a_photographer_cannot(tenant_a, member_client):
    event = EventFactory(tenant=tenant_a.org)
    owner_client, _ = member_client(tenant_a.org, "owner")
    photographer_client, photographer = member_client(tenant_a.org, "photographer")
    _, colleague = member_client(tenant_a.org, "photographer")
    url = f"/api/v1/events/{event.pk}/photos"
    by_owner = post(owner_client, url, {"image": jpeg_upload(), "photographer_id": photographer.pk}, multipart=True)
    assert by_owner.status_code == 201 and by_owner.json()["photographer_id"] == photographer.pk
    by_photographer = post(
        photographer_client, url, {"image": jpeg_upload(), "photographer_id": colleague.pk}, multipart=True
    )
    assert by_photographer.status_code == 403
    with tenant_context(tenant_a.org.pk):
        assert Photo.objects.count() == 1


@uploads
@pytest.mark.parametrize(
    ("upload", "status"),
    [
        (SimpleUploadedFile("notes.jpg", b"this is not an image", content_type="image/jpeg"), 400),
        (SimpleUploadedFile("pic.gif", image_bytes(64, 64, fmt="GIF"), content_type="image/gif"), 400),
        (SimpleUploadedFile("empty.jpg", b"", content_type="image/jpeg"), 400),
    ],
)
def test_upload_of_a_non_photo_is_refused_and_writes_nothing(tenant_a, member_client, upload, status):
    event = EventFactory(tenant=tenant_a.org)
    client, _ = member_client(tenant_a.org, "photographer")
    response = post(client, f"/api/v1/events/{event.pk}/photos", {"image": upload}, multipart=True)
    assert response.status_code == status
    assert "image" in problem(response)["errors"]
    with tenant_context(tenant_a.org.pk):
        assert Photo.objects.count() == 0


def test_upload_needs_multipart_and_an_uploader_role(tenant_a, member_client):
    event = EventFactory(tenant=tenant_a.org)
    url = f"/api/v1/events/{event.pk}/photos"
    staff, _ = member_client(tenant_a.org, "staff")
    photographer, _ = member_client(tenant_a.org, "photographer")
    assert post(staff, url, {"image": jpeg_upload()}, multipart=True).status_code == 403
    assert post(tenant_a.client(), url, {"image": jpeg_upload()}, multipart=True).status_code == 403  # API key
    assert post(photographer, url, {"image": "x"}).status_code == 415  # JSON is not an upload


# --- products and prices ------------------------------------------------------------------


def test_products_are_listed_with_their_price_and_stock(tenant_a):
    client = tenant_a.client()
    photo = PhotoFactory(event__tenant=tenant_a.org)
    base = f"/api/v1/events/{photo.event_id}"
    # when: a download, an A4 print with 25 units and the bulk product are created, then priced
    created = [
        post(client, f"{base}/products", {"kind": "download", "photo_id": photo.pk}),
        post(client, f"{base}/products", {"kind": "print", "photo_id": photo.pk, "size": "A4", "stock_quantity": 25}),
        post(client, f"{base}/products", {"kind": "bulk", "sku": "MARATHON-ALL"}),
    ]
    assert [r.status_code for r in created] == [201, 201, 201], [r.content for r in created]
    prices = post(
        client,
        f"{base}/prices",
        {
            "currency": "EUR",
            "prices": [
                {"kind": "download", "amount_minor": 900},
                {"kind": "print", "size": "A4", "amount_minor": 2500},
            ],
        },
    )
    assert prices.status_code == 200, prices.content
    # then: each product shows its price (bulk has none yet) and only the print has stock
    listed = {p["kind"]: p for p in client.get(f"{base}/products").json()["results"]}
    assert listed["download"]["price"] == {"amount_minor": 900, "currency": "EUR"}
    assert listed["download"]["stock"] is None
    assert listed["print"]["price"] == {"amount_minor": 2500, "currency": "EUR"}
    assert listed["print"]["stock"] == {"quantity": 25, "initial_quantity": 25}
    assert listed["bulk"]["price"] is None and listed["bulk"]["sku"] == "MARATHON-ALL"
    assert listed["print"]["sku"] == f"E{photo.event_id}-PRINT-P{photo.pk}-A4"


def test_setting_prices_again_updates_in_place_but_cannot_change_currency(tenant_a):
    client = tenant_a.client()
    event = EventFactory(tenant=tenant_a.org)
    url = f"/api/v1/events/{event.pk}/prices"
    assert post(client, url, {"currency": "EUR", "prices": [{"kind": "bulk", "amount_minor": 4900}]}).status_code == 200
    updated = post(client, url, {"currency": "EUR", "prices": [{"kind": "bulk", "amount_minor": 3900}]})
    assert updated.json()["prices"] == [{"kind": "bulk", "size": "", "amount_minor": 3900}]
    other_currency = post(client, url, {"currency": "USD", "prices": [{"kind": "bulk", "amount_minor": 1}]})
    assert other_currency.status_code == 409
    with tenant_context(tenant_a.org.pk):
        assert list(Price.objects.values_list("amount_minor", "currency")) == [(3900, "EUR")]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"currency": "eu", "prices": [{"kind": "bulk", "amount_minor": 100}]}, "currency"),
        ({"currency": "EUR", "prices": [{"kind": "bulk", "amount_minor": 0}]}, "prices.0.amount_minor"),
        ({"currency": "EUR", "prices": [{"kind": "bulk", "amount_minor": 9.5}]}, "prices.0.amount_minor"),
        ({"currency": "EUR", "prices": [{"kind": "print", "amount_minor": 100}]}, "prices.0.size"),
        (
            {"currency": "EUR", "prices": [{"kind": "bulk", "amount_minor": 1}, {"kind": "bulk", "amount_minor": 2}]},
            "prices.1",
        ),
        ({"currency": "EUR", "prices": []}, "prices.non_field_errors"),
    ],
)
def test_invalid_prices_are_a_400_problem_and_write_nothing(tenant_a, body, field):
    event = EventFactory(tenant=tenant_a.org)
    response = post(tenant_a.client(), f"/api/v1/events/{event.pk}/prices", body)
    assert response.status_code == 400
    assert field in problem(response)["errors"]
    with tenant_context(tenant_a.org.pk):
        assert (PriceList.objects.count(), Price.objects.count()) == (0, 0)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "print", "size": "A4"}, "photo_id"),
        ({"kind": "print", "photo_id": "PHOTO", "size": "A4"}, "stock_quantity"),
        ({"kind": "print", "photo_id": "PHOTO", "stock_quantity": 5}, "size"),
        ({"kind": "print", "photo_id": "PHOTO", "size": "A4", "stock_quantity": -1}, "stock_quantity"),
        ({"kind": "download", "photo_id": "PHOTO", "stock_quantity": 5}, "stock_quantity"),
        ({"kind": "download", "photo_id": "OTHER_EVENT_PHOTO"}, "photo_id"),
        ({"kind": "bulk", "photo_id": "PHOTO"}, "photo_id"),
        ({"kind": "poster"}, "kind"),
    ],
)
def test_invalid_products_are_a_400_problem_and_write_nothing(tenant_a, body, field):
    photo = PhotoFactory(event__tenant=tenant_a.org)
    elsewhere = PhotoFactory(event=EventFactory(tenant=tenant_a.org))
    ids = {"PHOTO": photo.pk, "OTHER_EVENT_PHOTO": elsewhere.pk}
    body = {k: ids.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    response = post(tenant_a.client(), f"/api/v1/events/{photo.event_id}/products", body)
    assert response.status_code == 400
    assert field in problem(response)["errors"]
    with tenant_context(tenant_a.org.pk):
        assert (Product.objects.count(), Stock.objects.count()) == (0, 0)


def test_duplicate_sku_or_product_is_a_409_problem(tenant_a):
    client = tenant_a.client()
    photo = PhotoFactory(event__tenant=tenant_a.org)
    url = f"/api/v1/events/{photo.event_id}/products"
    assert post(client, url, {"kind": "download", "photo_id": photo.pk, "sku": "D-1"}).status_code == 201
    same_sku = post(client, url, {"kind": "bulk", "sku": "D-1"})
    same_product = post(client, url, {"kind": "download", "photo_id": photo.pk, "sku": "D-2"})
    assert (same_sku.status_code, same_product.status_code) == (409, 409)
    with tenant_context(tenant_a.org.pk):
        assert Product.objects.count() == 1


# --- originals never leak -----------------------------------------------------------------


@uploads
def test_no_api_response_contains_an_originals_name_or_url(tenant_a, member_client):
    # given: an uploaded photo with derivatives ready, products and prices
    client = tenant_a.client()
    event_id = post(client, "/api/v1/events", EVENT).json()["id"]
    photographer, _ = member_client(tenant_a.org, "photographer")
    uploaded = post(photographer, f"/api/v1/events/{event_id}/photos", {"image": jpeg_upload()}, multipart=True)
    photo_id = uploaded.json()["id"]
    assert photo_generate_derivatives(tenant_id=tenant_a.org.pk, photo_id=photo_id) == "ready"
    responses = [
        uploaded,
        post(client, f"/api/v1/events/{event_id}/products", {"kind": "download", "photo_id": photo_id}),
        post(
            client,
            f"/api/v1/events/{event_id}/prices",
            {"currency": "EUR", "prices": [{"kind": "download", "amount_minor": 500}]},
        ),
        client.get("/api/v1/events"),
        client.get(f"/api/v1/events/{event_id}"),
        client.get(f"/api/v1/events/{event_id}/photos"),
        client.get(f"/api/v1/events/{event_id}/products"),
        client.get(f"/api/v1/events/{event_id}/prices"),
    ]
    with tenant_context(tenant_a.org.pk):
        original = Photo.objects.get(pk=photo_id).original.name
    # then: every response succeeded, the photo list shows public derivative URLs, and no
    # response mentions the original's name, its private prefix or an "original" field
    assert all(r.status_code in (200, 201) for r in responses), [r.status_code for r in responses]
    listed = responses[5].json()["results"][0]
    assert listed["preview_url"].startswith("/media/public/previews/")
    assert listed["thumbnail_url"].startswith("/media/public/thumbnails/")
    for response in responses:
        text = response.content.decode()
        assert original not in text and "private/" not in text and '"original' not in text
