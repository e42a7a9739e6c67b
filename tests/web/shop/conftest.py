"""Shop page tests: a priced shop (tests.factories.commerce.make_shop) whose photos have their
watermarked derivatives, browsed through the Django test client (session cookies kept); the web
pages' rate-limit counters are reset for each test (tests/web/conftest.py)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from django.contrib.auth.hashers import make_password
from django.test import Client

from apps.catalog.models import Event, Photo, Product, ProductKind
from apps.commerce.models import Checkout, CheckoutLine, InventoryReservation
from apps.idempotency.models import IdempotencyKey
from apps.outbox.models import OutboxMessage
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import Organization
from tests.commerce.fixtures import empty_broker  # noqa: F401 - fixture, used by name
from tests.commerce.helpers import system_count
from tests.factories.catalog import EventFactory, PhotoFactory, PriceFactory, PriceListFactory, ProductFactory
from tests.factories.commerce import Shop, make_shop
from tests.fixtures import TenantBundle

ACCESS_CODE = "open-sesame"


def make_ready(photo: Photo) -> Photo:
    """Give a photo its derivatives' names and mark it ready, as `photo_generate_derivatives`
    would (without rendering: the pages only need the names for their URLs)."""
    with tenant_context(photo.tenant_id):
        Photo.objects.filter(pk=photo.pk).update(
            preview=f"public/previews/t{photo.tenant_id}/e{photo.event_id}/{photo.public_token.hex}.jpg",
            thumbnail=f"public/thumbnails/t{photo.tenant_id}/e{photo.event_id}/{photo.public_token.hex}.jpg",
            derivatives_status=Photo.DerivativesStatus.READY,
        )
        photo.refresh_from_db()
    return photo


def an_event(org: Organization, **fields: Any) -> Event:
    return cast(Event, EventFactory(tenant=org, **fields))


def a_photo(event: Event, *, ready: bool = True) -> Photo:
    """A small photo of the event, its derivatives ready unless told otherwise."""
    photo = cast(Photo, PhotoFactory(event=event, image_width=64, image_height=48))
    return make_ready(photo) if ready else photo


def a_priced_download(event: Event, photo: Photo, *, currency: str, amount_minor: int) -> Product:
    """The photo's download, priced in the event's (new) price list."""
    product = cast(Product, ProductFactory(event=event, kind=ProductKind.DOWNLOAD, photo=photo))
    PriceFactory(price_list=PriceListFactory(event=event, currency=currency), amount_minor=amount_minor)
    return product


@pytest.fixture
def shop(tenant_a: TenantBundle) -> Shop:
    """A public event with one ready photo: its download (9.00 EUR), an A4 print with 10 in stock
    (25.00 EUR) and the event's bulk product (49.00 EUR)."""
    built = make_shop(org=tenant_a.org)
    make_ready(built.photo)
    return built


@pytest.fixture
def protected_event(tenant_a: TenantBundle) -> Event:
    event = an_event(
        tenant_a.org,
        slug="private-gala",
        title="Private Gala",
        visibility=Event.Visibility.ACCESS_CODE,
        access_code_hash=make_password(ACCESS_CODE),
    )
    a_photo(event)
    return event


@pytest.fixture
def browser() -> Client:
    return Client()


def url(*parts: Any) -> str:
    return "/s/" + "/".join(str(p) for p in parts) + "/"


def written() -> dict[str, int]:
    """Rows a checkout attempt could write, across tenants."""
    return {
        "checkouts": system_count(lambda: Checkout.objects.all()),
        "lines": system_count(lambda: CheckoutLine.objects.all()),
        "reservations": system_count(lambda: InventoryReservation.objects.all()),
        "outbox": system_count(lambda: OutboxMessage.objects.filter(topic__startswith="checkout.")),
        "keys": system_count(lambda: IdempotencyKey.objects.all()),
    }


def checkouts_of(tenant_id: int) -> list[Checkout]:
    with system_context("test: checkouts"):
        return list(Checkout.objects.filter(tenant_id=tenant_id).order_by("created_at"))
