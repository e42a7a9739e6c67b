"""The base of every tenant API view, and the API-key endpoints."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from django.http import HttpRequest
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.serializers import StrictSerializer
from apps.tenancy.context import tenant_context
from apps.tenancy.models import Organization, User
from apps.tenancy.permissions import HasTenantRole, request_tenant
from apps.tenancy.services import api_key_issue


class TenantApi(APIView):
    """An API view that runs in the tenant of its credential.

    After authentication and permission checks, `request.tenant_id` is set and the rest of the
    view runs inside `tenant_context(tenant_id)`: RLS scopes every query to that tenant.
    """

    tenant_id: int | None = None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        with ExitStack() as stack:
            self._context_stack = stack
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.tenant_id, self.tenant_role = request_tenant(request)
        request.tenant_id = self.tenant_id  # type: ignore[attr-defined]
        self._context_stack.enter_context(tenant_context(self.tenant_id))

    @property
    def tenant(self) -> Organization:
        assert self.tenant_id is not None, "permission classes guarantee a tenant"
        return Organization.objects.get(pk=self.tenant_id)


class ApiKeyCreateApi(TenantApi):
    """Issue an API key for the caller's studio; the secret is in this response only."""

    permission_classes = [HasTenantRole.of("owner")]

    class InputSerializer(StrictSerializer):
        name = serializers.CharField(max_length=100)

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        prefix = serializers.CharField()
        api_key = serializers.CharField()

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

    def get(self, request: Request) -> Response:
        tenant = self.tenant
        body = {"tenant_id": tenant.pk, "tenant_slug": tenant.slug, "role": self.tenant_role}
        return Response(self.OutputSerializer(body).data)
