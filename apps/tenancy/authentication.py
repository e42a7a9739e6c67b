"""API authentication: `Authorization: Bearer <api key>`. The key decides the tenant."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apps.tenancy.selectors import ResolvedApiKey, api_key_resolve


class ApiKeyPrincipal(AnonymousUser):
    """The caller when authenticated by API key: no person, one tenant."""

    def __init__(self, key: ResolvedApiKey) -> None:
        super().__init__()
        self.api_key = key

    @property
    def is_authenticated(self) -> bool:  # type: ignore[override]
        return True

    def __str__(self) -> str:
        return f"api-key:{self.api_key.api_key_id}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if not parts or parts[0] != self.keyword:
            return None  # no credential (a value Python reads as whitespace only, e.g. a NBSP, included)
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <api key>'.")
        resolved = api_key_resolve(raw_key=parts[1])
        if resolved is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return ApiKeyPrincipal(resolved), resolved

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


def request_has_credential(request: HttpRequest) -> bool:
    """Whether `request` comes from a signed-in session or carries a live API key
    (`Authorization: Bearer <key>`), without reading its body. Needs the session and
    authentication middleware to have run (`request.user`)."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return True
    parts = request.META.get("HTTP_AUTHORIZATION", "").split()
    return (
        len(parts) == 2 and parts[0] == ApiKeyAuthentication.keyword and api_key_resolve(raw_key=parts[1]) is not None
    )
