"""Shopper-side selectors (called with no tenant context) and the product price lookup."""

from __future__ import annotations

import dataclasses

import pytest
from django.contrib.auth.hashers import make_password

from apps.catalog.errors import AccessCodeRequired, EventNotFound, PriceNotSet, ProductNotFound
from apps.catalog.models import Event, ProductKind
from apps.catalog.selectors import (
    PublicPhoto,
    product_price,
    public_event_by_slug,
    public_event_photos,
    public_events_of_tenant,
)
from apps.catalog.services import photo_generate_derivatives
from apps.catalog.storage import public_url
from tests.factories.catalog import EventFactory, PhotoFactory, PriceFactory, ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def protected_event(tenant_a):
    return EventFactory(
        tenant=tenant_a.org,
        slug="gala",
        visibility=Event.Visibility.ACCESS_CODE,
        access_code_hash=make_password("open-sesame"),
    )


def test_public_event_is_visible_without_a_code(tenant_a):
    EventFactory(tenant=tenant_a.org, slug="finals", title="Finals")
    event = public_event_by_slug(tenant_slug=tenant_a.org.slug, event_slug="finals")
    assert (event.title, event.protected) == ("Finals", False)


def test_access_code_event_requires_its_code(tenant_a, protected_event):
    # when: no code or a wrong code is given / then: refused
    with pytest.raises(AccessCodeRequired):
        public_event_by_slug(tenant_slug=tenant_a.org.slug, event_slug="gala")
    for wrong in ("open sesame", "open-sesame-", "   "):
        with pytest.raises(AccessCodeRequired):
            public_event_by_slug(tenant_slug=tenant_a.org.slug, event_slug="gala", access_code=wrong)
    with pytest.raises(AccessCodeRequired):
        public_event_photos(tenant_slug=tenant_a.org.slug, event_slug="gala", access_code="guess")
    # when: the code comes with the space or line break a paste brings along / then: it unlocks
    for pasted in ("open-sesame ", "\topen-sesame\n"):
        public_event_by_slug(tenant_slug=tenant_a.org.slug, event_slug="gala", access_code=pasted)
    # when: the right code is given / then: the event is shown
    event = public_event_by_slug(tenant_slug=tenant_a.org.slug, event_slug="gala", access_code="open-sesame")
    assert (event.id, event.protected) == (protected_event.pk, True)


def test_public_listing_shows_only_that_studios_public_events(tenant_a, tenant_b, protected_event):
    EventFactory(tenant=tenant_a.org, slug="finals")
    EventFactory(tenant=tenant_b.org, slug="other-studio")
    assert [e.slug for e in public_events_of_tenant(tenant_slug=tenant_a.org.slug)] == ["finals"]
    with pytest.raises(EventNotFound):
        public_event_by_slug(tenant_slug=tenant_b.org.slug, event_slug="finals")
    with pytest.raises(EventNotFound):
        public_events_of_tenant(tenant_slug="no-such-studio")


def test_public_photos_are_ready_ones_with_preview_and_thumbnail_urls_only(tenant_a, protected_event):
    # given: two photos of the protected event, one with derivatives ready
    ready = PhotoFactory(event=protected_event, image_width=800, image_height=600)
    PhotoFactory(event=protected_event, image_width=800, image_height=600)
    photo_generate_derivatives(tenant_id=tenant_a.org.pk, photo_id=ready.pk)
    # when: a shopper with the code lists them
    photos = public_event_photos(tenant_slug=tenant_a.org.slug, event_slug="gala", access_code="open-sesame")
    # then: only the ready one, with public URLs, and nothing that names the original
    assert [p.id for p in photos] == [ready.pk]
    assert photos[0].preview_url.startswith("/media/public/previews/")
    assert photos[0].thumbnail_url.startswith("/media/public/thumbnails/")
    assert {f.name for f in dataclasses.fields(PublicPhoto)} == {
        "id",
        "width",
        "height",
        "preview_url",
        "thumbnail_url",
        "created_at",
    }
    assert ready.original.name not in repr(photos)


def test_originals_can_never_be_turned_into_a_url(tenant_a):
    photo = PhotoFactory(event__tenant=tenant_a.org)
    with pytest.raises(ValueError, match="public prefix"):
        public_url(photo.original.name)


def test_product_price_is_the_events_price_for_its_kind_and_size(tenant_a):
    # given: an A4 print and a download of one event, with prices for A4 prints and downloads
    print_product = ProductFactory(event__tenant=tenant_a.org, kind=ProductKind.PRINT, size="A4")
    download = ProductFactory(event=print_product.event, kind=ProductKind.DOWNLOAD, photo=print_product.photo)
    price = PriceFactory(price_list__event=print_product.event, kind=ProductKind.PRINT, size="A4", amount_minor=2500)
    PriceFactory(price_list=price.price_list, kind=ProductKind.PRINT, size="A3", amount_minor=4000)
    PriceFactory(price_list=price.price_list, kind=ProductKind.DOWNLOAD, amount_minor=900)
    # then: each product resolves to its own row
    assert product_price(tenant_id=tenant_a.org.pk, product_id=print_product.pk) == (2500, "EUR")
    assert product_price(tenant_id=tenant_a.org.pk, product_id=download.pk) == (900, "EUR")


def test_product_price_refuses_unpriced_inactive_and_foreign_products(tenant_a, tenant_b):
    unpriced = ProductFactory(event__tenant=tenant_a.org, kind=ProductKind.BULK)
    inactive = ProductFactory(event__tenant=tenant_a.org, kind=ProductKind.BULK, active=False)
    PriceFactory(price_list__event=inactive.event, kind=ProductKind.BULK)
    with pytest.raises(PriceNotSet):
        product_price(tenant_id=tenant_a.org.pk, product_id=unpriced.pk)
    with pytest.raises(ProductNotFound):
        product_price(tenant_id=tenant_a.org.pk, product_id=inactive.pk)
    with pytest.raises(ProductNotFound):
        product_price(tenant_id=tenant_b.org.pk, product_id=unpriced.pk)
