"""Offering every photo of an event as a download in one go: the service and the API (the
studio's button: tests/web/studio/test_events.py; photos uploaded later:
tests/catalog/test_downloads_for_new_photos.py). Photos with a download product keep it (a
deactivated one stays deactivated); repeating it creates nothing; it is audited once per effect.
A photo whose download SKU another product already uses (whatever its case) is not offered and
is named in the result; the other photos still are."""

from __future__ import annotations

import threading
import uuid
from typing import Any, cast

import pytest
from django.db import connection, transaction
from django.utils import timezone

from apps.catalog.downloads import DOWNLOADS_OFFERED, download_products_ensure
from apps.catalog.models import Event, Photo, Product, ProductKind
from apps.catalog.products import Actor
from apps.tenancy.context import tenant_context
from apps.tenancy.models import AuditLog
from tests.factories.catalog import EventFactory, PhotoFactory, ProductFactory
from tests.fixtures import TenantBundle, backend_pid, wait_until_blocked

pytestmark = pytest.mark.django_db


def event_with_photos(org: Any, count: int) -> tuple[Event, list[Photo]]:
    with tenant_context(org.pk):
        event = cast(Event, EventFactory(tenant=org))
        return event, [cast(Photo, PhotoFactory(event=event)) for _ in range(count)]


def downloads(event: Event) -> dict[int, tuple[str, bool]]:
    with tenant_context(event.tenant_id):
        rows = Product.objects.filter(event=event, kind=ProductKind.DOWNLOAD)
        return {p.photo_id: (p.sku, p.active) for p in rows}  # type: ignore[misc]


def offered_audits(event: Event) -> list[dict[str, Any]]:
    with tenant_context(event.tenant_id):
        return [a.data for a in AuditLog.objects.filter(action=DOWNLOADS_OFFERED, target_id=str(event.pk))]


def test_every_photo_without_a_download_gets_one_once(tenant_a: TenantBundle) -> None:
    # given: four photos, one already sold as a download, one whose download was withdrawn
    event, photos = event_with_photos(tenant_a.org, 4)
    with tenant_context(tenant_a.org.pk):
        ProductFactory(event=event, kind=ProductKind.DOWNLOAD, photo=photos[0], sku="MY-SKU")
        ProductFactory(event=event, kind=ProductKind.DOWNLOAD, photo=photos[1], active=False)
        ProductFactory(event=event, kind=ProductKind.PRINT, photo=photos[2], size="A4")
    actor = Actor(label="test")
    # when: the event's photos are offered twice
    first = download_products_ensure(tenant_id=tenant_a.org.pk, event_id=event.pk, actor=actor)
    second = download_products_ensure(tenant_id=tenant_a.org.pk, event_id=event.pk, actor=actor)
    # then: the two photos without a download got one (the print does not count), once
    assert (first.created, second.created) == (2, 0) and first.not_offered == second.not_offered == ()
    rows = downloads(event)
    assert rows[photos[0].pk] == ("MY-SKU", True)
    assert rows[photos[1].pk][1] is False  # withdrawn stays withdrawn
    for photo in photos[2:]:
        assert rows[photo.pk] == (f"E{event.pk}-DOWNLOAD-P{photo.pk}", True)
    assert offered_audits(event) == [{"created": 2}]


def test_the_api_offers_once_and_replays_and_only_writers_may(tenant_a: TenantBundle, member_client: Any) -> None:
    event, _ = event_with_photos(tenant_a.org, 3)
    url = f"/api/v1/events/{event.pk}/products/downloads"
    key = str(uuid.uuid4())
    first = tenant_a.client().post(url, format="json", HTTP_IDEMPOTENCY_KEY=key)
    again = tenant_a.client().post(url, format="json", HTTP_IDEMPOTENCY_KEY=key)
    offered = {"created": 3, "not_offered": [], "downloads_for_new_photos": True}
    assert (first.status_code, first.json()) == (200, offered)
    assert again.json() == offered and again["Idempotent-Replayed"] == "true"
    repeated = tenant_a.client().post(url, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))
    assert repeated.json() == {"created": 0, "not_offered": [], "downloads_for_new_photos": True}
    photographer, _ = member_client(tenant_a.org, "photographer")
    assert photographer.post(url, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4())).status_code == 403
    missing = tenant_a.client().post(
        f"/api/v1/events/{10**12}/products/downloads", format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4())
    )
    assert missing.status_code == 404
    assert len(downloads(event)) == 3 and offered_audits(event) == [{"created": 3}]


def test_a_withdrawn_photo_is_not_offered(tenant_a: TenantBundle) -> None:
    # given: two photos, one withdrawn by the studio
    event, photos = event_with_photos(tenant_a.org, 2)
    with tenant_context(tenant_a.org.pk):
        Photo.objects.filter(pk=photos[1].pk).update(withdrawn_at=timezone.now(), withdrawn_reason="asked to")
    # when: the event's photos are offered
    created = download_products_ensure(tenant_id=tenant_a.org.pk, event_id=event.pk, actor=Actor(label="test"))
    # then: only the photo still published gets a download
    assert created.created == 1 and set(downloads(event)) == {photos[0].pk}


def sku_of_download(event: Event, photo: Photo) -> str:
    return f"E{event.pk}-DOWNLOAD-P{photo.pk}"


def test_a_photo_whose_download_sku_is_taken_is_named_and_the_others_are_offered(tenant_a: TenantBundle) -> None:
    # given: three photos; the studio sells a print of the first as the SKU the second photo's
    # download would get, in lower case (SKUs are unique whatever their case)
    event, photos = event_with_photos(tenant_a.org, 3)
    taken_sku = sku_of_download(event, photos[1]).lower()
    with tenant_context(tenant_a.org.pk):
        squatter = cast(
            Product, ProductFactory(event=event, kind=ProductKind.PRINT, photo=photos[0], size="A4", sku=taken_sku)
        )
    # when: the event's photos are offered
    offered = download_products_ensure(tenant_id=tenant_a.org.pk, event_id=event.pk, actor=Actor(label="test"))
    # then: the first and third photos are offered; the second is named with its SKU and the product holding it
    assert offered.created == 2
    assert set(downloads(event)) == {photos[0].pk, photos[2].pk}
    assert [(n.photo_id, n.sku, n.taken_by_product_id, n.taken_by_sku) for n in offered.not_offered] == [
        (photos[1].pk, sku_of_download(event, photos[1]), squatter.pk, taken_sku)
    ]
    assert offered.not_offered[0].reason == "sku-taken"
    assert offered_audits(event) == [{"created": 2, "not_offered": [photos[1].pk]}]
    # and: asked again, it still names the photo and creates nothing
    again = download_products_ensure(tenant_id=tenant_a.org.pk, event_id=event.pk, actor=Actor(label="test"))
    assert again.created == 0 and [n.photo_id for n in again.not_offered] == [photos[1].pk]


def test_the_api_names_photos_whose_download_sku_is_taken(tenant_a: TenantBundle) -> None:
    # given: two photos; a bulk product of another event sells as the first photo's download SKU
    event, photos = event_with_photos(tenant_a.org, 2)
    with tenant_context(tenant_a.org.pk):
        other_event = EventFactory(tenant=tenant_a.org)
        squatter = cast(
            Product,
            ProductFactory(event=other_event, kind=ProductKind.BULK, photo=None, sku=sku_of_download(event, photos[0])),
        )
    # when: the API offers the event's photos
    response = tenant_a.client().post(
        f"/api/v1/events/{event.pk}/products/downloads", format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4())
    )
    # then: 200; the second photo is offered, the first named with why
    sku = sku_of_download(event, photos[0])
    assert response.status_code == 200
    assert response.json() == {
        "created": 1,
        "not_offered": [
            {
                "photo_id": photos[0].pk,
                "reason": "sku-taken",
                "sku": sku,
                "taken_by": {"product_id": squatter.pk, "sku": sku},
                "detail": f"Its download's SKU {sku!r} is already used by product {squatter.pk}.",
            }
        ],
        "downloads_for_new_photos": True,
    }
    assert set(downloads(event)) == {photos[1].pk}


@pytest.mark.django_db(transaction=True)
def test_an_sku_taken_while_the_offer_runs_is_named_not_swallowed_nor_a_500(tenant_a: TenantBundle) -> None:
    # given: two photos, and a studio member's transaction that has just added a print of the
    # first photo under the second photo's download SKU, not yet committed
    event, photos = event_with_photos(tenant_a.org, 2)
    org_id, taken_sku = tenant_a.org.pk, sku_of_download(event, photos[1])
    added, commit = threading.Event(), threading.Event()
    offer_pid: list[int] = []
    results: list[Any] = []
    errors: list[BaseException] = []

    def member() -> None:
        try:
            with tenant_context(org_id), transaction.atomic():
                ProductFactory(event=event, kind=ProductKind.PRINT, photo=photos[0], size="A4", sku=taken_sku)
                added.set()
                assert commit.wait(120)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    def offer() -> None:
        try:
            offer_pid.append(backend_pid())
            with transaction.atomic(durable=True):
                results.append(download_products_ensure(tenant_id=org_id, event_id=event.pk, actor=Actor(label="test")))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connection.close()

    adder = threading.Thread(target=member)
    adder.start()
    assert added.wait(30), errors
    # when: the offer runs meanwhile (its insert waits on the uncommitted SKU), then the member commits
    offerer = threading.Thread(target=offer)
    offerer.start()
    try:
        wait_until_blocked(offer_pid, offerer, "the offer")
    finally:
        commit.set()
        adder.join(60)
        offerer.join(60)
    # then: the first photo is offered; the second is named, neither swallowed nor an error
    assert errors == []
    assert results[0].created == 1 and [n.photo_id for n in results[0].not_offered] == [photos[1].pk]
    assert set(downloads(event)) == {photos[0].pk}
