"""API authentication: `Authorization: Bearer <api key>`. The key decides the tenant.

The scheme name is read without regard to case ("bearer", "BEARER"), as RFC 9110 §11.1 says of
every HTTP authentication scheme. `api_key_of` is the one reading of the header, used by the
authentication, by `request_has_credential` and by the ASGI body limit
(`apps.core.asgi_body_limit`), so the three agree on which requests carry a key.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apps.tenancy.selectors import ResolvedApiKey, api_key_resolve

SCHEME = "Bearer"
HOW_TO_SEND = f"Send the API key as 'Authorization: {SCHEME} <key>'"


def bearer_credentials(authorization: str) -> list[str] | None:
    """The words after the scheme of an Authorization header value of the Bearer scheme (in any
    case), or None for a value of another scheme or none at all (a value Python reads as white
    space only, e.g. a NBSP, included). A well-formed value gives one word: the key."""
    parts = authorization.split()
    if not parts or not (parts[0].isascii() and parts[0].lower() == SCHEME.lower()):
        return None
    return parts[1:]


def api_key_of(authorization: str) -> str | None:
    """The API key of a well-formed `Bearer <key>` header value (any case of "Bearer"), else None."""
    words = bearer_credentials(authorization)
    return words[0] if words is not None and len(words) == 1 else None


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
    keyword = SCHEME

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        words = bearer_credentials(header)
        if words is None:
            return None  # no credential of this scheme: the session may still authenticate
        if len(words) != 1:
            raise exceptions.AuthenticationFailed(
                f"{HOW_TO_SEND}: the Authorization header holds no key after {SCHEME}, or more than one word."
            )
        resolved = api_key_resolve(raw_key=words[0])
        if resolved is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return ApiKeyPrincipal(resolved), resolved

    def authenticate_header(self, request: Request) -> str:
        return self.keyword

    def not_authenticated_detail(self, request: Request) -> str:
        """The `detail` of a 401 for a request that authenticated by no means: how to send the
        key, and what this request did instead when it sent one another way (the key itself is
        never echoed). `apps.core.problems` asks the view's first authenticator, as DRF asks it
        for the `WWW-Authenticate` challenge."""
        if request.META.get("HTTP_AUTHORIZATION", "").strip():
            return f"{HOW_TO_SEND}: this request's Authorization header does not use the {SCHEME} scheme."
        if "HTTP_X_API_KEY" in request.META:
            return f"{HOW_TO_SEND}: the X-Api-Key header is not read."
        return f"{HOW_TO_SEND}."


def request_has_credential(request: HttpRequest) -> bool:
    """Whether `request` comes from a signed-in session or carries a live API key
    (`Authorization: Bearer <key>`), without reading its body. Needs the session and
    authentication middleware to have run (`request.user`)."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return True
    key = api_key_of(request.META.get("HTTP_AUTHORIZATION", ""))
    return key is not None and api_key_resolve(raw_key=key) is not None
