"""Events: the list and the create form; one event's edit form (title, date, visibility, access
code), its photos, uploads, products with stock (each deactivated or reactivated, prints restocked,
from its row; every photo offered as a download, now and at upload, or no longer at upload), the
photos not sold on their own, and its price list."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods, require_POST

from apps.catalog import selectors as catalog
from apps.catalog import services
from apps.catalog.downloads import DownloadNotOffered, downloads_not_offered
from apps.catalog.errors import (
    EventNotFound,
    EventSlugTaken,
    PriceListCurrencyMismatch,
    PriceListMissing,
    ProductNotFound,
    ProductNotRestockable,
    StockLimitExceeded,
)
from apps.catalog.models import Event, Price, Product, ProductKind
from apps.catalog.products import Actor
from apps.catalog.uploads import megabytes
from apps.core.problems import DomainError
from apps.payments.providers.base import money_text
from apps.web.studio import selectors
from apps.web.studio.access import CATALOG_WRITE_ROLES, UPLOAD_ROLES, Studio, problem_page, studio_page
from apps.web.studio.forms import (
    MAX_FILES_PER_UPLOAD,
    PRINT_PRICE_ROWS_EMPTY,
    DownloadsOfferForm,
    EventEditForm,
    EventForm,
    PriceCurrencyForm,
    PriceListForm,
    ProductActiveForm,
    ProductForm,
    RestockForm,
    UploadForm,
)
from apps.web.studio.views.common import page_of, show_refusal, submit

PHOTOS_PER_PAGE = 60
PRODUCTS_PER_PAGE = 25
# The products table pages with its own parameter: the photos above it use `?page=`.
PRODUCTS_PAGE = "products_page"
_PAGE_NUMBER = re.compile(r"^[1-9][0-9]{0,5}$")
_PRINT_ROW = re.compile(r"^print_size_(\d{1,2})$")


class UploadsRefused(DomainError):
    """Some files of one upload form were refused: the whole form is, so it can be sent again as
    one submission (its nonce stored nothing)."""

    slug = "upload-refused"
    title = "Upload refused"

    def __init__(self, refused: list[tuple[str, DomainError]], accepted: list[str]) -> None:
        statuses = {exc.status_code for _, exc in refused}
        self.status_code = statuses.pop() if len(statuses) == 1 else 400
        total = len(refused) + len(accepted)
        detail = (
            "Nothing was uploaded: the photo was refused. Fix it and send it again."
            if total == 1
            else ngettext(
                "Nothing was uploaded: %(refused)d of %(total)d photos was refused. "
                "Remove or fix it and send the photos again.",
                "Nothing was uploaded: %(refused)d of %(total)d photos were refused. "
                "Remove or fix them and send the photos again.",
                len(refused),
            )
            % {"refused": len(refused), "total": total}
        )
        errors = {NON_FIELD_ERRORS: [detail], "images": [f"{name}: {exc.detail}" for name, exc in refused]}
        super().__init__(detail, extra={"errors": errors})


# --- events -------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@studio_page(post_roles=CATALOG_WRITE_ROLES)
def events(request: HttpRequest, studio: Studio) -> HttpResponse:
    """The studio's events, for every member; the create form, for the roles that write the catalog."""
    if request.method == "POST":
        form = EventForm(request.POST)

        def effect() -> str:
            data = form.cleaned_data
            event = services.event_create(
                tenant_id=studio.tenant_id,
                title=data["title"],
                date=data["date"],
                slug=data["slug"],
                visibility=data["visibility"],
                access_code=data["access_code"] or None,
            )
            messages.success(request, f"Event “{event.title}” created.")
            return reverse("studio:event", args=[event.pk])

        return submit(
            request,
            studio,
            form=form,
            effect=effect,
            rerender=lambda status: _render_events(request, studio, form, status),
            error_fields={EventSlugTaken: "slug"},
        )
    return _render_events(request, studio, EventForm() if studio.can_write_catalog else None, 200)


def _render_events(request: HttpRequest, studio: Studio, form: EventForm | None, status: int) -> HttpResponse:
    page = page_of(request, catalog.events_list(tenant_id=studio.tenant_id))
    counts = selectors.photo_counts_of_events(tenant_id=studio.tenant_id, event_ids=[e.pk for e in page])
    context = {"studio": studio, "page": page, "rows": [(e, counts[e.pk]) for e in page], "form": form}
    return render(request, "studio/events.html", context, status=status)


# --- one event ----------------------------------------------------------------------------


def _event_or_404(request: HttpRequest, studio: Studio, event_id: int) -> Event | HttpResponse:
    try:
        return catalog.event_get(tenant_id=studio.tenant_id, event_id=event_id)
    except EventNotFound:
        return problem_page(
            request, studio, status=404, title="Event not found", message="This studio has no such event."
        )


@dataclass(frozen=True)
class ProductRow:
    """One row of the products table: the product (annotated by `products_of_event`), its price,
    and for owners its deactivate/reactivate form and, for prints, its restock form."""

    product: Product
    price: str | None
    active_form: ProductActiveForm | None
    restock_form: RestockForm | None


def _row_prefix(product_id: int) -> str:
    """Every row has its own forms: the prefix keeps their field names and element ids apart."""
    return f"product-{product_id}"


def _product_rows(
    studio: Studio, products: Any, bound: dict[int, ProductActiveForm | RestockForm] | None
) -> list[ProductRow]:
    rows = []
    bound = bound or {}
    for product in products:
        active_form = restock_form = None
        if studio.can_write_catalog:
            prefix = _row_prefix(product.pk)
            kept = bound.get(product.pk)
            active_form = kept if isinstance(kept, ProductActiveForm) else ProductActiveForm(prefix=prefix)
            if isinstance(kept, RestockForm):  # a refused restock shows its errors, whatever the kind
                restock_form = kept
            elif product.kind == ProductKind.PRINT:
                restock_form = RestockForm(prefix=prefix)
        rows.append(ProductRow(product, _price_of(product), active_form, restock_form))
    return rows


def _render_event(
    request: HttpRequest,
    studio: Studio,
    event: Event,
    *,
    status: int = 200,
    upload_form: UploadForm | None = None,
    product_form: ProductForm | None = None,
    price_form: PriceListForm | None = None,
    currency_form: PriceCurrencyForm | None = None,
    row_form: tuple[int, ProductActiveForm | RestockForm] | None = None,
    edit_form: EventEditForm | None = None,
) -> HttpResponse:
    tenant_id = studio.tenant_id
    photos = page_of(request, catalog.photos_of_event(tenant_id=tenant_id, event_id=event.pk), per_page=PHOTOS_PER_PAGE)
    products = page_of(
        request,
        catalog.products_of_event(tenant_id=tenant_id, event_id=event.pk),
        per_page=PRODUCTS_PER_PAGE,
        param=PRODUCTS_PAGE,
    )
    prices = list(catalog.prices_of_event(tenant_id=tenant_id, event_id=event.pk))
    download_price = next((p for p in prices if p.kind == ProductKind.DOWNLOAD and not p.size), None)
    if studio.can_upload and upload_form is None:
        upload_form = UploadForm(photographers=_photographers(studio))
    price_list = None
    if studio.can_write_catalog:
        product_form = product_form or ProductForm()
        price_list = catalog.price_list_of_event(tenant_id=tenant_id, event_id=event.pk)
        price_form = price_form or PriceListForm.for_price_list(price_list, prices)
        if price_list is not None:
            currency_form = currency_form or PriceCurrencyForm(current=price_list.currency)
        edit_form = edit_form or EventEditForm.for_event(event)
    shop_path = reverse("shop:event", kwargs={"studio_slug": studio.org.slug, "event_slug": event.slug})
    context: dict[str, Any] = {
        "studio": studio,
        "event": event,
        # Absolute, as the owner shares it with attendees (the slug alone is no address).
        "shop_url": settings.DARKROOM_PUBLIC_BASE_URL.rstrip("/") + shop_path,
        "photos": photos,
        "photo_rows": selectors.photo_rows(tenant_id=tenant_id, photos=photos.object_list),
        "photo_count": selectors.photo_counts_of_events(tenant_id=tenant_id, event_ids=[event.pk])[event.pk],
        "products_page": products,
        "product_rows": _product_rows(studio, products, dict([row_form]) if row_form else None),
        "prices": [(price, money_text(price.amount_minor, price.currency)) for price in prices],
        "upload_form": upload_form,
        "product_form": product_form,
        "price_form": price_form,
        "currency_form": currency_form,
        # Read now, not from a re-rendered form: the currency form sends back what the page shows.
        "priced_in": price_list.currency if price_list is not None else None,
        "edit_form": edit_form,
        "downloads_offer_form": DownloadsOfferForm() if studio.can_write_catalog else None,
        "download_price": _money_of(download_price),
        "not_for_sale": _not_for_sale(studio, event),
        "max_files": MAX_FILES_PER_UPLOAD,
        "max_upload_mb": settings.API_MAX_UPLOAD_BYTES // 2**20,
        "max_photo_mb": megabytes(settings.CATALOG_MAX_UPLOAD_BYTES),
    }
    return render(request, "studio/event_detail.html", context, status=status)


def _money_of(price: Price | None) -> str | None:
    return None if price is None else money_text(price.amount_minor, price.currency)


def _download_price(studio: Studio, event: Event) -> str | None:
    """The event's download price, formatted; None when it has none (downloads are not for sale)."""
    prices = catalog.prices_of_event(tenant_id=studio.tenant_id, event_id=event.pk)
    return _money_of(prices.filter(kind=ProductKind.DOWNLOAD, size="").first())


# Photos a message or the event page names one by one; the rest are counted.
_NAMED_PHOTOS = 10


def _photo_numbers(photo_ids: Sequence[int], total: int) -> str:
    """ "#7, #8 and 3 more": the first photos of `total` by number."""
    named = ", ".join(f"#{photo_id}" for photo_id in photo_ids[:_NAMED_PHOTOS])
    more = total - min(len(photo_ids), _NAMED_PHOTOS)
    return f"{named} and {more} more" if more else named


def _not_for_sale(studio: Studio, event: Event) -> str:
    """Which live photos of the event are not sold on their own (no download product), in a
    sentence; "" when every one is."""
    missing = catalog.photos_without_download(tenant_id=studio.tenant_id, event_id=event.pk)
    total = missing.count()
    if not total:
        return ""
    first = list(missing[:_NAMED_PHOTOS])
    photos = "1 photo of this event is" if total == 1 else f"{total} photos of this event are"
    own = "its" if total == 1 else "their"
    return f"{photos} not for sale on {own} own (no download): {_photo_numbers(first, total)}."


def _price_of(product: Any) -> str | None:
    """The annotated price of a product (`products_of_event`), formatted; None when unpriced."""
    amount = getattr(product, "price_amount_minor", None)
    return None if amount is None else money_text(amount, product.price_currency)


def _photographers(studio: Studio) -> list[tuple[int, str]] | None:
    """Owners may name the photographer of an upload; others upload as themselves."""
    if not studio.can_write_catalog:
        return None
    return selectors.uploaders_of_tenant(tenant_id=studio.tenant_id)


@require_http_methods(["GET"])
@studio_page()
def event_detail(request: HttpRequest, studio: Studio, event_id: int) -> HttpResponse:
    event = _event_or_404(request, studio, event_id)
    if isinstance(event, HttpResponse):
        return event
    return _render_event(request, studio, event)


@require_POST
@studio_page(*CATALOG_WRITE_ROLES)
def event_edit(request: HttpRequest, studio: Studio, event_id: int) -> HttpResponse:
    """Change the event's title, date, visibility or access code (an empty code keeps the current
    one; see `apps.catalog.events.event_update`), once per rendered form: only the fields changed
    on the page (`EventEditForm.changed_fields`), so a stale tab does not put back old values."""
    event = _event_or_404(request, studio, event_id)
    if isinstance(event, HttpResponse):
        return event
    form = EventEditForm(request.POST)

    def effect() -> str:
        changed = form.changed_fields()
        access_code = form.cleaned_data["access_code"] or None
        if access_code is None and all(value is None for value in changed.values()):
            messages.info(request, "Nothing was changed.")
            return reverse("studio:event", args=[event.pk])
        updated = services.event_update(
            tenant_id=studio.tenant_id,
            event_id=event.pk,
            **changed,
            access_code=access_code,
            actor=Actor.member(studio.user),
        )
        messages.success(request, f"Event “{updated.title}” saved.")
        return reverse("studio:event", args=[event.pk])

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render_event(request, studio, event, status=status, edit_form=form),
    )


@require_POST
@studio_page(*UPLOAD_ROLES)
def event_upload(request: HttpRequest, studio: Studio, event_id: int) -> HttpResponse:
    """Several photos in one form, all or none.

    Every file is checked, then every original stored, before any transaction opens (storage is
    a network upload in production); a refused file refuses the form, naming each refused file,
    and stores nothing (an original stored before a late refusal is deleted at once). Then one
    `submit_once` transaction creates every photo's rows. Originals that no committed photo names
    afterwards (the transaction failed, or the form was a replay that never ran it) are deleted
    right away; the orphan sweep is the backstop for a crash in between.
    """
    event = _event_or_404(request, studio, event_id)
    if isinstance(event, HttpResponse):
        return event
    form = UploadForm(request.POST, request.FILES, photographers=_photographers(studio))
    field_map = {"image": "images", "photographer_id": "photographer"}

    def rerender(status: int) -> HttpResponse:
        return _render_event(request, studio, event, status=status, upload_form=form)

    if not form.is_valid():
        return rerender(400)
    try:
        stored = _store_originals(studio, event, form.cleaned_data["images"], form.cleaned_data.get("photographer"))
    except DomainError as exc:
        show_refusal(form, exc, field_map=field_map, field="images")
        return rerender(exc.status_code)
    created: list[int] = []

    def effect() -> str:
        for original in stored:
            photo = services.photo_create(tenant_id=studio.tenant_id, uploaded_by=studio.user, stored=original)
            created.append(photo.pk)
        _uploaded_messages(request, studio, event, created)
        return reverse("studio:event", args=[event.pk])

    response: HttpResponse | None = None
    try:
        response = submit(
            request,
            studio,
            form=form,
            effect=effect,
            rerender=rerender,
            field_map=field_map,
            error_fields={DomainError: "images"},
        )
        return response
    finally:
        # submit_once's transaction has ended here. A replay never ran the effect; a refusal or
        # an error rolled it back: then no photo names these originals (discarding checks).
        if response is None or response.status_code != 303 or len(created) != len(stored):
            services.photo_originals_discard(stored=stored)


def _uploaded_messages(request: HttpRequest, studio: Studio, event: Event, photo_ids: list[int]) -> None:
    """What an upload did, and whether its photos are for sale on their own. Inside the upload's
    transaction, whose `photo_create` holds the event's rule (read FOR SHARE) until it commits."""
    uploaded = ngettext(
        "%(count)d photo uploaded; its preview is being made.",
        "%(count)d photos uploaded; their previews are being made.",
        len(photo_ids),
    ) % {"count": len(photo_ids)}
    one = len(photo_ids) == 1  # what follows speaks of that photo, or of those photos
    tenant_id = studio.tenant_id
    missing = list(catalog.photos_without_download(tenant_id=tenant_id, event_id=event.pk, photo_ids=photo_ids))
    if not catalog.event_get(tenant_id=tenant_id, event_id=event.pk).downloads_for_new_photos:
        if not missing:  # each had its download already (one made by hand meanwhile)
            messages.success(request, uploaded)
            return
        them = "it" if one else "them"
        how = (
            f"“Sell every photo as a download” under Products and stock sells {them}, and every photo uploaded later."
            if studio.can_write_catalog
            else f"An owner of the studio can sell {them}, and every photo uploaded later, with “Sell every photo "
            "as a download”."
        )
        messages.success(request, uploaded)
        not_for_sale = "It is not for sale on its own" if one else "They are not for sale on their own"
        messages.warning(request, f"{not_for_sale} (no download): {how}")
        return
    price = _download_price(studio, event)
    if len(missing) == len(photo_ids):
        messages.success(request, uploaded)
    elif price is not None:
        for_sale = (
            f"It is for sale as a download ({price} a photo) once its preview is ready."
            if one
            else f"They are for sale as downloads ({price} a photo) once their previews are ready."
        )
        messages.success(request, f"{uploaded} {for_sale}")
    else:
        offered = "It is offered as a download" if one else "They are offered as downloads"
        messages.success(
            request,
            f"{uploaded} {offered}, but not for sale until the event has a download price: "
            "set it in the price list below.",
        )
    if missing:
        messages.error(
            request, _not_offered_text(downloads_not_offered(tenant_id=tenant_id, event_id=event.pk, photo_ids=missing))
        )


def _store_originals(
    studio: Studio, event: Event, images: list[UploadedFile], photographer_id: int | None
) -> list[services.StoredOriginal]:
    """Check every file (all refusals named), then store each original, outside any transaction.

    Raises UploadsRefused for bad files (nothing stored), or the refusal of a store (the event
    or the uploader's role changed meanwhile) after deleting what it had stored.
    """
    refused: list[tuple[str, DomainError]] = []
    accepted: list[str] = []
    for image in images:
        try:
            services.photo_original_check(image=image, image_size=image.size or 0)
        except DomainError as exc:
            refused.append((image.name or "a file", exc))
        else:
            accepted.append(image.name or "a file")
    if refused:
        raise UploadsRefused(refused, accepted)
    stored: list[services.StoredOriginal] = []
    try:
        for image in images:
            stored.append(
                services.photo_original_store(
                    tenant_id=studio.tenant_id,
                    event_id=event.pk,
                    uploaded_by=studio.user,
                    image=image,
                    image_size=image.size or 0,
                    photographer_id=photographer_id,
                )
            )
    except BaseException:
        services.photo_originals_discard(stored=stored)
        raise
    return stored


@require_POST
@studio_page(*CATALOG_WRITE_ROLES)
def event_products(request: HttpRequest, studio: Studio, event_id: int) -> HttpResponse:
    event = _event_or_404(request, studio, event_id)
    if isinstance(event, HttpResponse):
        return event
    form = ProductForm(request.POST)

    def effect() -> str:
        data = form.cleaned_data
        product = services.product_create(
            tenant_id=studio.tenant_id,
            event_id=event.pk,
            kind=data["kind"],
            photo_id=data["photo"],
            size=data["size"].strip(),
            sku=data["sku"] or None,
            stock_quantity=data["stock_quantity"],
        )
        messages.success(request, f"Product {product.sku} added.")
        return reverse("studio:event", args=[event.pk]) + "#products"

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render_event(request, studio, event, status=status, product_form=form),
        field_map={"photo_id": "photo"},
    )


@require_POST
@studio_page(*CATALOG_WRITE_ROLES)
def event_prices(request: HttpRequest, studio: Studio, event_id: int) -> HttpResponse:
    event = _event_or_404(request, studio, event_id)
    if isinstance(event, HttpResponse):
        return event
    rows = [int(m.group(1)) for key in request.POST if (m := _PRINT_ROW.match(key))]
    price_list = catalog.price_list_of_event(tenant_id=studio.tenant_id, event_id=event.pk)
    form = PriceListForm(
        request.POST,
        print_rows=max(rows, default=PRINT_PRICE_ROWS_EMPTY - 1) + 1,
        fixed_currency=price_list.currency if price_list is not None else None,
    )

    def effect() -> str:
        services.price_list_set(
            tenant_id=studio.tenant_id,
            event_id=event.pk,
            currency=form.cleaned_data["currency"],
            prices=form.cleaned_data["prices"],
        )
        messages.success(request, "Prices saved.")
        return reverse("studio:event", args=[event.pk]) + "#prices"

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render_event(request, studio, event, status=status, price_form=form),
        error_fields={PriceListCurrencyMismatch: "currency"},
    )


@require_POST
@studio_page(*CATALOG_WRITE_ROLES)
def event_prices_currency(request: HttpRequest, studio: Studio, event_id: int) -> HttpResponse:
    """Price the event in another currency; every price is removed (audited). The form names the
    currency its page showed: if the event is priced in another one by then, the change is refused
    (409, shown in the form with the current currency) and nothing is removed."""
    event = _event_or_404(request, studio, event_id)
    if isinstance(event, HttpResponse):
        return event
    price_list = catalog.price_list_of_event(tenant_id=studio.tenant_id, event_id=event.pk)
    if price_list is None:  # the service refuses the same (PriceListMissing); no form to show it in
        return problem_page(
            request,
            studio,
            status=PriceListMissing.status_code,
            title=PriceListMissing.title,
            message=PriceListMissing.message,
        )
    form = PriceCurrencyForm(request.POST, current=price_list.currency)

    def effect() -> str:
        services.price_list_currency_change(
            tenant_id=studio.tenant_id,
            event_id=event.pk,
            currency=form.cleaned_data["currency"],
            actor=Actor.member(studio.user),
            expected_currency=form.cleaned_data["expected_currency"],
        )
        messages.success(
            request,
            f"This event is now priced in {form.cleaned_data['currency']}. Its prices were removed: "
            "set them again, or its products cannot be bought.",
        )
        return reverse("studio:event", args=[event.pk]) + "#prices"

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render_event(request, studio, event, status=status, currency_form=form),
    )


# --- one product: stop or resume selling it, restock a print ------------------------------


def _event_product_or_404(
    request: HttpRequest, studio: Studio, event_id: int, product_id: int
) -> tuple[Event, Product] | HttpResponse:
    """The event and its product (active or not); an unknown event, or another event's or
    studio's product, is a 404 page."""
    event = _event_or_404(request, studio, event_id)
    if isinstance(event, HttpResponse):
        return event
    try:
        product = catalog.product_get(tenant_id=studio.tenant_id, product_id=product_id)
    except ProductNotFound:
        product = None
    if product is None or product.event_id != event.pk:
        return problem_page(
            request, studio, status=404, title="Product not found", message="This event has no such product."
        )
    return event, product


def _products_url(request: HttpRequest, event: Event) -> str:
    """Back to the products table, on the page the form was sent from."""
    url = reverse("studio:event", args=[event.pk])
    number = request.GET.get(PRODUCTS_PAGE, "")
    if _PAGE_NUMBER.match(number) and number != "1":
        url += f"?{PRODUCTS_PAGE}={number}"
    return url + "#products"


def _photos_are(count: int) -> str:
    """ "1 photo is", "3 photos are": the start of a sentence about `count` photos."""
    return "1 photo is" if count == 1 else f"{count} photos are"


def _nothing_to_offer_text(studio: Studio, event: Event, *, priced: bool) -> str:
    """Why an offer created no download although every photo could have one."""
    if not selectors.photo_counts_of_events(tenant_id=studio.tenant_id, event_ids=[event.pk])[event.pk].live:
        if priced:
            return "This event has no photos yet: each photo uploaded to it will be for sale as a download."
        return (
            "This event has no photos yet: each photo uploaded to it will be offered as a download, but not for "
            "sale until the event has a download price: set it in the price list below."
        )
    if priced:
        return (
            "Every photo of this event already has its download; a deactivated one stays deactivated until "
            "you reactivate it in the products below. Photos uploaded later are offered as downloads too."
        )
    return (
        "Every photo of this event already has its download, but none is for sale until the event has a "
        "download price: set it in the price list below. Photos uploaded later are offered as downloads too."
    )


def _not_offered_text(not_offered: Sequence[DownloadNotOffered]) -> str:
    """Which photos got no download because the SKU of their download is another product's (named
    as stored), and what to do about it."""
    case_note = "SKUs are unique whatever their case"
    if len(not_offered) == 1:
        (one,) = not_offered
        differs = f" ({case_note})" if one.taken_by_sku != one.sku else ""
        return (
            f"Photo {one.photo_id} could not be offered as a download: its SKU {one.sku} is already used by "
            f"product {one.taken_by_sku}{differs}. Add its download under “Add a product” with an SKU of your choice."
        )
    shown = not_offered[:_NAMED_PHOTOS]
    named = ", ".join(f"photo {n.photo_id} ({n.sku}, used by {n.taken_by_sku})" for n in shown)
    more = len(not_offered) - len(shown)
    differs = f" {case_note}." if any(n.taken_by_sku != n.sku for n in not_offered) else ""
    return (
        f"{len(not_offered)} photos could not be offered as downloads: the SKU each would get is already used by "
        f"another product: {named}{f', and {more} more' if more else ''}.{differs} Add their downloads under "
        "“Add a product” with SKUs of your choice."
    )


@require_POST
@studio_page(*CATALOG_WRITE_ROLES)
def event_downloads_offer(request: HttpRequest, studio: Studio, event_id: int) -> HttpResponse:
    """Offer every photo of the event as a download, now and when uploaded later (see
    `download_products_ensure`), or (`new_photos` "0") stop offering photos uploaded later
    (`downloads_for_new_photos_stop`); once per rendered form."""
    event = _event_or_404(request, studio, event_id)
    if isinstance(event, HttpResponse):
        return event
    form = DownloadsOfferForm(request.POST)

    def effect() -> str:
        products_url = f"{reverse('studio:event', args=[event.pk])}#products"
        actor = Actor.member(studio.user)
        if form.stops():
            services.downloads_for_new_photos_stop(tenant_id=studio.tenant_id, event_id=event.pk, actor=actor)
            messages.success(
                request,
                "Photos uploaded from now on are no longer offered as downloads. The downloads made so far stay "
                "for sale; deactivate any of them in its row.",
            )
            return products_url
        offered = services.download_products_ensure(tenant_id=studio.tenant_id, event_id=event.pk, actor=actor)
        created = offered.created
        # The shop sells a download only at the event's download price: without one, say so.
        price = _download_price(studio, event)
        downloads = "a download" if created == 1 else "downloads"
        later = " Photos uploaded later are offered as downloads too."
        if created and price is not None:
            messages.success(request, f"{_photos_are(created)} now for sale as {downloads} ({price} a photo).{later}")
        elif created:
            messages.success(
                request,
                f"{_photos_are(created)} now offered as {downloads}, but not for sale until the event has a "
                f"download price: set it in the price list below.{later}",
            )
        elif not offered.not_offered:
            messages.success(request, _nothing_to_offer_text(studio, event, priced=price is not None))
        if offered.not_offered:
            messages.error(request, _not_offered_text(offered.not_offered))
        return products_url

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render_event(request, studio, event, status=status),
    )


@require_POST
@studio_page(*CATALOG_WRITE_ROLES)
def product_active(request: HttpRequest, studio: Studio, event_id: int, product_id: int) -> HttpResponse:
    """Deactivate (no longer offered, new checkouts refused) or reactivate a product."""
    found = _event_product_or_404(request, studio, event_id, product_id)
    if isinstance(found, HttpResponse):
        return found
    event, product = found
    form = ProductActiveForm(request.POST, prefix=_row_prefix(product.pk))

    def effect() -> str:
        active = bool(form.cleaned_data["active"])
        services.product_set_active(
            tenant_id=studio.tenant_id, product_id=product.pk, active=active, actor=Actor.member(studio.user)
        )
        if active:
            messages.success(request, f"Product {product.sku} reactivated: shoppers can buy it again.")
        else:
            messages.success(
                request,
                f"Product {product.sku} deactivated: the shop no longer offers it and new checkouts refuse it. "
                "Orders already placed are not affected.",
            )
        return _products_url(request, event)

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render_event(request, studio, event, status=status, row_form=(product.pk, form)),
    )


@require_POST
@studio_page(*CATALOG_WRITE_ROLES)
def product_restock(request: HttpRequest, studio: Studio, event_id: int, product_id: int) -> HttpResponse:
    """Add units to a print's stock (audited; see `apps.catalog.products.stock_restock`)."""
    found = _event_product_or_404(request, studio, event_id, product_id)
    if isinstance(found, HttpResponse):
        return found
    event, product = found
    form = RestockForm(request.POST, prefix=_row_prefix(product.pk))

    def effect() -> str:
        restock = services.stock_restock(
            tenant_id=studio.tenant_id,
            product_id=product.pk,
            add_quantity=form.cleaned_data["add_quantity"],
            actor=Actor.member(studio.user),
        )
        units = ngettext("%(count)d unit", "%(count)d units", restock.added_quantity) % {
            "count": restock.added_quantity
        }
        messages.success(
            request,
            f"Added {units} to {product.sku}: stock now {restock.quantity_after} / {restock.initial_quantity_after}.",
        )
        return _products_url(request, event)

    return submit(
        request,
        studio,
        form=form,
        effect=effect,
        rerender=lambda status: _render_event(request, studio, event, status=status, row_form=(product.pk, form)),
        error_fields={ProductNotRestockable: "add_quantity", StockLimitExceeded: "add_quantity"},
    )
