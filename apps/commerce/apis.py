"""Commerce API: checkouts and the shopper's entitlements (mounted under /api/v1/).

Shoppers are not studio members: until the shopper UI exists these endpoints are called with
the studio's API key (or by a signed-in owner or staff member) on the shopper's behalf.
Mutating views run under the Idempotency-Key protocol (ONE transaction around the request,
opened by TenantApi); the services they call join it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.urls import reverse
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.commerce.errors import CheckoutHoldLimited
from apps.commerce.models import (
    CARRIER_MAX_LENGTH,
    RETURN_URL_MAX_LENGTH,
    SHIPPING_CITY_MAX_LENGTH,
    SHIPPING_LINE_MAX_LENGTH,
    SHIPPING_NAME_MAX_LENGTH,
    SHIPPING_PHONE_MAX_LENGTH,
    SHIPPING_POSTAL_CODE_MAX_LENGTH,
    SHIPPING_REGION_MAX_LENGTH,
    TRACKING_REFERENCE_MAX_LENGTH,
    Checkout,
    CheckoutLine,
    CheckoutShipping,
    Entitlement,
    Provider,
    Refund,
)
from apps.commerce.selectors import (
    checkout_get,
    download_token,
    entitlements_of_email,
    photos_covered,
    photos_covered_count,
)
from apps.commerce.services import (
    LineIn,
    ShippingIn,
    checkout_create,
    checkout_payment_session_request,
    checkout_refund_request,
)
from apps.commerce.services.checkout import HolderIn, client_network_of
from apps.core.serializers import DirectOutputSerializer, IdField, StrictSerializer
from apps.ops.killswitch import ensure_enabled
from apps.ops.models import Capability
from apps.tenancy.apis import TenantApi
from apps.tenancy.models import User
from apps.tenancy.permissions import HasTenantRole

SHOP_ROLES = HasTenantRole.of("api_key", "owner", "staff")


class CheckoutLineOutputSerializer(DirectOutputSerializer):
    id = serializers.IntegerField()
    position = serializers.IntegerField()
    product = serializers.IntegerField(source="product_id")
    photo = serializers.IntegerField(source="photo_id", allow_null=True)
    event = serializers.IntegerField(source="event_id")
    kind = serializers.CharField()
    size = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_amount_minor = serializers.IntegerField()
    amount_minor = serializers.IntegerField()
    currency = serializers.CharField()
    state = serializers.CharField()


class CheckoutShippingOutputSerializer(DirectOutputSerializer):
    """Where the prints go and whether the studio has sent them (`shipped`: carrier, tracking)."""

    name = serializers.CharField()
    line1 = serializers.CharField()
    line2 = serializers.CharField()
    city = serializers.CharField()
    postal_code = serializers.CharField()
    region = serializers.CharField()
    country = serializers.CharField(help_text="ISO 3166-1 alpha-2 code.")
    phone = serializers.CharField()
    fulfilment_status = serializers.ChoiceField(choices=CheckoutShipping.FulfilmentStatus.choices)
    shipped_at = serializers.DateTimeField(allow_null=True)
    carrier = serializers.CharField(max_length=CARRIER_MAX_LENGTH)
    tracking_reference = serializers.CharField(max_length=TRACKING_REFERENCE_MAX_LENGTH)


class CheckoutOutputSerializer(DirectOutputSerializer):
    """The checkout as every checkout endpoint returns it (rendered directly: these are the
    hottest responses of the shop)."""

    id = serializers.UUIDField()
    status = serializers.ChoiceField(
        choices=Checkout.Status.choices,
        help_text="Where the checkout is. `reserving`: some prints wait for their stock to be confirmed "
        "(`lines[].state` `reserved`); poll until it moves on. `awaiting_payment_session`: payable, the "
        "payment page is being made (`payment_url` null; `payment_session_error` if making it failed, "
        "`POST .../payment-session` asks again). `awaiting_payment`: `payment_url` is ready; the shopper "
        "pays there. `paid`: paid; its downloads are the shopper's (`GET /entitlements`). `failed`: the "
        "payment provider declined the payment. `expired`: not paid in time, or closed early "
        "(`closed_reason`); its prints went back to stock. `sold_out`: no line could be had, nothing to "
        "charge. `refunded`: the whole payment went back to the shopper.",
    )
    email = serializers.EmailField()
    provider = serializers.CharField()
    amount_minor = serializers.SerializerMethodField()
    currency = serializers.CharField()
    payment_url = serializers.SerializerMethodField()
    return_url = serializers.SerializerMethodField()
    payment_session_error = serializers.SerializerMethodField()
    payment_error = serializers.SerializerMethodField()
    transaction_status = serializers.SerializerMethodField()
    closed_reason = serializers.SerializerMethodField()
    expires_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    lines = CheckoutLineOutputSerializer(source="lines_by_position", many=True)
    shipping = serializers.SerializerMethodField()

    @extend_schema_field(CheckoutShippingOutputSerializer(allow_null=True))
    def get_shipping(self, checkout: Checkout) -> dict[str, Any] | None:
        """The shipping address and fulfilment of a checkout with prints; null without prints.
        (`checkout_create` and `checkout_get` load it with the checkout: no query here.)"""
        shipping = getattr(checkout, "shipping", None)
        return None if shipping is None else CheckoutShippingOutputSerializer().to_representation(shipping)

    @extend_schema_field(
        serializers.IntegerField(
            help_text="What the checkout charges: the confirmed lines, in the smallest unit of `currency` "
            "(3400 EUR is 34.00 EUR); a sold-out line never counts. It grows while lines are reserving (the "
            "lines confirmed so far) and is final once the checkout leaves `reserving`: what the payment asks "
            "for. A checkout closed before it was payable (`sold_out`, or `expired` while reserving) charges 0."
        )
    )
    def get_amount_minor(self, checkout: Checkout) -> int:
        """Stored once the last line is decided (`_settle`, which the payment reads); until then the
        column holds 0 and the sum of the lines confirmed so far is what is true (the shop's order
        page shows the same). `lines_by_position` is loaded with the checkout: no query here."""
        if checkout.status != Checkout.Status.RESERVING:
            return checkout.amount_minor
        confirmed = CheckoutLine.State.CONFIRMED
        return sum(line.amount_minor for line in checkout.lines_by_position if line.state == confirmed)

    def get_payment_url(self, checkout: Checkout) -> str | None:
        return checkout.payment_url or None

    def get_return_url(self, checkout: Checkout) -> str | None:
        """Where the provider sends the shopper back; null: the deployment's default page."""
        return checkout.return_url or None

    def get_payment_session_error(self, checkout: Checkout) -> str | None:
        return checkout.payment_session_error or None

    def get_payment_error(self, checkout: Checkout) -> str | None:
        """A refused payment the buyer can still put right (approve again); gone once settled."""
        if checkout.status != Checkout.Status.AWAITING_PAYMENT:
            return None
        return checkout.payment_error or None

    @extend_schema_field(
        serializers.ChoiceField(
            choices=[(value, label) for value, label in Checkout.ClosedReason.choices if value],
            allow_null=True,
            help_text="Why an `expired` checkout was closed before its expiry (`photo_withdrawn`: the studio "
            "withdrew a photo in it; a payment that arrives is refunded); null otherwise.",
        )
    )
    def get_closed_reason(self, checkout: Checkout) -> str | None:
        return checkout.closed_reason or None

    def get_transaction_status(self, checkout: Checkout) -> str | None:
        if checkout.status in Checkout.NO_TRANSACTION_STATUSES:
            return None  # known without asking the database
        txn = getattr(checkout, "transaction", None)
        return txn.status if txn is not None else None


class CheckoutLineInputSerializer(StrictSerializer):
    product = IdField()
    photo = IdField(required=False, allow_null=True)
    quantity = serializers.IntegerField(min_value=1, default=1)


class ShippingInputSerializer(StrictSerializer):
    name = serializers.CharField(max_length=SHIPPING_NAME_MAX_LENGTH, help_text="The recipient's name.")
    line1 = serializers.CharField(max_length=SHIPPING_LINE_MAX_LENGTH)
    line2 = serializers.CharField(max_length=SHIPPING_LINE_MAX_LENGTH, required=False, allow_blank=True)
    city = serializers.CharField(max_length=SHIPPING_CITY_MAX_LENGTH)
    postal_code = serializers.CharField(
        max_length=SHIPPING_POSTAL_CODE_MAX_LENGTH,
        default="",
        allow_blank=True,
        help_text="Required, except in the countries that have none (GH, AE, HK, ...).",
    )
    region = serializers.CharField(
        max_length=SHIPPING_REGION_MAX_LENGTH, required=False, allow_blank=True, help_text="State, province, county."
    )
    country = serializers.CharField(
        min_length=2, max_length=2, help_text="ISO 3166-1 alpha-2 code (an assigned one, e.g. DE, GB, US)."
    )
    phone = serializers.CharField(
        max_length=SHIPPING_PHONE_MAX_LENGTH, required=False, allow_blank=True, help_text="For the carrier."
    )


# DRF's URLField validates with this (http, https, ftp, ftps).
_ANY_URL = URLValidator()


def _http_or_https(value: str) -> None:
    """Refuse a URL that `URLField` accepts but no browser is sent back to (ftp, ftps), in its
    own words. A value that is not a URL at all is left to `URLField`, so it is reported once."""
    try:
        _ANY_URL(value)
    except DjangoValidationError:
        return
    if urlsplit(value).scheme.lower() not in ("http", "https"):
        raise serializers.ValidationError("A return URL is an http or https URL.")


class CheckoutCreateApi(TenantApi):
    """Create a checkout: 201 with its lines' states, `payment_url` null until the provider
    session exists (created after commit; poll `GET /checkouts/{id}`). A sold-out line is marked
    and not charged. A checkout with print lines needs `shipping` (the address the studio ships
    them to); one without prints must leave it out (400 either way, nothing written). With
    `shopper_ip`, the shopper's network may hold only a share of a print unpaid, as in the shop
    (SHOP_NETWORK_PRINT_HOLD_PERCENT, SHOP_NETWORK_LAPSED_HOLD_SECONDS): over it, 429
    `print-hold-limit` with `Retry-After` (409 for a quantity over the share itself), naming the
    print (`product`) and how many more the network may hold now (`available`); nothing written."""

    permission_classes = [SHOP_ROLES]

    class InputSerializer(StrictSerializer):
        email = serializers.EmailField(max_length=254)
        provider = serializers.ChoiceField(choices=Provider.values)
        lines = CheckoutLineInputSerializer(  # type: ignore[call-arg]  # ListSerializer kwargs
            many=True, allow_empty=False, max_length=settings.CHECKOUT_MAX_LINES
        )
        return_url = serializers.URLField(
            required=False,
            allow_blank=True,
            max_length=RETURN_URL_MAX_LENGTH,
            validators=[_http_or_https],
            help_text="Absolute http(s) URL the payment provider sends the shopper back to, paid or "
            "not (your storefront's order page), with darkroom_return=paid (after paying) or "
            "darkroom_return=cancelled added to its query; Flutterwave adds its own status instead, and "
            "the providers their own parameters. A return is no proof of payment: wait for the checkout's "
            "status. Omitted or empty: Darkroom's default status page.",
        )
        shipping = ShippingInputSerializer(
            required=False,
            allow_null=True,
            help_text="Where the prints go: required when a line is a print, refused otherwise.",
        )
        shopper_ip = serializers.IPAddressField(
            required=False,
            protocol="both",
            help_text="The shopper's IP address as your storefront saw it (IPv4 or IPv6). Given, the checkout "
            "counts against that network's share of each print (an IPv6 address counts as its /64): unpaid "
            "checkouts of one network may hold only part of a print's stock at once. Omitted: not limited.",
        )

    @extend_schema(request=InputSerializer, responses={201: CheckoutOutputSerializer})
    def post(self, request: Request) -> Response:
        ensure_enabled(Capability.CHECKOUT)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        assert self.tenant_id is not None
        shipping = data.validated_data.get("shipping")
        shopper_ip = data.validated_data.get("shopper_ip")
        checkout = checkout_create(
            tenant_id=self.tenant_id,
            email=data.validated_data["email"],
            provider=data.validated_data["provider"],
            return_url=data.validated_data.get("return_url", ""),
            lines=[
                LineIn(product_id=line["product"], photo_id=line.get("photo"), quantity=line["quantity"])
                for line in data.validated_data["lines"]
            ],
            shipping=ShippingIn(**shipping) if shipping is not None else None,
            holder=HolderIn(network=client_network_of(shopper_ip)) if shopper_ip else None,
        )
        # Rendered from what this transaction wrote (lines included): no read-back.
        return Response(CheckoutOutputSerializer(checkout).data, status=201)

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        if isinstance(exc, CheckoutHoldLimited) and exc.retry_after is not None:
            response["Retry-After"] = str(exc.retry_after)
        return response


class CheckoutDetailApi(TenantApi):
    permission_classes = [SHOP_ROLES]

    @extend_schema(responses=CheckoutOutputSerializer)
    def get(self, request: Request, checkout_id: str) -> Response:
        assert self.tenant_id is not None
        checkout = checkout_get(tenant_id=self.tenant_id, checkout_id=checkout_id)
        return Response(CheckoutOutputSerializer(checkout).data)


class CheckoutPaymentSessionApi(TenantApi):
    """Ask again for the provider session of a checkout whose session creation failed: 202, the
    session is created after commit (same provider idempotency key: never a second session)."""

    permission_classes = [SHOP_ROLES]

    @extend_schema(request=None, responses={202: CheckoutOutputSerializer})
    def post(self, request: Request, checkout_id: str) -> Response:
        assert self.tenant_id is not None
        checkout_payment_session_request(tenant_id=self.tenant_id, checkout_id=checkout_id)
        checkout = checkout_get(tenant_id=self.tenant_id, checkout_id=checkout_id)
        return Response(CheckoutOutputSerializer(checkout).data, status=202)


REFUND_ROLES = HasTenantRole.of("api_key", "owner")


class RefundOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    checkout_id = serializers.UUIDField(source="transaction.checkout_id")
    reason = serializers.ChoiceField(choices=Refund.Reason.values)
    status = serializers.ChoiceField(choices=Refund.Status.values)
    amount_minor = serializers.IntegerField()
    currency = serializers.CharField()
    created_at = serializers.DateTimeField()
    submitted_at = serializers.DateTimeField(allow_null=True)
    landed_at = serializers.DateTimeField(
        allow_null=True, help_text="When the provider confirmed the refund and its items were refunded."
    )
    restock_prints = serializers.BooleanField()
    line_ids = serializers.SerializerMethodField(
        help_text="The checkout lines a refund of some items covers; empty for a whole-order refund."
    )

    def get_line_ids(self, refund: Refund) -> list[int]:
        return sorted(refund.lines.values_list("pk", flat=True))


class CheckoutRefundApi(TenantApi):
    """Refund a paid checkout, whole or some of its lines (owner or API key): 202, the refund is
    asked of the provider after commit with the refund's own idempotency key. When the provider
    confirms (its refund webhook), the refunded lines' downloads stop and their wallet credits
    are reversed; the checkout turns `refunded` once the whole payment is back. 409
    `checkout-not-refundable` for a checkout that is not paid, 409 `refund-already-requested`
    while a refund of it (of one of the lines) is under way, 409 `refund-exceeds-payment` for
    lines that come to more than is left of the payment (part of it was refunded in the
    provider's dashboard: the order's last lines take what is left), 400
    `refund-lines-invalid` for lines that are not the checkout's charged lines."""

    permission_classes = [REFUND_ROLES]

    @extend_schema_serializer(component_name="CheckoutRefundInput")
    class InputSerializer(StrictSerializer):
        """Without `lines`, everything not refunded yet (the whole charged amount the first
        time); an unknown field is refused."""

        lines = serializers.ListField(
            child=serializers.IntegerField(min_value=1),
            required=False,
            allow_empty=False,
            max_length=500,
            help_text="Ids of the confirmed checkout lines to refund (each its amount; the checkout's last "
            "lines also give back what is left of the payment).",
        )
        restock_prints = serializers.BooleanField(
            required=False,
            default=False,
            help_text="Put the refunded prints back in stock once the refund lands (only while none is shipped; "
            "409 `prints-not-restockable` otherwise).",
        )

    @extend_schema(request=InputSerializer, responses={202: RefundOutputSerializer})
    def post(self, request: Request, checkout_id: str) -> Response:
        assert self.tenant_id is not None
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        refund = checkout_refund_request(
            tenant_id=self.tenant_id,
            checkout_id=checkout_id,
            actor_label=self.idempotency_caller(request),
            actor_user=request.user if isinstance(request.user, User) else None,
            restock_prints=data.validated_data["restock_prints"],
            line_ids=data.validated_data.get("lines"),
        )
        return Response(RefundOutputSerializer(refund).data, status=202)


class EntitlementDownloadSerializer(serializers.Serializer):
    photo = serializers.IntegerField()
    url = serializers.CharField()


class EntitlementOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    scope = serializers.CharField()
    event = serializers.IntegerField(source="event_id")
    photo = serializers.IntegerField(source="photo_id", allow_null=True)
    checkout = serializers.UUIDField(source="checkout_id")
    granted_at = serializers.DateTimeField()
    downloads_count = serializers.IntegerField(
        help_text="How many photos the entitlement covers; `downloads` holds the page asked for."
    )
    downloads = EntitlementDownloadSerializer(many=True)


@extend_schema_serializer(component_name="EntitlementList")
class EntitlementListOutputSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    results = EntitlementOutputSerializer(many=True)


class EntitlementListApi(TenantApi):
    """A shopper's downloads: live entitlements of an email, each with signed, expiring links.

    A bulk entitlement covers every photo of its event: `downloads_count` says how many, and
    `downloads_offset` / `downloads_limit` (at most ENTITLEMENT_BULK_DOWNLOADS_LIMIT, 500) page
    through their links, in photo id order."""

    query_parameters = frozenset({"email", "downloads_offset", "downloads_limit"})

    permission_classes = [SHOP_ROLES]

    class FilterSerializer(StrictSerializer):
        email = serializers.EmailField(max_length=254)
        downloads_offset = serializers.IntegerField(min_value=0, max_value=10_000_000, default=0, required=False)
        downloads_limit = serializers.IntegerField(
            min_value=1, max_value=settings.ENTITLEMENT_BULK_DOWNLOADS_LIMIT, required=False
        )

    @extend_schema(parameters=[FilterSerializer], responses=EntitlementListOutputSerializer)
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        assert self.tenant_id is not None
        entitlements = list(entitlements_of_email(tenant_id=self.tenant_id, email=filters.validated_data["email"]))
        offset = filters.validated_data.get("downloads_offset", 0)
        limit = filters.validated_data.get("downloads_limit", settings.ENTITLEMENT_BULK_DOWNLOADS_LIMIT)
        body = [self._render(request, entitlement, offset=offset, limit=limit) for entitlement in entitlements]
        return Response({"count": len(body), "results": EntitlementOutputSerializer(body, many=True).data})

    def _render(self, request: Request, entitlement: Entitlement, *, offset: int, limit: int) -> dict[str, Any]:
        photo_ids = photos_covered(entitlement=entitlement, limit=limit, offset=offset)
        return {
            "downloads_count": photos_covered_count(entitlement=entitlement),
            "id": entitlement.pk,
            "scope": entitlement.scope,
            "event_id": entitlement.event_id,
            "photo_id": entitlement.photo_id,
            "checkout_id": entitlement.checkout_id,
            "granted_at": entitlement.granted_at,
            "downloads": [
                {
                    "photo": photo_id,
                    "url": request.build_absolute_uri(
                        reverse(
                            "commerce-download",
                            kwargs={"token": download_token(entitlement=entitlement, photo_id=photo_id)},
                        )
                    ),
                }
                for photo_id in photo_ids
            ],
        }
