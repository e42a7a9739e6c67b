"""Catalog API for studios and integrators (mounted under /api/v1/).

One view per URL; each HTTP method is one operation that parses input, calls one service or
selector and renders output (an upload calls two: its original is stored before the
Idempotency-Key protocol's transaction opens, its rows are written inside it). Writes (POST,
PATCH) need the owner role or an API key (uploads: owner or photographer); reads need any
member. No response carries an original's name or URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from apps.catalog import selectors, services
from apps.catalog.models import Event, Photo, ProductKind
from apps.catalog.products import RESTOCK_MAX_UNITS
from apps.catalog.storage import public_url
from apps.catalog.withdrawal import WITHDRAWN_REASON_MAX_LENGTH, photo_withdraw
from apps.core.openapi import PAGINATION_PARAMETERS, PAGINATION_QUERY, page_of
from apps.core.pagination import StrictLimitOffsetPagination
from apps.core.serializers import IdField, StrictSerializer
from apps.idempotency.protocol import IdempotencyKeyInFlight
from apps.idempotency.selectors import idempotency_key_find
from apps.tenancy.apis import TenantApi
from apps.tenancy.authentication import ApiKeyPrincipal
from apps.tenancy.models import User
from apps.tenancy.permissions import HasTenantRole


class _CatalogApi(TenantApi):
    """Reads for any member; writes (any unsafe method) restricted to `write_roles`."""

    write_roles: tuple[str, ...] = ("owner", "api_key")

    def get_permissions(self) -> Sequence[BasePermission]:
        if self.request.method not in SAFE_METHODS:
            return [HasTenantRole.of(*self.write_roles)()]
        return super().get_permissions()  # type: ignore[return-value]

    def actor(self, request: Request) -> services.Actor:
        """Who acts, for audit rows: the signed-in member, or the API key (label only)."""
        user = request.user
        if isinstance(user, ApiKeyPrincipal):
            return services.Actor(label=self.idempotency_caller(request))
        assert isinstance(user, User), "only member roles and API keys pass the permission check"
        return services.Actor.member(user)

    def paginated(
        self, request: Request, queryset: QuerySet[Any], serializer: type[serializers.Serializer]
    ) -> Response:
        paginator = StrictLimitOffsetPagination()
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(serializer(page, many=True).data)

    @property
    def tenant_pk(self) -> int:
        assert self.tenant_id is not None, "permission classes guarantee a tenant"
        return self.tenant_id


class EventOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    date = serializers.DateField()
    slug = serializers.SlugField()
    visibility = serializers.CharField()
    downloads_for_new_photos = serializers.BooleanField(
        help_text="Every photo uploaded is offered as a download (POST .../products/downloads turns it on, "
        ".../products/downloads/stop off)."
    )
    created_at = serializers.DateTimeField()


class PhotoOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event_id = serializers.IntegerField()
    photographer_id = serializers.IntegerField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    derivatives_status = serializers.CharField()
    preview_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()
    withdrawn_at = serializers.DateTimeField(allow_null=True, help_text="When the studio withdrew it; null: published.")
    withdrawn_reason = serializers.CharField(help_text="Why it was withdrawn; empty while published.")
    created_at = serializers.DateTimeField()

    def get_preview_url(self, photo: Photo) -> str | None:
        return None if photo.withdrawn_at else public_url(photo.preview.name)

    def get_thumbnail_url(self, photo: Photo) -> str | None:
        return None if photo.withdrawn_at else public_url(photo.thumbnail.name)


class EventsApi(_CatalogApi):
    """GET: the studio's events, newest first (paginated). POST: create an event."""

    query_parameters = PAGINATION_QUERY

    @extend_schema_serializer(component_name="EventCreateInput")
    class InputSerializer(StrictSerializer):
        title = serializers.CharField(max_length=200)
        date = serializers.DateField()
        slug = serializers.SlugField(max_length=80)
        visibility = serializers.ChoiceField(choices=Event.Visibility.choices, default=Event.Visibility.PUBLIC)
        access_code = serializers.CharField(max_length=128, required=False, allow_blank=True, trim_whitespace=False)

    @extend_schema(
        operation_id="v1_events_list", parameters=PAGINATION_PARAMETERS, responses=page_of(EventOutputSerializer)
    )
    def get(self, request: Request) -> Response:
        return self.paginated(request, selectors.events_list(tenant_id=self.tenant_pk), EventOutputSerializer)

    @extend_schema(request=InputSerializer, responses={201: EventOutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        event = services.event_create(tenant_id=self.tenant_pk, **data.validated_data)
        return Response(EventOutputSerializer(event).data, status=201)


class EventDetailApi(_CatalogApi):
    """GET: one event. PATCH: change its title, date, visibility or access code (never its slug).

    Every field is optional, at least one is required. Switching to `access_code` needs an
    `access_code` unless the event already has one; switching to `public` drops the code; a new
    code replaces the old one, and shop sessions that unlocked the old code must enter the new one.
    """

    @extend_schema_serializer(component_name="EventUpdateInput")
    class InputSerializer(StrictSerializer):
        title = serializers.CharField(max_length=200, required=False)
        date = serializers.DateField(required=False)
        visibility = serializers.ChoiceField(choices=Event.Visibility.choices, required=False)
        access_code = serializers.CharField(max_length=128, required=False, allow_blank=True, trim_whitespace=False)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if not attrs:
                raise serializers.ValidationError("Give at least one of title, date, visibility, access_code.")
            return attrs

    @extend_schema(responses=EventOutputSerializer)
    def get(self, request: Request, event_id: int) -> Response:
        event = selectors.event_get(tenant_id=self.tenant_pk, event_id=event_id)
        return Response(EventOutputSerializer(event).data)

    @extend_schema(request=InputSerializer, responses=EventOutputSerializer)
    def patch(self, request: Request, event_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        event = services.event_update(
            tenant_id=self.tenant_pk,
            event_id=event_id,
            title=fields.get("title"),
            date=fields.get("date"),
            visibility=fields.get("visibility"),
            access_code=fields.get("access_code") or None,
            actor=self.actor(request),
        )
        return Response(EventOutputSerializer(event).data)


class EventPhotosApi(_CatalogApi):
    """GET: the event's photos (paginated; preview/thumbnail URLs once ready, never the
    original). POST: multipart upload of one image (field `image`).

    An upload is two services around the Idempotency-Key protocol's transaction: the original is
    checked and stored first, outside any transaction (`photo_original_store`, a network upload
    in production that must not hold the key's lock), then `post` creates the photo's rows in the
    protocol's transaction (`photo_create`), so they commit with the key row or not at all.
    Storing before the protocol decides costs an original whenever it then does not run the
    effect, so: a key that already has an outcome (a replay, or a 422 for another body) stores
    nothing; a request that stored and still did not commit its photo (the key completed or went
    in flight meanwhile: replay or 409, a refusal, a rollback) deletes its original as soon as its
    transaction ended; the orphan sweep catches what a crash leaves.
    """

    query_parameters = PAGINATION_QUERY

    write_roles = ("owner", "photographer")
    parser_classes = [MultiPartParser]

    @extend_schema_serializer(component_name="PhotoUploadInput")
    class InputSerializer(StrictSerializer):
        image = serializers.FileField(allow_empty_file=False)
        photographer_id = IdField(required=False)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        self._stored: services.StoredOriginal | None = None
        self._created: Photo | None = None
        response = None
        try:
            response = super().dispatch(request, *args, **kwargs)
            return response
        finally:
            # The request's transaction has ended here, whichever way it went.
            committed = self._created is not None and response is not None and response.status_code < 400
            if self._stored is not None and not committed:
                services.photo_originals_discard(stored=[self._stored])

    def before_idempotent_transaction(self, request: Request, key: str) -> None:
        """Store the upload's original before the protocol opens the transaction.

        A request refused by authentication, permissions or rate limits stores nothing; so does
        invalid input (a 4xx problem from here, before any transaction) and a key that already
        has an outcome.
        """
        if (request.method or "").upper() == "POST" and not self._key_has_outcome(request, key):
            self._stored = self._store_original(request)

    def _key_has_outcome(self, request: Request, key: str) -> bool:
        """Whether the protocol will answer from the key store without running the effect.

        A plain read outside the protocol's lock: it can miss an outcome that commits right
        after it (then `dispatch` deletes the original again), never invent one.
        """
        caller = self.idempotency_caller(request)
        return idempotency_key_find(tenant_id=self.tenant_pk, caller=caller, key=key) is not None

    def _store_original(self, request: Request) -> services.StoredOriginal:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        assert isinstance(request.user, User), "only member roles pass the permission check"
        image = data.validated_data["image"]
        return services.photo_original_store(
            tenant_id=self.tenant_pk,
            event_id=int(self.kwargs["event_id"]),
            uploaded_by=request.user,
            image=image,
            image_size=image.size,
            photographer_id=data.validated_data.get("photographer_id"),
        )

    @extend_schema(
        operation_id="v1_events_photos_list", parameters=PAGINATION_PARAMETERS, responses=page_of(PhotoOutputSerializer)
    )
    def get(self, request: Request, event_id: int) -> Response:
        selectors.event_get(tenant_id=self.tenant_pk, event_id=event_id)
        photos = selectors.photos_of_event(tenant_id=self.tenant_pk, event_id=event_id)
        return self.paginated(request, photos, PhotoOutputSerializer)

    @extend_schema(request={"multipart/form-data": InputSerializer}, responses={201: PhotoOutputSerializer})
    def post(self, request: Request, event_id: int) -> Response:
        assert isinstance(request.user, User), "only member roles pass the permission check"
        if self._stored is None:
            # The key's outcome expired between the look-up above and the protocol's own: nothing
            # was stored for this request, so it cannot run now; a retry stores and runs.
            raise IdempotencyKeyInFlight("This request's Idempotency-Key changed state while it was read; retry.")
        photo = services.photo_create(tenant_id=self.tenant_pk, uploaded_by=request.user, stored=self._stored)
        self._created = photo
        return Response(PhotoOutputSerializer(photo).data, status=201)


class ProductPriceSerializer(serializers.Serializer):
    """What one unit of a product costs (the event's price for its kind and size)."""

    amount_minor = serializers.IntegerField(help_text="In the currency's minor unit (cents).")
    currency = serializers.CharField(help_text="ISO 4217 code, e.g. EUR.")


class ProductStockSerializer(serializers.Serializer):
    """A print's stock: what is left, and all that was ever put on sale (restocks included)."""

    quantity = serializers.IntegerField()
    initial_quantity = serializers.IntegerField()


class ProductOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event_id = serializers.IntegerField()
    kind = serializers.CharField()
    photo_id = serializers.IntegerField(allow_null=True)
    size = serializers.CharField()
    sku = serializers.CharField()
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    price = serializers.SerializerMethodField()
    stock = serializers.SerializerMethodField()

    @extend_schema_field(ProductPriceSerializer(allow_null=True, help_text="Null: no price for it yet."))
    def get_price(self, product: Any) -> dict[str, Any] | None:
        amount = getattr(product, "price_amount_minor", None)
        if amount is None:
            return None
        return {"amount_minor": amount, "currency": product.price_currency}

    @extend_schema_field(ProductStockSerializer(allow_null=True, help_text="Null: not a print (unlimited)."))
    def get_stock(self, product: Any) -> dict[str, Any] | None:
        quantity = getattr(product, "stock_quantity", None)
        if quantity is None:
            return None
        return {"quantity": quantity, "initial_quantity": product.stock_initial_quantity}


class EventProductsApi(_CatalogApi):
    """GET: the event's products with price and stock (paginated). POST: create a product."""

    query_parameters = PAGINATION_QUERY

    @extend_schema_serializer(component_name="ProductCreateInput")
    class InputSerializer(StrictSerializer):
        kind = serializers.ChoiceField(choices=ProductKind.choices)
        photo_id = IdField(required=False)
        size = serializers.CharField(max_length=32, required=False, default="")
        sku = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64, required=False)
        stock_quantity = serializers.IntegerField(required=False, min_value=0, max_value=10_000_000)
        active = serializers.BooleanField(required=False, default=True)

    @extend_schema(
        operation_id="v1_events_products_list",
        parameters=PAGINATION_PARAMETERS,
        responses=page_of(ProductOutputSerializer),
    )
    def get(self, request: Request, event_id: int) -> Response:
        selectors.event_get(tenant_id=self.tenant_pk, event_id=event_id)
        products = selectors.products_of_event(tenant_id=self.tenant_pk, event_id=event_id)
        return self.paginated(request, products, ProductOutputSerializer)

    @extend_schema(request=InputSerializer, responses={201: ProductOutputSerializer})
    def post(self, request: Request, event_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        product = services.product_create(tenant_id=self.tenant_pk, event_id=event_id, **data.validated_data)
        listed = selectors.products_of_event(tenant_id=self.tenant_pk, event_id=event_id).get(pk=product.pk)
        return Response(ProductOutputSerializer(listed).data, status=201)


@extend_schema_serializer(component_name="DownloadSkuTakenBy")
class DownloadSkuTakenBySerializer(serializers.Serializer):
    product_id = serializers.IntegerField(source="taken_by_product_id")
    sku = serializers.CharField(source="taken_by_sku", help_text="As stored (SKUs are unique whatever their case).")


@extend_schema_serializer(component_name="DownloadNotOffered")
class DownloadNotOfferedSerializer(serializers.Serializer):
    """A photo `download_products_ensure` could not offer, and why."""

    photo_id = serializers.IntegerField()
    reason = serializers.ChoiceField(choices=["sku-taken"])
    sku = serializers.CharField(help_text="The SKU the photo's download would get.")
    taken_by = DownloadSkuTakenBySerializer(source="*")
    detail = serializers.CharField()


class EventDownloadsOfferApi(_CatalogApi):
    """POST: offer every photo of the event as a download, now and when uploaded later: the
    download product of each photo that has none is created (a deactivated one stays
    deactivated), and each photo uploaded from then on gets its download at upload
    (`downloads_for_new_photos`, until `.../products/downloads/stop`). 200 with how many were
    created and the photos that could not be offered (`not_offered`: the SKU their download would
    get is another product's; add theirs with an SKU of your choice); repeating it creates
    nothing. Each download sells at the event's download price."""

    @extend_schema_serializer(component_name="DownloadsOfferOutput")
    class OutputSerializer(serializers.Serializer):
        created = serializers.IntegerField()
        not_offered = DownloadNotOfferedSerializer(many=True)
        downloads_for_new_photos = serializers.BooleanField(help_text="Always true: photos uploaded later are offered.")

    @extend_schema(request=None, responses={200: OutputSerializer})
    def post(self, request: Request, event_id: int) -> Response:
        offered = services.download_products_ensure(
            tenant_id=self.tenant_pk, event_id=event_id, actor=self.actor(request)
        )
        return Response(self.OutputSerializer(offered).data)


class EventDownloadsStopApi(_CatalogApi):
    """POST: stop offering the photos uploaded to the event from now on as downloads; the
    downloads made so far stay (deactivate any with PATCH /products/{id}). 200 with
    `downloads_for_new_photos` false, also when it was off already (audited only when it changed)."""

    @extend_schema_serializer(component_name="DownloadsStopOutput")
    class OutputSerializer(serializers.Serializer):
        downloads_for_new_photos = serializers.BooleanField()

    @extend_schema(request=None, responses={200: OutputSerializer})
    def post(self, request: Request, event_id: int) -> Response:
        services.downloads_for_new_photos_stop(tenant_id=self.tenant_pk, event_id=event_id, actor=self.actor(request))
        return Response(self.OutputSerializer({"downloads_for_new_photos": False}).data)


class CurrencyField(serializers.RegexField):
    """Three letters of an ISO 4217 code in either case, read upper-cased ("jpy" -> "JPY"), as the
    studio's forms read them; whether Darkroom sells in it is the services' check (400)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(r"^[A-Za-z]{3}$", **kwargs)

    def to_internal_value(self, data: Any) -> str:
        return str(super().to_internal_value(data)).upper()


class PriceSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=ProductKind.choices)
    size = serializers.CharField(
        max_length=32,
        required=False,
        default="",
        allow_blank=True,
        help_text="A print's size (e.g. A4); empty or left out for downloads and the bulk item, as GET shows them.",
    )
    amount_minor = serializers.IntegerField(min_value=1, max_value=services.PRICE_MAX_MINOR)


def price_list_body(*, tenant_id: int, event_id: int) -> dict[str, Any]:
    """The event's currency (None until its first price) and prices, as the price APIs answer."""
    price_list = selectors.price_list_of_event(tenant_id=tenant_id, event_id=event_id)
    prices = list(selectors.prices_of_event(tenant_id=tenant_id, event_id=event_id))
    return {"event_id": event_id, "currency": price_list.currency if price_list else None, "prices": prices}


class EventPricesApi(_CatalogApi):
    """GET: the event's price list. POST: set prices (upsert per kind and size)."""

    @extend_schema_serializer(component_name="PriceListSetInput")
    class InputSerializer(StrictSerializer):
        currency = CurrencyField(
            help_text="An ISO 4217 code Darkroom sells in (e.g. EUR, JPY; read upper-cased); any other is refused "
            "(400). Once the event has a price list, it must be that list's currency (409); "
            "`POST /events/{id}/prices/currency` changes it.",
        )
        prices = PriceSerializer(many=True, allow_empty=False)

    @extend_schema_serializer(component_name="PriceListOutput")
    class OutputSerializer(serializers.Serializer):
        event_id = serializers.IntegerField()
        currency = serializers.CharField(allow_null=True)
        prices = PriceSerializer(many=True)

    def _render(self, event_id: int) -> Response:
        return Response(self.OutputSerializer(price_list_body(tenant_id=self.tenant_pk, event_id=event_id)).data)

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, event_id: int) -> Response:
        selectors.event_get(tenant_id=self.tenant_pk, event_id=event_id)
        return self._render(event_id)

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request: Request, event_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.price_list_set(
            tenant_id=self.tenant_pk,
            event_id=event_id,
            currency=data.validated_data["currency"],
            prices=[services.PriceIn(**price) for price in data.validated_data["prices"]],
        )
        return self._render(event_id)


class EventPriceCurrencyApi(_CatalogApi):
    """POST: price the event in another currency. Every price is removed (amounts do not carry
    over between currencies); set them again with `POST /events/{id}/prices`."""

    @extend_schema_serializer(component_name="PriceListCurrencyInput")
    class InputSerializer(StrictSerializer):
        currency = CurrencyField(
            help_text="An ISO 4217 code Darkroom sells in (e.g. EUR, JPY; read upper-cased); any other is "
            "refused (400).",
        )
        expected_currency = CurrencyField(
            required=False,
            allow_null=True,
            help_text="The currency you last saw the event priced in (read upper-cased). If given and the event "
            "is priced in another one now, nothing changes: 409 `price-list-currency-changed`, so prices set "
            "meanwhile are not removed unseen.",
        )

    @extend_schema(
        operation_id="v1_event_prices_currency_change",
        request=InputSerializer,
        responses=EventPricesApi.OutputSerializer,
        description=(
            "Owner or API key. The event's price list takes the new currency and loses every price, so its "
            "products are not offered until prices are set again; sales and open checkouts keep their amounts. "
            "The same currency changes nothing. An event without prices has no currency to change (its first "
            "prices choose it): 409 `price-list-missing`, nothing is created. With `expected_currency`, an event "
            "priced in another currency is refused (409 `price-list-currency-changed`) and keeps its prices. "
            "Audited (`catalog.price_list_currency_change`)."
        ),
    )
    def post(self, request: Request, event_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.price_list_currency_change(
            tenant_id=self.tenant_pk,
            event_id=event_id,
            currency=data.validated_data["currency"],
            actor=self.actor(request),
            expected_currency=data.validated_data.get("expected_currency"),
        )
        body = price_list_body(tenant_id=self.tenant_pk, event_id=event_id)
        return Response(EventPricesApi.OutputSerializer(body).data)


class ProductDetailApi(_CatalogApi):
    """GET: one product with price and stock. PATCH: stop or resume selling it (`active`).

    A deactivated product is refused by new checkouts (400 `invalid-checkout-line`) and hidden
    from the shop; existing checkouts and entitlements are not affected.
    """

    @extend_schema_serializer(component_name="ProductUpdateInput")
    class InputSerializer(StrictSerializer):
        active = serializers.BooleanField()

    @extend_schema(responses=ProductOutputSerializer)
    def get(self, request: Request, product_id: int) -> Response:
        product = selectors.product_get(tenant_id=self.tenant_pk, product_id=product_id)
        return Response(ProductOutputSerializer(product).data)

    @extend_schema(request=InputSerializer, responses=ProductOutputSerializer)
    def patch(self, request: Request, product_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.product_set_active(
            tenant_id=self.tenant_pk,
            product_id=product_id,
            active=data.validated_data["active"],
            actor=self.actor(request),
        )
        product = selectors.product_get(tenant_id=self.tenant_pk, product_id=product_id)
        return Response(ProductOutputSerializer(product).data)


class PhotoWithdrawApi(_CatalogApi):
    """POST: withdraw a photo (owner or API key): from the commit on it is not shown, sold,
    searched by find me, matched by drop-in or covered by bulk purchases; a worker then deletes its
    previews, face index and matches. A photo bought alone stays downloadable for its buyers.
    Audited with the reason; cannot be undone. 409 `photo-already-withdrawn`."""

    @extend_schema_serializer(component_name="PhotoWithdrawInput")
    class InputSerializer(StrictSerializer):
        reason = serializers.CharField(max_length=WITHDRAWN_REASON_MAX_LENGTH)

    @extend_schema(request=InputSerializer, responses=PhotoOutputSerializer)
    def post(self, request: Request, photo_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        photo = photo_withdraw(
            tenant_id=self.tenant_pk, photo_id=photo_id, reason=data.validated_data["reason"], actor=self.actor(request)
        )
        return Response(PhotoOutputSerializer(photo).data)


class ProductRestockApi(_CatalogApi):
    """POST: add units to a print's stock (its quantity and initial quantity), audited.

    422 `product-not-restockable` for a download or bulk product; 422 `stock-limit-exceeded`
    past the per-print ceiling. Pending reservations are decided against the new stock; lines
    already sold out stay sold out.
    """

    @extend_schema_serializer(component_name="ProductRestockInput")
    class InputSerializer(StrictSerializer):
        add_quantity = serializers.IntegerField(min_value=1, max_value=RESTOCK_MAX_UNITS)

    @extend_schema_serializer(component_name="ProductRestockOutput")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        product_id = serializers.IntegerField()
        added_quantity = serializers.IntegerField()
        quantity = serializers.IntegerField(source="quantity_after")
        initial_quantity = serializers.IntegerField(source="initial_quantity_after")
        actor = serializers.CharField(source="actor_label")
        created_at = serializers.DateTimeField()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request: Request, product_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        restock = services.stock_restock(
            tenant_id=self.tenant_pk,
            product_id=product_id,
            add_quantity=data.validated_data["add_quantity"],
            actor=self.actor(request),
        )
        return Response(self.OutputSerializer(restock).data, status=201)
