"""The base of every tenant API view, and the API-key endpoints."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.http import HttpRequest
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.problems import problem_response
from apps.core.serializers import StrictSerializer
from apps.idempotency import protocol as idempotency
from apps.ops.killswitch import CapabilityDisabled
from apps.ops.ratelimit import TenantRateThrottle
from apps.tenancy.authentication import ApiKeyPrincipal
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Organization, User
from apps.tenancy.permissions import HasTenantRole, request_tenant
from apps.tenancy.services import API_KEY_NAME_MAX_LENGTH, api_key_issue

logger = logging.getLogger("darkroom.api")


class TenantApi(APIView):
    """An API view that runs in the tenant of its credential.

    After authentication and permission checks, `request.tenant_id` is set and the rest of the
    view runs inside `tenant_context(tenant_id)`: RLS scopes every query to that tenant.

    Mutating requests (POST/PUT/PATCH/DELETE) follow the Idempotency-Key protocol
    (`apps.idempotency.protocol`): the header is validated right after authentication, then the
    handler runs inside ONE `transaction.atomic()` opened here, holding the key's advisory lock;
    a response < 400 commits together with its key row, anything else rolls back. Services
    called from a view therefore join this transaction (plain `@transaction.atomic`, never
    `durable=True`). `idempotency_exempt = True` is reserved for webhooks, which are not under
    /api/ and dedupe on the provider's event id (tests/idempotency enumerates the URLs).
    """

    tenant_id: int | None = None
    idempotency_exempt: bool = False
    # The query parameters GET takes, as its schema documents them (tests/core/test_query_parameters.py
    # checks that the two agree), and so HEAD and OPTIONS (the same URL); writes take none. Any
    # other name is a 400 naming it, so a typo (`?stauts=failed`) is not answered as if no filter
    # had been asked for; so is one given twice (no operation takes a list: which would count?).
    query_parameters: frozenset[str] = frozenset()
    # Checked after authentication and permissions, before the idempotency transaction opens.
    throttle_classes = [TenantRateThrottle]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        self._idempotency_key: str | None = None
        self._idempotency_body = b""
        self._idempotency_in_transaction = False
        self._idempotency_state: idempotency.IdempotentRequest | None = None
        try:
            with ExitStack() as stack:
                self._context_stack = stack
                response = super().dispatch(request, *args, **kwargs)
        except Exception:
            if not self._idempotency_in_transaction:
                raise
            # Storing the key or the COMMIT itself failed (e.g. a deferred constraint): the
            # transaction rolled back, so neither the effect nor the key is stored.
            logger.exception("idempotent request failed to commit")
            return problem_response(
                500, "Internal server error", "The request was not applied; retry it.", slug="internal-error"
            )
        return response

    def perform_authentication(self, request: Request) -> None:
        super().perform_authentication(request)
        method = (request.method or "").upper()
        if not self.idempotency_exempt and method in idempotency.MUTATING_METHODS and hasattr(self, method.lower()):
            self._idempotency_key = idempotency.key_from_request(request.headers)
            if (request.content_type or "").startswith("multipart/form-data"):
                # Uploads are parsed (streamed to temp files) and fingerprinted per part, never
                # read whole into memory.
                self._idempotency_body = idempotency.multipart_canonical_body(fields=request.POST, files=request.FILES)
            else:
                # Read the raw bytes now, before anything parses the stream: the fingerprint covers them.
                self._idempotency_body = request.body

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        method = (request.method or "").lower()
        # A method without a handler is dispatch's 405 (after `initial`), whatever the query says.
        if method in self.http_method_names and hasattr(self, method):
            refuse_unknown_query_parameters(request, self.query_parameters if method in _READS else None)
        self.tenant_id, self.tenant_role = request_tenant(request)
        request.tenant_id = self.tenant_id  # type: ignore[attr-defined]
        self._context_stack.enter_context(tenant_context(self.tenant_id))
        if self._idempotency_key is not None:
            self.before_idempotent_transaction(request, self._idempotency_key)
            self._idempotency_begin(request, self._idempotency_key)

    def before_idempotent_transaction(self, request: Request, key: str) -> None:
        """A hook for work a mutating request must do before the Idempotency-Key protocol opens
        its transaction (a slow storage write, say): it runs after authentication, permissions,
        rate limits and the tenant context, outside any transaction. What it raises is answered
        like any error of the view; it writes no key. Does nothing by default."""

    def _idempotency_begin(self, request: Request, key: str) -> None:
        if self.tenant_id is None:
            raise ImproperlyConfigured(f"{type(self).__name__} mutates without a tenant; check its permissions.")
        caller = self.idempotency_caller(request)
        self._context_stack.enter_context(transaction.atomic())
        self._idempotency_in_transaction = True
        self._idempotency_state = idempotency.begin(
            tenant_id=self.tenant_id,
            caller=caller,
            key=key,
            method=(request.method or "").upper(),
            path=request.get_full_path(),
            body=self._idempotency_body,
        )

    def idempotency_caller(self, request: Request) -> str:
        """Who owns the key space within the tenant: the API key, else the signed-in user."""
        user = request.user
        if isinstance(user, ApiKeyPrincipal):
            return f"api_key:{user.api_key.api_key_id}"
        if user is not None and user.is_authenticated and user.pk is not None:
            return f"user:{user.pk}"
        raise ImproperlyConfigured(f"{type(self).__name__} needs an authenticated caller to scope Idempotency-Key.")

    # A replayed or protocol-made response is a plain HttpResponse, which DRF passes through
    # unchanged; its stubs only admit `Response`, hence the ignores below.
    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, idempotency.IdempotentReplay):
            return exc.response  # type: ignore[return-value]
        response = super().handle_exception(exc)
        if isinstance(exc, idempotency.IdempotencyKeyInFlight | CapabilityDisabled):
            response["Retry-After"] = str(exc.retry_after)
        return response

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        if self._idempotency_in_transaction:
            return idempotency.finish(self._idempotency_state, response)  # type: ignore[return-value]
        return response

    @property
    def tenant(self) -> Organization:
        assert self.tenant_id is not None, "permission classes guarantee a tenant"
        return Organization.objects.get(pk=self.tenant_id)


_UNKNOWN_NAMED_AT_MOST = 20
# The methods that take `TenantApi.query_parameters`: GET, and HEAD and OPTIONS on the same URL.
_READS = frozenset({"get", "head", "options"})


def refuse_unknown_query_parameters(request: Request, taken: frozenset[str] | None) -> None:
    """A 400 naming each query parameter not in `taken` (None: the method takes none), and each
    one of `taken` given more than once, before anything is read or written (the
    Idempotency-Key protocol has not begun: no key is stored)."""
    params = request.query_params
    unknown = sorted(set(params) - (taken or frozenset()))
    repeated = sorted(name for name in set(params) - set(unknown) if len(params.getlist(name)) > 1)
    if not unknown and not repeated:
        return
    if taken is None:
        message = f"{request.method} takes no query parameters."
    else:
        message = f"Not a query parameter of this operation, which takes: {', '.join(sorted(taken)) or 'none'}."
    errors = {name[:100]: [message] for name in unknown[:_UNKNOWN_NAMED_AT_MOST]}
    errors.update({name: ["Give this parameter once."] for name in repeated})
    raise serializers.ValidationError(errors)


class ApiKeyCreateApi(TenantApi):
    """Issue an API key for the caller's studio; the secret is in this response only."""

    permission_classes = [HasTenantRole.of("owner")]

    class InputSerializer(StrictSerializer):
        name = serializers.CharField(max_length=API_KEY_NAME_MAX_LENGTH)

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        prefix = serializers.CharField()
        api_key = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        actor = request.user if isinstance(request.user, User) else None
        issued = api_key_issue(tenant=self.tenant, name=data.validated_data["name"], actor=actor)
        body = {
            "id": issued.api_key.pk,
            "name": issued.api_key.name,
            "prefix": issued.api_key.prefix,
            "api_key": issued.raw_key,
        }
        return Response(self.OutputSerializer(body).data, status=201)


class WhoAmIApi(TenantApi):
    """The tenant and role the credential resolves to (for integrators checking their setup)."""

    class OutputSerializer(serializers.Serializer):
        tenant_id = serializers.IntegerField()
        tenant_slug = serializers.CharField()
        role = serializers.CharField()

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        tenant = self.tenant
        body = {"tenant_id": tenant.pk, "tenant_slug": tenant.slug, "role": self.tenant_role}
        return Response(self.OutputSerializer(body).data)
