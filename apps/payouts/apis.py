"""Payouts API for studios: where each photographer is paid, and the payouts made.

`PUT /api/v1/payouts/destinations/{user_id}` runs under the Idempotency-Key protocol of
`TenantApi`. Every endpoint is for the studio's owner or its API key (destinations and amounts
are the photographers' private data), except that only a signed-in owner sets a destination.
Payouts themselves are made by the platform's batch (never through the API) and are read-only
here.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.openapi import PAGINATION_PARAMETERS, PAGINATION_QUERY, page_of
from apps.core.pagination import StrictLimitOffsetPagination
from apps.core.problems import NotFound
from apps.core.serializers import StrictSerializer
from apps.payouts.models import PROVIDER_CHOICES, Payout, PayoutDestination
from apps.payouts.selectors import payout_destinations, payouts_of_tenant
from apps.payouts.services import NotAMember, payout_destination_set
from apps.tenancy.apis import TenantApi
from apps.tenancy.models import User
from apps.tenancy.permissions import HasTenantRole

MANAGE_ROLES = ("owner", "api_key")


class SetsDestinations(HasTenantRole):
    """Only a signed-in owner changes where money is paid: a leaked API key must not be able to
    send the studio's payouts to an account of its choosing."""

    roles = frozenset({"owner"})
    message = (
        "Payout destinations are set by a signed-in owner (the studio's wallet page, or this endpoint with the "
        "owner's session), not by an API key."
    )


class DestinationOutputSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(source="owner_id")
    provider = serializers.CharField()
    destination = serializers.CharField()
    updated_at = serializers.DateTimeField()


class PayoutOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    batch_id = serializers.IntegerField()
    user_id = serializers.IntegerField(source="owner_id")
    account_id = serializers.IntegerField()
    amount_minor = serializers.IntegerField()
    currency = serializers.CharField()
    provider = serializers.CharField()
    destination = serializers.CharField()
    status = serializers.ChoiceField(choices=Payout.Status.choices)
    provider_payout_id = serializers.CharField(allow_null=True)
    last_error = serializers.CharField()
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)


class PayoutDestinationListApi(TenantApi):
    """The studio's payout destinations, one per photographer, by user id (owner or API key)."""

    query_parameters = PAGINATION_QUERY

    permission_classes = [HasTenantRole.of(*MANAGE_ROLES)]

    @extend_schema(
        operation_id="v1_payouts_destinations_list",
        parameters=PAGINATION_PARAMETERS,
        responses=page_of(DestinationOutputSerializer),
    )
    def get(self, request: Request) -> Response:
        paginator = StrictLimitOffsetPagination()
        page = paginator.paginate_queryset(payout_destinations(), request, view=self)
        return paginator.get_paginated_response(DestinationOutputSerializer(page, many=True).data)


class PayoutDestinationSetApi(TenantApi):
    """Set where a member of the studio is paid out. The provider's adapter validates the
    destination: a Stripe connected account (`acct_...`), a PayPal receiver e-mail, a Flutterwave
    `<bank code>:<account number>`, or any label for the sandbox. A signed-in owner only: an API
    key is refused (403), so a leaked key cannot redirect payouts."""

    permission_classes = [SetsDestinations]

    class InputSerializer(StrictSerializer):
        provider = serializers.ChoiceField(choices=PROVIDER_CHOICES)
        destination = serializers.CharField(max_length=200)

    @extend_schema(
        request=InputSerializer,
        responses={200: DestinationOutputSerializer},
        description="A signed-in owner only (session); an API key is refused with 403.",
    )
    def put(self, request: Request, user_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        owner = User.objects.filter(pk=user_id).first()
        if owner is None:
            raise NotAMember(f"User {user_id} is not a member of this studio.")
        row: PayoutDestination = payout_destination_set(
            tenant=self.tenant, owner=owner, actor_label=self.idempotency_caller(request), **data.validated_data
        )
        return Response(DestinationOutputSerializer(row).data)


class PayoutListApi(TenantApi):
    """The studio's payouts, newest first, optionally of one status (owner or API key)."""

    query_parameters = PAGINATION_QUERY | {"status"}

    permission_classes = [HasTenantRole.of(*MANAGE_ROLES)]

    class FilterSerializer(StrictSerializer):
        status = serializers.ChoiceField(choices=Payout.Status.choices, required=False)

    @extend_schema(
        operation_id="v1_payouts_list",
        parameters=[FilterSerializer, *PAGINATION_PARAMETERS],
        responses=page_of(PayoutOutputSerializer),
    )
    def get(self, request: Request) -> Response:
        # TenantApi refused a repeated `status` already; `limit` and `offset` are the paginator's.
        status = request.query_params.get("status")
        filters = self.FilterSerializer(data={} if status is None else {"status": status})
        filters.is_valid(raise_exception=True)
        paginator = StrictLimitOffsetPagination()
        page = paginator.paginate_queryset(payouts_of_tenant(**filters.validated_data), request, view=self)
        return paginator.get_paginated_response(PayoutOutputSerializer(page, many=True).data)


class PayoutDetailApi(TenantApi):
    """One payout of the studio (owner or API key)."""

    permission_classes = [HasTenantRole.of(*MANAGE_ROLES)]

    @extend_schema(responses=PayoutOutputSerializer)
    def get(self, request: Request, payout_id: Any) -> Response:
        payout = payouts_of_tenant().filter(pk=payout_id).first()
        if payout is None:
            raise NotFound("No such payout in this studio.")
        return Response(PayoutOutputSerializer(payout).data)
