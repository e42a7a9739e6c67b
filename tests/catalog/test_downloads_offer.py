"""Offering every photo of an event as a download in one go: the service and the API (the
studio's button: tests/web/studio/test_events.py). Photos with a download product keep it (a
deactivated one stays deactivated); repeating it creates nothing; it is audited once per effect."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest
from django.utils import timezone

from apps.catalog.models import Event, Photo, Product, ProductKind
from apps.catalog.products import DOWNLOADS_OFFERED, Actor, download_products_ensure
from apps.tenancy.context import tenant_context
from apps.tenancy.models import AuditLog
from tests.factories.catalog import EventFactory, PhotoFactory, ProductFactory
from tests.fixtures import TenantBundle

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
    assert (first, second) == (2, 0)
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
    assert (first.status_code, first.json()) == (200, {"created": 3})
    assert again.json() == {"created": 3} and again["Idempotent-Replayed"] == "true"
    assert tenant_a.client().post(url, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4())).json() == {"created": 0}
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
    assert created == 1 and set(downloads(event)) == {photos[0].pk}
