"""Factories and real test images for the catalog. Rows are created in their tenant's context."""

from __future__ import annotations

import datetime
import functools
import io

import factory
from PIL import Image, ImageDraw

from apps.catalog import storage
from apps.catalog.models import Event, Photo, Price, PriceList, Product, ProductKind, Stock
from tests.factories.tenancy import OrganizationFactory, TenantScopedFactory, UserFactory


@functools.cache
def image_bytes(
    width: int = 2400, height: int = 1600, *, fmt: str = "JPEG", exif_orientation: int | None = None
) -> bytes:
    """A real photo-like image made with Pillow: colour gradients and a solid shape.

    The same arguments always make the same bytes, so each size is drawn and encoded once per
    test process (a 2400x1600 JPEG takes about 30 ms, and every PhotoFactory wants one)."""
    red = Image.linear_gradient("L").resize((width, height))
    green = Image.radial_gradient("L").resize((width, height))
    blue = red.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = Image.merge("RGB", (red, green, blue))
    ImageDraw.Draw(image).ellipse((width // 4, height // 4, width // 2, height // 2), fill=(200, 40, 40))
    buffer = io.BytesIO()
    kwargs: dict = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    if fmt == "JPEG":
        kwargs["quality"] = 90
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


class EventFactory(TenantScopedFactory):
    class Meta:
        model = Event

    tenant = factory.SubFactory(OrganizationFactory)
    title = factory.Sequence(lambda n: f"Marathon {n}")
    date = factory.LazyFunction(lambda: datetime.date(2026, 5, 17))
    slug = factory.Sequence(lambda n: f"marathon-{n}")
    visibility = Event.Visibility.PUBLIC
    access_code_hash = ""


class PhotoFactory(TenantScopedFactory):
    """A photo whose original (a real JPEG) is in the private storage prefix."""

    class Meta:
        model = Photo

    class Params:
        image_width = 2400
        image_height = 1600

    event = factory.SubFactory(EventFactory)
    tenant = factory.LazyAttribute(lambda o: o.event.tenant)
    photographer = factory.SubFactory(UserFactory)
    width = factory.SelfAttribute("image_width")
    height = factory.SelfAttribute("image_height")
    original = factory.LazyAttribute(
        lambda o: storage.save_original(
            name=storage.original_name(tenant_id=o.event.tenant_id, event_id=o.event.pk, extension="jpg"),
            content=io.BytesIO(image_bytes(o.image_width, o.image_height)),
        )
    )


class ProductFactory(TenantScopedFactory):
    class Meta:
        model = Product

    event = factory.SubFactory(EventFactory)
    tenant = factory.LazyAttribute(lambda o: o.event.tenant)
    kind = ProductKind.DOWNLOAD
    photo = factory.LazyAttribute(
        lambda o: PhotoFactory(event=o.event) if o.kind in (ProductKind.DOWNLOAD, ProductKind.PRINT) else None
    )
    size = factory.LazyAttribute(lambda o: "A4" if o.kind == ProductKind.PRINT else "")
    sku = factory.Sequence(lambda n: f"SKU-{n}")


class StockFactory(TenantScopedFactory):
    class Meta:
        model = Stock

    product = factory.SubFactory(ProductFactory, kind=ProductKind.PRINT)
    tenant = factory.LazyAttribute(lambda o: o.product.tenant)
    initial_quantity = 10
    quantity = factory.SelfAttribute("initial_quantity")


class PriceListFactory(TenantScopedFactory):
    class Meta:
        model = PriceList

    event = factory.SubFactory(EventFactory)
    tenant = factory.LazyAttribute(lambda o: o.event.tenant)
    currency = "EUR"


class PriceFactory(TenantScopedFactory):
    class Meta:
        model = Price

    price_list = factory.SubFactory(PriceListFactory)
    event = factory.SelfAttribute("price_list.event")
    tenant = factory.LazyAttribute(lambda o: o.price_list.tenant)
    kind = ProductKind.DOWNLOAD
    size = ""
    amount_minor = 900
    currency = factory.SelfAttribute("price_list.currency")
