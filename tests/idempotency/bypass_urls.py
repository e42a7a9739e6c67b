"""A URL map with mutating API views that bypass the Idempotency-Key protocol in three ways.

Used only to prove that the enumeration test in test_enumeration.py notices each of them.
"""

from django.urls import include, path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.tenancy.apis import TenantApi


class PlainMutatingApi(APIView):
    """Not a TenantApi at all."""

    def post(self, request: Request) -> Response:
        return Response({"ok": True}, status=201)


class ExemptMutatingApi(TenantApi):
    """A TenantApi that opts out although it is not a webhook."""

    idempotency_exempt = True

    def put(self, request: Request, pk: int) -> Response:
        return Response({"ok": True})


class SneakyMutatingApi(TenantApi):
    """A TenantApi that skips the header check by overriding the hook that runs it."""

    def perform_authentication(self, request: Request) -> None:
        request.user  # authenticate, without the protocol's header check

    def delete(self, request: Request, slug: str) -> Response:
        return Response(status=204)


urlpatterns = [
    path(
        "api/v1/",
        include(
            [
                path("plain", PlainMutatingApi.as_view()),
                path("exempt/<int:pk>", ExemptMutatingApi.as_view()),
                path("sneaky/<slug:slug>", SneakyMutatingApi.as_view()),
            ]
        ),
    ),
    path("", include("config.urls")),
]
