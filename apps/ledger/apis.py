"""Ledger API: accounts, projected balances, debit ingest (single and batch).

Mutating endpoints run under the Idempotency-Key protocol of `TenantApi` (one transaction per
request). A single debit uses the request's Idempotency-Key as the ledger event's key, so even
a retry that bypasses the protocol (another caller, an expired key) never debits twice, and
that key reused for another debit is a 422, not a duplicate; batch items carry their own keys.
Invalid input is a 4xx problem and writes nothing: the whole batch is refused when one item
is invalid (or reuses a key, or takes its account past MAX_ACCOUNT_DEBITS_MINOR).

A debit's key and client id are identifiers (`identifier_problem`), refused when not printable,
except a value stored before that rule existed, which a client retrying must still be able to
send: the account's own client id, or the key and client id of a debit already in the ledger.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.currencies import currency_supported, unsupported_currency_message
from apps.core.openapi import PAGINATION_PARAMETERS, PAGINATION_QUERY, page_of
from apps.core.pagination import StrictLimitOffsetPagination
from apps.core.problems import InvalidInput, NotFound
from apps.core.serializers import IdentifierField, IdField, StrictSerializer
from apps.core.text import identifier_problem, text_field_problem
from apps.ledger.models import LedgerAccount
from apps.ledger.selectors import (
    ledger_account_get,
    ledger_account_list,
    ledger_client_id_stored,
    ledger_key_stored,
)
from apps.ledger.services import (
    MAX_AMOUNT_MINOR,
    MAX_BATCH_ITEMS,
    RESERVED_CLIENT_PREFIX,
    AppendResult,
    EntryIn,
    ledger_account_create,
    ledger_debits_append,
)
from apps.tenancy.apis import TenantApi
from apps.tenancy.permissions import HasTenantRole

INGEST_ROLES = ("owner", "api_key")
# Who reads every account of the studio (every wallet, usage and platform account): amounts are
# the photographers' private data, so the payouts API's rule. Any other member reads only the
# wallets they own, as the studio's wallet page shows them.
STUDIO_MONEY_ROLES = ("owner", "api_key")


def _wallets_of(view: TenantApi, request: Request) -> int | None:
    """None when the caller may read every account of the studio, else the id of the signed-in
    member whose own wallets are all they may read."""
    if view.tenant_role in STUDIO_MONEY_ROLES:
        return None
    assert request.user.pk is not None, "only signed-in members and API keys pass the permission check"
    return int(request.user.pk)


CLIENT_ID_MAX_LENGTH = 100  # LedgerAccount.client_id, LedgerEvent.client_id
KEY_MAX_LENGTH = 255  # LedgerEventKey.idempotency_key
REFERENCE_MAX_LENGTH = 200


class _AccountOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    currency = serializers.CharField()
    client_id = serializers.CharField()
    created_at = serializers.DateTimeField()


class LedgerAccountsApi(TenantApi):
    """`POST`: create a usage account (owner or API key; wallets and platform accounts are made
    by the platform). `GET`: the caller's studio's accounts, oldest first, with projected
    balances, paginated (`limit`, `offset`): every account for the owner or an API key, only
    their own wallets for any other member."""

    query_parameters = PAGINATION_QUERY

    class InputSerializer(StrictSerializer):
        kind = serializers.ChoiceField(choices=[LedgerAccount.Kind.USAGE.value], default=LedgerAccount.Kind.USAGE)
        currency = serializers.RegexField(
            r"^[A-Z]{3}$", help_text="ISO 4217 code Darkroom sells in (apps/core/currencies.py), e.g. EUR"
        )
        client_id = IdentifierField(max_length=CLIENT_ID_MAX_LENGTH, required=False, allow_blank=True, default="")

        def validate_currency(self, value: str) -> str:
            if not currency_supported(value):
                raise serializers.ValidationError(unsupported_currency_message(value))
            return value

        def validate_client_id(self, value: str) -> str:
            if value.startswith(RESERVED_CLIENT_PREFIX):
                raise serializers.ValidationError(f"Client ids starting with {RESERVED_CLIENT_PREFIX!r} are reserved.")
            return value

    class OutputSerializer(_AccountOut):
        pass

    class ListOutputSerializer(_AccountOut):
        balance_minor = serializers.IntegerField(source="projected_balance")

    def get_permissions(self) -> list[Any]:
        if (self.request.method or "").upper() == "POST":
            return [HasTenantRole.of(*INGEST_ROLES)()]
        return list(super().get_permissions())

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        account = ledger_account_create(tenant=self.tenant, **data.validated_data)
        return Response(self.OutputSerializer(account).data, status=201)

    @extend_schema(
        operation_id="v1_ledger_accounts_list",
        parameters=PAGINATION_PARAMETERS,
        responses=page_of(ListOutputSerializer),
    )
    def get(self, request: Request) -> Response:
        assert self.tenant_id is not None
        paginator = StrictLimitOffsetPagination()
        queryset: QuerySet[LedgerAccount] = ledger_account_list(
            tenant_id=self.tenant_id, wallets_of=_wallets_of(self, request)
        )
        page = paginator.paginate_queryset(queryset, request, view=self)
        return paginator.get_paginated_response(self.ListOutputSerializer(page, many=True).data)


@extend_schema_serializer(component_name="LedgerProjectionPartition")
class _ProjectionOut(serializers.Serializer):
    partition = serializers.IntegerField()
    sequence = serializers.IntegerField(help_text="The partition's last event the balance reflects.")
    lag_seconds = serializers.FloatField()


class LedgerAccountDetailApi(TenantApi):
    """One account: projected balance, the sequence(s) it reflects, and the current lag. The owner
    or an API key reads any account of the studio; any other member only their own wallets (404
    for the rest, as for another studio's account)."""

    class OutputSerializer(_AccountOut):
        balance_minor = serializers.IntegerField()
        credits_minor = serializers.IntegerField()
        debits_minor = serializers.IntegerField()
        event_count = serializers.IntegerField()
        lag_seconds = serializers.FloatField()
        projection = _ProjectionOut(many=True)

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, account_id: int) -> Response:
        try:
            view = ledger_account_get(tenant=self.tenant, account_id=account_id, wallets_of=_wallets_of(self, request))
        except LedgerAccount.DoesNotExist:
            raise NotFound("No such account in this studio.") from None
        account = view.account
        body: dict[str, Any] = {
            "id": account.pk,
            "kind": account.kind,
            "currency": account.currency,
            "client_id": account.client_id,
            "created_at": account.created_at,
            "balance_minor": view.balance_minor,
            "credits_minor": view.credits_minor,
            "debits_minor": view.debits_minor,
            "event_count": view.event_count,
            "lag_seconds": round(view.lag_seconds, 3),
            "projection": [
                {"partition": p.partition, "sequence": p.checkpoint_seq, "lag_seconds": round(p.lag_seconds, 3)}
                for p in view.partitions
            ],
        }
        return Response(self.OutputSerializer(body).data)


class _DebitFields(StrictSerializer):
    """One debit. Context: `tenant_id`, and `idempotency_key` when the key is not a field (a single
    debit's is its request's Idempotency-Key)."""

    account_id = IdField()
    amount_minor = serializers.IntegerField(min_value=1, max_value=MAX_AMOUNT_MINOR)
    currency = serializers.RegexField(r"^[A-Z]{3}$")
    client_id = IdentifierField(max_length=CLIENT_ID_MAX_LENGTH, required=False, allow_blank=True, may_be_stored=True)
    reference = serializers.CharField(max_length=REFERENCE_MAX_LENGTH, required=False, allow_blank=True, default="")

    def validate_reference(self, value: str) -> str:
        """One line of free text (`text_field_problem`)."""
        if problem := text_field_problem(value, required=False, max_length=REFERENCE_MAX_LENGTH):
            raise serializers.ValidationError(problem)
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The rule of identifiers for the key (a batch item's) and the client id, but a value
        stored before the rule existed passes (a retry must not turn into a 400): a key the
        account's ledger holds; the account's client id, or the one of the debit the key names.
        Reads those under the request's tenant context, only for a value breaking the rule."""
        tenant_id: int = self.context["tenant_id"]
        account_id: int = attrs["account_id"]
        key: str = attrs.get("idempotency_key", self.context.get("idempotency_key", ""))
        errors: dict[str, list[str]] = {}
        if (
            "idempotency_key" in attrs
            and (problem := identifier_problem(key, max_length=KEY_MAX_LENGTH))
            and not ledger_key_stored(tenant_id=tenant_id, account_id=account_id, idempotency_key=key)
        ):
            errors["idempotency_key"] = [problem]
        client_id = attrs.get("client_id") or ""
        if (problem := identifier_problem(client_id, max_length=CLIENT_ID_MAX_LENGTH)) and not ledger_client_id_stored(
            tenant_id=tenant_id, account_id=account_id, idempotency_key=key, client_id=client_id
        ):
            errors["client_id"] = [problem]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class _ItemOut(serializers.Serializer):
    index = serializers.IntegerField()
    account_id = serializers.IntegerField()
    idempotency_key = serializers.CharField()
    status = serializers.CharField()
    event_id = serializers.IntegerField(allow_null=True)
    partition = serializers.IntegerField(allow_null=True)
    sequence = serializers.IntegerField(allow_null=True)
    buffer_id = serializers.IntegerField(allow_null=True)


def _status_of(result: AppendResult) -> int:
    if result.buffered:
        return 202
    return 201 if result.created else 200


class LedgerDebitCreateApi(TenantApi):
    """Post one debit. 201 created, 200 when this key already debited the account, 202 buffered."""

    permission_classes = [HasTenantRole.of(*INGEST_ROLES)]

    class InputSerializer(_DebitFields):
        pass

    class OutputSerializer(_ItemOut):
        pass

    @extend_schema(
        request=InputSerializer,
        responses={
            201: OpenApiResponse(OutputSerializer, description="Debited."),
            200: OpenApiResponse(OutputSerializer, description="This key had already debited the account."),
            202: OpenApiResponse(OutputSerializer, description="Buffered; applied within the ledger's SLO."),
        },
    )
    def post(self, request: Request) -> Response:
        key = getattr(self, "_idempotency_key", None) or request.headers.get("Idempotency-Key")
        if not key:
            raise InvalidInput("An Idempotency-Key header is required.")
        data = self.InputSerializer(data=request.data, context={"tenant_id": self.tenant_id, "idempotency_key": key})
        data.is_valid(raise_exception=True)
        result = ledger_debits_append(tenant=self.tenant, entries=[EntryIn(idempotency_key=key, **data.validated_data)])
        return Response(self.OutputSerializer(result.items[0]).data, status=_status_of(result))


class LedgerDebitBatchApi(TenantApi):
    """Post up to 1,000 debits, each with its own idempotency_key; all or nothing on invalid input."""

    permission_classes = [HasTenantRole.of(*INGEST_ROLES)]

    class InputSerializer(StrictSerializer):
        class ItemSerializer(_DebitFields):
            # Taken as sent: trimming would make "k1" and "k1 " one key, the second debit a duplicate.
            # Printable and not only spaces (`identifier_problem`), or a key already stored.
            idempotency_key = IdentifierField(max_length=KEY_MAX_LENGTH, trim_whitespace=False, may_be_stored=True)

        items = serializers.ListField(
            child=ItemSerializer(), min_length=1, max_length=MAX_BATCH_ITEMS, allow_empty=False
        )

    class OutputSerializer(serializers.Serializer):
        created = serializers.IntegerField()
        duplicates = serializers.IntegerField()
        buffered = serializers.IntegerField()
        items = _ItemOut(many=True)

    @extend_schema(
        request=InputSerializer,
        responses={
            201: OpenApiResponse(OutputSerializer, description="At least one debit was new."),
            200: OpenApiResponse(OutputSerializer, description="Every item's key had already debited."),
            202: OpenApiResponse(OutputSerializer, description="Buffered; applied within the ledger's SLO."),
        },
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data, context={"tenant_id": self.tenant_id})
        data.is_valid(raise_exception=True)
        entries = [EntryIn(**item) for item in data.validated_data["items"]]
        result = ledger_debits_append(tenant=self.tenant, entries=entries)
        body = {
            "created": result.created,
            "duplicates": result.duplicates,
            "buffered": len(result.items) if result.buffered else 0,
            "items": result.items,
        }
        return Response(self.OutputSerializer(body).data, status=_status_of(result))
