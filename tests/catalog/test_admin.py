"""The catalog admin renders for platform superusers and never links an original."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.catalog.services import photo_generate_derivatives
from tests.factories.catalog import PhotoFactory, StockFactory
from tests.factories.tenancy import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_photo_admin_shows_the_original_as_text_only(tenant_a, admin_client):
    # given: a photo with its derivatives
    photo = PhotoFactory(event__tenant=tenant_a.org)
    photo_generate_derivatives(tenant_id=tenant_a.org.pk, photo_id=photo.pk)
    # when: a superuser opens the list and the photo's page
    listing = admin_client.get("/admin/catalog/photo/")
    page = admin_client.get(f"/admin/catalog/photo/{photo.pk}/change/")
    # then: both render; the original's name appears, but never as a link, the previews do
    assert (listing.status_code, page.status_code) == (200, 200)
    html = page.content.decode()
    assert photo.original.name in html
    assert f'href="/media/{photo.original.name}"' not in html and "/media/private/" not in html
    assert 'href="/media/public/previews/' in html


@pytest.mark.parametrize("model", ["event", "product", "pricelist", "price", "stock"])
def test_catalog_admin_pages_render(tenant_a, admin_client, model):
    StockFactory(product__event__tenant=tenant_a.org)
    assert admin_client.get(f"/admin/catalog/{model}/").status_code == 200


def test_the_photo_admin_cannot_withdraw_a_photo_behind_the_service(tenant_a, admin_client):
    # given: a published photo
    from apps.catalog.models import Photo
    from apps.tenancy.context import tenant_context

    photo = PhotoFactory(event__tenant=tenant_a.org)
    # when: a superuser posts its change form with a withdrawal in it
    admin_client.post(
        f"/admin/catalog/photo/{photo.pk}/change/",
        {"withdrawn_at_0": "2026-01-01", "withdrawn_at_1": "00:00:00", "withdrawn_reason": "admin edit"},
    )
    # then: the photo is untouched (withdrawals go through photo_withdraw, which queues the cleanup)
    with tenant_context(tenant_a.org.pk):
        assert Photo.objects.filter(pk=photo.pk, withdrawn_at__isnull=True, withdrawn_reason="").exists()
    page = admin_client.get(f"/admin/catalog/photo/{photo.pk}/change/").content.decode()
    assert 'name="withdrawn_reason"' not in page


def test_the_event_admin_only_shows_events(tenant_a, tenant_b, admin_client):
    # given: an event with a photo
    from apps.catalog.models import Event
    from apps.tenancy.context import system_context

    photo = PhotoFactory(event__tenant=tenant_a.org)
    event_url = f"/admin/catalog/event/{photo.event_id}/change/"
    # when: a superuser opens it and posts a change of studio, slug and visibility anyway
    page = admin_client.get(event_url)
    posted = admin_client.post(
        event_url, {"tenant": tenant_b.org.pk, "slug": "moved", "visibility": "access_code", "title": "x"}
    )
    # then: a page to read (no form fields, no add), the post refused, the event unchanged (no 500)
    assert page.status_code == 200 and 'name="slug"' not in page.content.decode()
    assert posted.status_code == 403
    assert admin_client.get("/admin/catalog/event/add/").status_code == 403
    with system_context("test"):
        event = Event.objects.get(pk=photo.event_id)
    assert (event.tenant_id, event.slug) == (tenant_a.org.pk, photo.event.slug)
