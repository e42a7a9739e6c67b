"""A priced, stocked shop for commerce tests: one event, one photo by a photographer, and its
download, print (with stock) and bulk products, all priced in one currency."""

from __future__ import annotations

from dataclasses import dataclass

from apps.catalog.models import Event, Photo, Product, ProductKind, Stock
from apps.commerce.services.checkout import ShippingIn
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Organization, User
from tests.factories.catalog import (
    EventFactory,
    PhotoFactory,
    PriceFactory,
    PriceListFactory,
    ProductFactory,
    StockFactory,
)
from tests.factories.tenancy import UserFactory


@dataclass
class Shop:
    org: Organization
    event: Event
    photographer: User
    photo: Photo
    download: Product
    print: Product
    bulk: Product
    stock: Stock
    currency: str
    prices: dict[str, int]

    def stock_quantity(self) -> int:
        with tenant_context(self.org.pk):
            return Stock.objects.get(pk=self.stock.pk).quantity

    def set_stock_quantity(self, quantity: int) -> None:
        """The print's stock left, set directly (as other shoppers' purchases would leave it)."""
        with tenant_context(self.org.pk):
            Stock.objects.filter(pk=self.stock.pk).update(quantity=quantity)

    def add_event_bulk(self) -> Product:
        """Another event of the studio, priced like this one, and its bulk product: an "all its
        photos" line that does not include this shop's photo (a checkout refuses a download next
        to the bulk product of the download's own event)."""
        event = EventFactory(tenant=self.org)
        bulk = ProductFactory(event=event, kind=ProductKind.BULK, photo=None)
        price_list = PriceListFactory(event=event, currency=self.currency)
        PriceFactory(price_list=price_list, kind=ProductKind.BULK, size="", amount_minor=self.prices["bulk"])
        return bulk

    def add_photo(self) -> tuple[Photo, Product]:
        """Another photo of the event (same photographer) with its download product."""
        photo = PhotoFactory(event=self.event, photographer=self.photographer)
        product = ProductFactory(event=self.event, kind=ProductKind.DOWNLOAD, photo=photo)
        return photo, product


def make_shop(
    *,
    org: Organization,
    currency: str = "EUR",
    download_price: int = 900,
    print_price: int = 2500,
    bulk_price: int = 4900,
    stock: int = 10,
) -> Shop:
    event = EventFactory(tenant=org)
    photographer = UserFactory()
    photo = PhotoFactory(event=event, photographer=photographer)
    download = ProductFactory(event=event, kind=ProductKind.DOWNLOAD, photo=photo)
    print_product = ProductFactory(event=event, kind=ProductKind.PRINT, photo=photo, size="A4")
    bulk = ProductFactory(event=event, kind=ProductKind.BULK, photo=None)
    stock_row = StockFactory(product=print_product, initial_quantity=stock, quantity=stock)
    price_list = PriceListFactory(event=event, currency=currency)
    PriceFactory(price_list=price_list, kind=ProductKind.DOWNLOAD, size="", amount_minor=download_price)
    PriceFactory(price_list=price_list, kind=ProductKind.PRINT, size="A4", amount_minor=print_price)
    PriceFactory(price_list=price_list, kind=ProductKind.BULK, size="", amount_minor=bulk_price)
    return Shop(
        org=org,
        event=event,
        photographer=photographer,
        photo=photo,
        download=download,
        print=print_product,
        bulk=bulk,
        stock=stock_row,
        currency=currency,
        prices={"download": download_price, "print": print_price, "bulk": bulk_price},
    )


# A complete shipping address, for checkouts with prints (the API's `shipping` object and the
# service's `ShippingIn`).
SHIPPING_JSON: dict[str, str] = {
    "name": "Ann Example",
    "line1": "Hauptstrasse 1",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}


def shipping_in(**overrides: str) -> ShippingIn:
    return ShippingIn(**{**SHIPPING_JSON, **overrides})
