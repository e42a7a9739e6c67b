"""Events, uploads, products and prices through the dashboard's forms."""

from __future__ import annotations

import re
from typing import Any, cast

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from apps.catalog.models import Event, Photo, Price, PriceList, Product, Stock
from apps.outbox.models import OutboxMessage
from apps.tenancy.context import system_context, tenant_context
from apps.tenancy.models import AuditLog
from apps.web.studio.forms import amount_text_to_minor
from tests.factories.catalog import PriceFactory, PriceListFactory, image_bytes
from tests.web.studio.conftest import StudioPeople, form_nonce_on, new_event, new_photo, signed_in, text

pytestmark = pytest.mark.django_db
# An upload stores its originals outside any transaction (and refuses inside one), so tests that
# upload run outside the test-case transaction.
uploads = pytest.mark.django_db(transaction=True, databases=["default", "owner"])


def count(org, model, **filters) -> int:
    with tenant_context(org.pk):
        return model.objects.filter(tenant_id=org.pk, **filters).count()


def jpeg(name: str) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, image_bytes(640, 480), content_type="image/jpeg")


# --- events -------------------------------------------------------------------------------


def test_owner_creates_an_event_and_a_double_submit_creates_it_once(studio: StudioPeople) -> None:
    # given: the events page's create form
    client = signed_in(studio.owner)
    page = client.get("/studio/events/")
    nonce = form_nonce_on(page, "/studio/events/")
    form = {"nonce": nonce, "title": "City Marathon", "date": "2026-05-17", "slug": "", "visibility": "public"}
    # when: it is submitted twice (a double click)
    first = client.post("/studio/events/", form)
    second = client.post("/studio/events/", form)
    # then: one event, and both land on its page
    assert first.status_code == second.status_code == 303
    assert first["Location"] == second["Location"]
    with tenant_context(studio.org.pk):
        event = Event.objects.get(tenant=studio.org)
    assert (event.title, event.slug) == ("City Marathon", "city-marathon")
    assert first["Location"] == f"/studio/events/{event.pk}/"
    detail = client.get(first["Location"])
    assert detail.status_code == 200 and "City Marathon" in text(detail)


def test_bad_event_input_re_renders_with_errors_and_writes_nothing(studio: StudioPeople) -> None:
    client = signed_in(studio.owner)
    response = client.post(
        "/studio/events/", {"nonce": "n" * 24, "title": "", "date": "17 May", "visibility": "public"}
    )
    assert response.status_code == 400
    assert "This field is required." in text(response) and "Enter a valid date." in text(response)
    assert count(studio.org, Event) == 0


def test_service_refusals_show_in_the_form_with_their_status(studio: StudioPeople) -> None:
    new_event(studio.org, slug="gala")
    client = signed_in(studio.owner)
    # a slug already used: the service's 409
    taken = client.post(
        "/studio/events/", {"nonce": "a" * 24, "title": "Gala", "date": "2026-06-01", "visibility": "public"}
    )
    assert taken.status_code == 409
    assert "already used" in text(taken)
    # an access-code event without its code: the service's 400, on the access code field
    no_code = client.post(
        "/studio/events/",
        {"nonce": "b" * 24, "title": "Private", "date": "2026-06-01", "visibility": "access_code"},
    )
    assert no_code.status_code == 400
    assert "At least 4 characters." in text(no_code)
    assert count(studio.org, Event) == 1


def test_a_photographer_cannot_create_events(studio: StudioPeople) -> None:
    client = signed_in(studio.photographer)
    assert "Create an event" not in text(client.get("/studio/events/"))
    response = client.post(
        "/studio/events/", {"nonce": "n" * 24, "title": "Mine", "date": "2026-06-01", "visibility": "public"}
    )
    assert response.status_code == 403
    assert count(studio.org, Event) == 0


@pytest.mark.parametrize("for_studio", ["", "999999999"])
def test_an_events_form_of_a_role_that_may_not_create_events_is_refused_for_the_role(
    studio: StudioPeople, for_studio: str
) -> None:
    # given: a photographer (no create form on their events page) and a form naming no studio of theirs
    client = signed_in(studio.photographer)
    form = {"nonce": "n" * 24, "title": "Mine", "date": "2026-06-01", "visibility": "public", "for_studio": for_studio}
    # when: it is sent
    response = client.post("/studio/events/", form)
    # then: refused for the role, not taken for a form of another studio (whose answer asks to
    # switch studio and send it again, only to be refused then), and no event is made
    assert response.status_code == 403
    assert "for the studio&#x27;s owner role" in text(response)
    assert count(studio.org, Event) == 0


# --- uploads ------------------------------------------------------------------------------


@uploads
def test_a_photographer_uploads_several_photos_one_upload_each(studio: StudioPeople) -> None:
    # given: an event and the upload form on its page
    event = new_event(studio.org)
    client = signed_in(studio.photographer)
    action = f"/studio/events/{event.pk}/photos"
    nonce = form_nonce_on(client.get(f"/studio/events/{event.pk}/"), action)
    # when: three photos are sent in one form, twice (a resubmitted POST)
    for _ in range(2):
        response = client.post(action, {"nonce": nonce, "images": [jpeg("a.jpg"), jpeg("b.jpg"), jpeg("c.jpg")]})
        assert response.status_code == 303 and response["Location"] == f"/studio/events/{event.pk}/"
    # then: three photos by the photographer, each with its render requested once
    with tenant_context(studio.org.pk):
        photos = list(Photo.objects.filter(event=event))
    assert len(photos) == 3
    assert {p.photographer_id for p in photos} == {studio.photographer.pk}
    assert {(p.width, p.height, p.derivatives_status) for p in photos} == {(640, 480, "pending")}
    with system_context("test"):
        renders = OutboxMessage.objects.filter(topic="catalog.photo_uploaded", tenant_id=studio.org.pk).count()
    assert renders == 3
    # and: the event page shows them with their preview status
    page = text(client.get(f"/studio/events/{event.pk}/"))
    assert "Photos (3)" in page and page.count('Preview: <span class="status-pending">pending') == 3


@uploads
def test_one_refused_file_refuses_the_upload_and_names_that_file(studio: StudioPeople) -> None:
    event = new_event(studio.org)
    client = signed_in(studio.owner)
    not_an_image = SimpleUploadedFile("notes.jpg", b"this is not a picture", content_type="image/jpeg")
    response = client.post(
        f"/studio/events/{event.pk}/photos", {"nonce": "n" * 24, "images": [jpeg("good.jpg"), not_an_image]}
    )
    assert response.status_code == 400
    body = text(response)
    assert "notes.jpg:" in body and "Nothing was uploaded: 1 of 2 photos was refused" in body
    assert "good.jpg:" not in body
    assert count(studio.org, Photo) == 0


def test_an_empty_file_is_named_and_nothing_is_written(studio: StudioPeople) -> None:
    event = new_event(studio.org)
    client = signed_in(studio.owner)
    empty = SimpleUploadedFile("empty.png", b"", content_type="image/png")
    response = client.post(f"/studio/events/{event.pk}/photos", {"nonce": "n" * 24, "images": [empty]})
    assert response.status_code == 400
    assert "empty.png: the file is empty." in text(response)
    assert count(studio.org, Photo) == 0


@uploads
def test_an_owner_uploads_on_behalf_of_a_photographer(studio: StudioPeople) -> None:
    event = new_event(studio.org)
    client = signed_in(studio.owner)
    response = client.post(
        f"/studio/events/{event.pk}/photos",
        {"nonce": "n" * 24, "images": [jpeg("x.jpg")], "photographer": str(studio.photographer.pk)},
    )
    assert response.status_code == 303
    with tenant_context(studio.org.pk):
        assert Photo.objects.get(event=event).photographer_id == studio.photographer.pk


def test_staff_cannot_upload(studio: StudioPeople) -> None:
    event = new_event(studio.org)
    client = signed_in(studio.staff)
    assert f'action="/studio/events/{event.pk}/photos"' not in text(client.get(f"/studio/events/{event.pk}/"))
    response = client.post(f"/studio/events/{event.pk}/photos", {"nonce": "n" * 24, "images": [jpeg("x.jpg")]})
    assert response.status_code == 403
    assert count(studio.org, Photo) == 0


def test_the_event_page_shows_thumbnails_of_rendered_photos(studio: StudioPeople) -> None:
    from apps.catalog.services import photo_generate_derivatives

    photo = new_photo(new_event(studio.org), photographer=studio.photographer)
    assert photo_generate_derivatives(tenant_id=studio.org.pk, photo_id=photo.pk) == "ready"
    page = text(signed_in(studio.photographer).get(f"/studio/events/{photo.event_id}/"))
    assert f'alt="Photo #{photo.pk}"' in page and "/thumbnails/" in page


def test_the_event_pages_give_the_shop_address_of_the_event(studio: StudioPeople, settings: Any) -> None:
    # given: an event of the studio
    event = new_event(studio.org, title="Harbour Swim", slug="harbour-swim")
    shop_path = f"/s/{studio.org.slug}/harbour-swim/"
    shop_url = settings.DARKROOM_PUBLIC_BASE_URL.rstrip("/") + shop_path
    client = signed_in(studio.owner)
    # when: the owner opens the event's page and the events list
    page = text(client.get(f"/studio/events/{event.pk}/"))
    listing = text(client.get("/studio/events/"))
    # then: both give the event's shop page, which opens, rather than a bare slug that is no address
    assert f'Shop page: <a class="standalone shop-url" href="{shop_url}">{shop_url}</a>' in page
    assert f"The event's shop address ({shop_url}) does not change." in page
    assert "address /harbour-swim" not in page and "(/harbour-swim)" not in page
    assert f'href="{shop_path}"' in listing
    assert Client().get(shop_path).status_code == 200


# --- products and prices ------------------------------------------------------------------


def test_owner_adds_a_print_with_stock_once(studio: StudioPeople) -> None:
    photo = new_photo(new_event(studio.org))
    client = signed_in(studio.owner)
    action = f"/studio/events/{photo.event_id}/products"
    nonce = form_nonce_on(client.get(f"/studio/events/{photo.event_id}/"), action)
    form = {"nonce": nonce, "kind": "print", "photo": str(photo.pk), "size": "A4", "stock_quantity": "25"}
    assert client.post(action, form).status_code == 303
    assert client.post(action, form).status_code == 303
    with tenant_context(studio.org.pk):
        product = Product.objects.get(event_id=photo.event_id)
        stock = Stock.objects.get(product=product)
    assert (product.kind, product.size, stock.quantity, stock.initial_quantity) == ("print", "A4", 25, 25)
    page = text(client.get(f"/studio/events/{photo.event_id}/"))
    assert product.sku in page and "25 / 25" in page


def test_a_malformed_product_shows_the_services_field_errors(studio: StudioPeople) -> None:
    event = new_event(studio.org)
    other = new_photo(new_event(studio.org))
    client = signed_in(studio.owner)
    response = client.post(
        f"/studio/events/{event.pk}/products", {"nonce": "n" * 24, "kind": "print", "photo": str(other.pk)}
    )
    assert response.status_code == 400
    body = text(response)
    assert "No such photo in this event." in body and "Required for prints." in body
    assert count(studio.org, Product) == 0


def test_owner_sets_prices_in_major_units(studio: StudioPeople) -> None:
    event = new_event(studio.org)
    client = signed_in(studio.owner)
    action = f"/studio/events/{event.pk}/prices"
    nonce = form_nonce_on(client.get(f"/studio/events/{event.pk}/"), action)
    form = {
        "nonce": nonce,
        "currency": "eur",
        "download": "9.00",
        "bulk": "49",
        "print_size_0": "A4",
        "print_amount_0": "25,50",
        "print_size_1": "",
        "print_amount_1": "",
    }
    response = client.post(action, form)
    assert response.status_code == 303 and response["Location"] == f"/studio/events/{event.pk}/#prices"
    with tenant_context(studio.org.pk):
        prices = {(p.kind, p.size): (p.amount_minor, p.currency) for p in Price.objects.filter(event=event)}
    assert prices == {("download", ""): (900, "EUR"), ("bulk", ""): (4900, "EUR"), ("print", "A4"): (2550, "EUR")}
    page = text(client.get(f"/studio/events/{event.pk}/"))
    assert "25.50 EUR" in page and 'value="A4"' in page  # the editor shows the current prices


def test_bad_prices_are_refused_with_errors_and_write_nothing(studio: StudioPeople) -> None:
    event = new_event(studio.org)
    client = signed_in(studio.owner)
    response = client.post(
        f"/studio/events/{event.pk}/prices",
        {"nonce": "n" * 24, "currency": "EUR", "download": "9.001", "print_size_0": "A4", "print_amount_0": ""},
    )
    assert response.status_code == 400
    body = text(response)
    assert "Not an amount in EUR" in body and "Give the price of the A4 print." in body
    assert count(studio.org, Price) == 0


def test_a_print_size_twice_in_another_case_is_marked_on_its_row(studio: StudioPeople) -> None:
    event = new_event(studio.org)
    response = signed_in(studio.owner).post(
        f"/studio/events/{event.pk}/prices",
        {
            "nonce": "n" * 24,
            "currency": "EUR",
            "print_size_0": "A4",
            "print_amount_0": "25.00",
            "print_size_1": "a4",
            "print_amount_1": "26.00",
        },
    )
    assert response.status_code == 400
    assert "The size a4 is listed twice (sizes ignore case)." in text(response)
    assert count(studio.org, Price) == 0


@pytest.mark.parametrize(
    ("currency", "typed", "minor"),
    [("EUR", "9", 900), ("EUR", "9.5", 950), ("EUR", "25,50", 2550), ("USD", "1000", 100000), ("JPY", "1000", 1000)],
)
def test_amounts_in_major_units_with_a_decimal_point_or_comma(currency: str, typed: str, minor: int) -> None:
    assert amount_text_to_minor(typed, currency) == minor


@pytest.mark.parametrize(
    ("currency", "typed"),
    [
        ("JPY", "1,000"),  # a thousand yen, or one? refused, never read as 1
        ("EUR", "1,000"),  # never 1.00 EUR
        ("USD", "1.500"),
        ("USD", "1,500.00"),
        ("EUR", "1 000"),
        ("EUR", "1e3"),
        ("EUR", "-5"),
        ("EUR", "9.001"),
        ("JPY", "9.5"),
    ],
)
def test_ambiguous_or_malformed_amounts_are_refused_not_guessed(
    studio: StudioPeople, currency: str, typed: str
) -> None:
    with pytest.raises(ValueError, match=f"{currency}"):
        amount_text_to_minor(typed, currency)
    # and the price form shows the reason and writes nothing
    event = new_event(studio.org)
    response = signed_in(studio.owner).post(
        f"/studio/events/{event.pk}/prices", {"nonce": "n" * 24, "currency": currency, "download": typed}
    )
    assert response.status_code == 400
    assert "thousands separators" in text(response) or "no decimals" in text(response)
    assert count(studio.org, Price) == 0


def test_a_second_currency_is_refused_with_the_services_409(studio: StudioPeople) -> None:
    price_list = cast(PriceList, PriceListFactory(event=new_event(studio.org), currency="EUR"))
    PriceFactory(price_list=price_list, amount_minor=900)
    client = signed_in(studio.owner)
    response = client.post(
        f"/studio/events/{price_list.event_id}/prices", {"nonce": "n" * 24, "currency": "USD", "download": "10"}
    )
    assert response.status_code == 409
    assert "This event is priced in EUR" in text(response)
    with tenant_context(studio.org.pk):
        assert list(Price.objects.values_list("amount_minor", "currency")) == [(900, "EUR")]


def price_input(page: str, name: str) -> str:
    """The `<input>` tag of the price editor's field `name`."""
    form = page[page.index('id="price-h"') :]
    found = re.search(rf'<input[^>]*\bname="{name}"[^>]*>', form)
    assert found, f"the price editor has no {name} field"
    return found.group(0)


def price_input_errors(page: str) -> str:
    """The price editor's currency paragraph (field, help text and errors)."""
    form = page[page.index('id="price-h"') :]
    return form[form.index('name="currency"') : form.index('name="download"')]


def test_a_made_up_currency_is_refused_by_the_price_form_and_fixes_nothing(studio: StudioPeople) -> None:
    # given: an event without prices
    event = new_event(studio.org)
    client = signed_in(studio.owner)
    action = f"/studio/events/{event.pk}/prices"
    # when: the owner types a currency Darkroom does not sell in
    refused = client.post(action, {"nonce": "n" * 24, "currency": "xyz", "download": "13"})
    # then: the form says so at the currency, and nothing is written (the currency is still free)
    assert refused.status_code == 400
    assert "XYZ is not a currency Darkroom can sell in." in price_input_errors(text(refused))
    assert count(studio.org, PriceList) == count(studio.org, Price) == 0
    assert client.post(action, {"nonce": "m" * 24, "currency": "EUR", "download": "13"}).status_code == 303
    with tenant_context(studio.org.pk):
        assert list(Price.objects.values_list("amount_minor", "currency")) == [(1300, "EUR")]


def test_edit_prices_shows_the_events_currency_and_prices(studio: StudioPeople) -> None:
    # given: an event priced in JPY through the form
    event = new_event(studio.org)
    client = signed_in(studio.owner)
    action = f"/studio/events/{event.pk}/prices"
    form = {"nonce": "n" * 24, "currency": "JPY", "download": "1500", "bulk": "9000"}
    assert client.post(action, {**form, "print_size_0": "A4", "print_amount_0": "3000"}).status_code == 303
    # when: the owner opens the event page again
    page = text(client.get(f"/studio/events/{event.pk}/"))
    # then: the editor shows the fixed currency (read-only) and the current prices
    currency = price_input(page, "currency")
    assert 'value="JPY"' in currency and "readonly" in currency
    assert "This event is priced in JPY (“Change the currency” below)." in page
    assert 'value="1500"' in price_input(page, "download") and 'value="9000"' in price_input(page, "bulk")
    assert 'value="A4"' in price_input(page, "print_size_0")
    assert 'value="3000"' in price_input(page, "print_amount_0")
    # and: an event without a price list offers a free, empty currency
    fresh = text(client.get(f"/studio/events/{new_event(studio.org).pk}/"))
    assert "value=" not in price_input(fresh, "currency") and "readonly" not in price_input(fresh, "currency")


def test_a_price_list_without_prices_still_shows_its_fixed_currency(studio: StudioPeople) -> None:
    price_list = cast(PriceList, PriceListFactory(event=new_event(studio.org), currency="EUR"))
    page = text(signed_in(studio.owner).get(f"/studio/events/{price_list.event_id}/"))
    assert 'value="EUR"' in price_input(page, "currency")


def test_an_empty_currency_means_the_events_fixed_one(studio: StudioPeople) -> None:
    # given: an event priced in EUR
    price_list = cast(PriceList, PriceListFactory(event=new_event(studio.org), currency="EUR"))
    PriceFactory(price_list=price_list, kind="download", amount_minor=900)
    # when: the owner changes the download price with the currency left empty
    response = signed_in(studio.owner).post(
        f"/studio/events/{price_list.event_id}/prices", {"nonce": "n" * 24, "currency": "", "download": "12"}
    )
    # then: the price is changed in EUR
    assert response.status_code == 303
    with tenant_context(studio.org.pk):
        assert list(Price.objects.values_list("amount_minor", "currency")) == [(1200, "EUR")]


@pytest.mark.parametrize(
    ("currency", "typed", "maximum"),
    [
        ("EUR", "99999999999999", "10000000000.00 EUR"),
        ("EUR", "99999999999999999999", "10000000000.00 EUR"),
        ("JPY", "99999999999999", "1000000000000 JPY"),
        ("KWD", "9999999999.999", "1000000000.000 KWD"),
    ],
)
def test_a_price_over_the_maximum_is_refused_with_the_maximum_in_major_units(
    studio: StudioPeople, currency: str, typed: str, maximum: str
) -> None:
    event = new_event(studio.org)
    response = signed_in(studio.owner).post(
        f"/studio/events/{event.pk}/prices", {"nonce": "n" * 24, "currency": currency, "bulk": typed}
    )
    assert response.status_code == 400
    assert f"A price is at most {maximum}." in text(response)
    assert "more than zero" not in text(response)
    assert count(studio.org, Price) == 0


def test_a_price_of_zero_is_refused_as_zero(studio: StudioPeople) -> None:
    event = new_event(studio.org)
    response = signed_in(studio.owner).post(
        f"/studio/events/{event.pk}/prices", {"nonce": "n" * 24, "currency": "EUR", "bulk": "0.00"}
    )
    assert response.status_code == 400 and "A price is more than zero." in text(response)


@pytest.mark.parametrize("role", ["photographer", "staff"])
def test_only_owners_edit_prices_and_products(studio: StudioPeople, role: str) -> None:
    photo = new_photo(new_event(studio.org))
    client = signed_in(getattr(studio, role))
    page = text(client.get(f"/studio/events/{photo.event_id}/"))
    assert "Edit prices" not in page and "Add a product" not in page
    prices = client.post(
        f"/studio/events/{photo.event_id}/prices", {"nonce": "n" * 24, "currency": "EUR", "download": "9"}
    )
    products = client.post(
        f"/studio/events/{photo.event_id}/products", {"nonce": "m" * 24, "kind": "download", "photo": str(photo.pk)}
    )
    assert prices.status_code == products.status_code == 403
    assert count(studio.org, Price) == count(studio.org, Product) == 0


def test_a_form_without_its_nonce_is_refused(studio: StudioPeople) -> None:
    client = signed_in(studio.owner)
    response = client.post("/studio/events/", {"title": "X", "date": "2026-06-01", "visibility": "public"})
    assert response.status_code == 400
    assert "reload the page" in text(response)
    assert count(studio.org, Event) == 0


def test_a_studio_upload_over_the_request_cap_is_a_413_page_in_megabytes(studio: StudioPeople, settings: Any) -> None:
    # given: a request cap smaller than the photos chosen
    settings.API_MAX_UPLOAD_BYTES = 2 * 2**20
    event = new_event(studio.org)
    client = signed_in(studio.photographer)
    action = f"/studio/events/{event.pk}/photos"
    nonce = form_nonce_on(client.get(f"/studio/events/{event.pk}/"), action)
    files = [SimpleUploadedFile(f"p{i}.png", image_bytes(900, 900) + b"\0" * 2**20) for i in range(2)]
    # when: the browser sends them
    page = client.post(
        action,
        {"nonce": nonce, "photos": files},
        HTTP_ACCEPT="text/html,*/*;q=0.8",
        HTTP_REFERER=f"http://testserver/studio/events/{event.pk}/",
    )
    # then: a page in the photographer's units, with the way back, and nothing kept
    body = page.content.decode()
    assert page.status_code == 413 and page["Content-Type"].startswith("text/html")
    assert "at most 2 MB can be sent at once" in body and "Nothing was kept" in body
    assert f'href="http://testserver/studio/events/{event.pk}/"' in body
    with tenant_context(studio.org.pk):
        assert not event.photos.exists()


def test_the_studio_button_offers_them_once_per_form(studio: StudioPeople) -> None:
    with tenant_context(studio.org.pk):
        event = new_event(studio.org)
        for _ in range(2):
            new_photo(event)
    client = signed_in(studio.owner)
    action = f"/studio/events/{event.pk}/products/downloads"
    page = client.get(f"/studio/events/{event.pk}/")
    assert "Sell every photo as a download" in page.content.decode()
    nonce = form_nonce_on(page, action)
    first = client.post(action, {"nonce": nonce})
    again = client.post(action, {"nonce": nonce})  # a double click
    assert first.status_code == again.status_code == 303
    assert first["Location"] == f"/studio/events/{event.pk}/#products"
    with tenant_context(studio.org.pk):
        assert Product.objects.filter(event=event, kind="download").count() == 2
        assert AuditLog.objects.filter(action="catalog.downloads_offered", target_id=str(event.pk)).count() == 1
    assert signed_in(studio.photographer).post(action, {"nonce": "n" * 24}).status_code == 403
