"""The OpenAPI schema (drf-spectacular) states the API's whole contract, errors included.

`DarkroomAutoSchema` (settings `DEFAULT_SCHEMA_CLASS`) adds to every tenant API operation what
the views enforce outside their serializers:

* the `Idempotency-Key` request header (`apps.idempotency.protocol`), required on every
  mutating operation of a `TenantApi` that is not `idempotency_exempt`, and the
  `Idempotent-Replayed` header of a replayed response;
* the RFC 9457 (RFC 7807) problem responses (`application/problem+json`, component `Problem`) the operation
  can give: 401, 403 and 429 (the rate limit, with `Retry-After`) always; 404 when the path
  names an object; 400 for input (a body, a required header, query parameters, which every
  operation checks for unknown names); 409, 413 and
  422 for mutating operations (a key in flight, a business conflict, an oversize body, a reused
  key or an unusable reference); 415 when a body is parsed. 409 carries `Retry-After`;
* `additionalProperties: false` on StrictSerializer bodies, which refuse undeclared fields;
* `minLength` / `minItems` 1 on request fields that refuse "" or [] (and a `many=True` body's
  `maxItems`), which drf-spectacular leaves out without `COMPONENT_SPLIT_REQUEST`;
* `format: binary` for a file in a request body (an upload), so Swagger UI offers a file picker:
  without `COMPONENT_SPLIT_REQUEST` drf-spectacular would describe it as a URL;
* on every operation, the 414 (component response `RequestLineTooLong`) that gunicorn answers
  itself, as text/html, to a request line over its `limit_request_line` (config/gunicorn_conf.py).

`ApiKeyScheme` documents `Authorization: Bearer <api key>` (`ApiKeyAuthentication`). The `Problem`
component's `type` is a URI whose page (`apps.core.problem_pages`) says what the problem means.
`page_of` and `PAGINATION_PARAMETERS` describe a StrictLimitOffsetPagination page for plain APIViews.

`tests/core/test_openapi.py` checks that the schema generates without warnings and, with
schemathesis, that what the API answers to generated requests matches it. `DarkroomAutoSchema`
overrides a few private drf-spectacular methods (`_map_basic_serializer`,
`_map_serializer_field`, `_get_response_bodies`); those tests are what an upgrade of the pinned
version must pass.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

from apps.core.pagination import MAX_LIMIT
from apps.core.problems import PROBLEM_CONTENT_TYPE
from apps.core.serializers import StrictSerializer
from apps.idempotency import protocol as idempotency

PAGINATION_PARAMETERS = [
    OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
        OpenApiParameter.QUERY,
        description=f"Results per page (default {settings.API_PAGE_SIZE}).",
    ),
    OpenApiParameter(
        "offset", {"type": "integer", "minimum": 0}, OpenApiParameter.QUERY, description="Results to skip."
    ),
]
# What a view paginated by StrictLimitOffsetPagination lists in `TenantApi.query_parameters`.
PAGINATION_QUERY = frozenset(parameter.name for parameter in PAGINATION_PARAMETERS)

_IDEMPOTENCY_KEY = OpenApiParameter(
    idempotency.HEADER,
    {
        "type": "string",
        "minLength": 1,
        "maxLength": idempotency.MAX_KEY_LENGTH,
        # Printable ASCII, not starting or ending with a space (HTTP strips those).
        "pattern": r"^[!-~]([ -~]*[!-~])?$",
    },
    OpenApiParameter.HEADER,
    required=True,
    description=(
        "A unique value per intent (a UUID), at most 255 printable ASCII characters. A retry with the "
        "same key and body replays the stored response (header `Idempotent-Replayed: true`); the same key "
        "with another body is 422; while the first request is in flight, 409 with `Retry-After`. Failed "
        "requests (4xx, 5xx) are not stored, so the same key may be retried."
    ),
)
_REPLAYED = OpenApiParameter(
    idempotency.REPLAYED_HEADER,
    {"type": "string", "enum": ["true"]},
    OpenApiParameter.HEADER,
    response=[200, 201, 202, 204],
    description="Present on a response replayed from an earlier request with the same Idempotency-Key.",
)
_RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    {"type": "string"},
    OpenApiParameter.HEADER,
    response=[409],
    description="Seconds to wait before retrying, when a request with this Idempotency-Key is still in flight.",
)
_RATE_LIMITED_RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    {"type": "string"},
    OpenApiParameter.HEADER,
    response=[429],
    description="Seconds until the rate limit admits another request from this caller to this endpoint.",
)

_PROBLEM_DESCRIPTIONS = {
    400: (
        "Invalid input: a malformed body, invalid fields (`errors`), a query parameter the operation does "
        "not take, a missing or invalid Idempotency-Key."
    ),
    401: (
        "No credentials (the `detail` says how to send the API key: `Authorization: Bearer <key>`), or an "
        "unknown or revoked API key."
    ),
    403: "The credential's role may not do this.",
    404: "No such object in this studio.",
    409: "A request with this Idempotency-Key is in flight (`Retry-After`), or a business rule refused it.",
    413: "The request body is too large.",
    415: "The body is not in a supported media type.",
    429: "Too many requests from this caller to this endpoint; retry after `Retry-After` seconds.",
    422: (
        "The Idempotency-Key was used with a different request, or the request names something that cannot "
        "take it (an unknown ledger account, another currency)."
    ),
}

# gunicorn's `limit_request_line` (config/gunicorn_conf.py; tests/core/test_openapi_request_line.py
# keeps the two equal).
REQUEST_LINE_LIMIT = 4094
_REQUEST_LINE_TOO_LONG = ResolvedComponent(
    name="RequestLineTooLong",
    type=ResolvedComponent.RESPONSE,
    object="RequestLineTooLong",
    schema={
        "description": (
            f"The request line (method, path and query string) is longer than {REQUEST_LINE_LIMIT:,} bytes. "
            "The web server (gunicorn) refuses it before Darkroom reads it, with its own `414 URI Too Long` "
            "HTML page: not a problem document, no request id. No valid call of this API needs a request "
            "line that long; shorten the query."
        ),
        "content": {"text/html": {"schema": {"type": "string"}}},
    },
)


class ProblemSerializer(serializers.Serializer):
    """RFC 7807 problem details, as `apps.core.problems` renders every error (schema: ProblemSchema)."""


class ProblemSchema(OpenApiSerializerExtension):  # type: ignore[no-untyped-call]
    """The `Problem` component, written out: its `errors` member would shadow `Serializer.errors`."""

    target_class = ProblemSerializer

    def get_name(self, auto_schema: AutoSchema, direction: Any) -> str:
        return "Problem"

    def map_serializer(self, auto_schema: AutoSchema, direction: Any) -> dict[str, Any]:
        string = {"type": "string"}
        return {
            "type": "object",
            "description": "RFC 7807 problem details (media type application/problem+json).",
            "properties": {
                "type": {
                    **string,
                    "description": "The kind of problem, e.g. /problems/validation-error (invalid fields, with "
                    "`errors`): a page at that path says when it happens and what to do; /problems/ lists them all.",
                },
                "title": string,
                "status": {"type": "integer"},
                "detail": string,
                "request_id": {**string, "description": "Quote it when you contact support."},
                "errors": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": string},
                    "description": "Field-level messages, keyed by the field's dotted path.",
                },
            },
            "required": ["type", "title", "status", "detail"],
        }


def page_of(serializer: type[serializers.Serializer]) -> serializers.Serializer:
    """OpenAPI shape of a StrictLimitOffsetPagination page of `serializer`."""
    return inline_serializer(
        name=f"Paginated{serializer.__name__.removesuffix('Serializer')}",
        fields={
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer(many=True),
        },
    )


class ApiKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "apps.tenancy.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A studio's API key (`drk_...`) as `Authorization: Bearer <key>` (the word Bearer in "
            "any case): the key decides the studio.",
        }


class DarkroomAutoSchema(AutoSchema):
    """drf-spectacular's AutoSchema plus the Idempotency-Key protocol and the problem responses."""

    def _is_tenant_api(self) -> bool:
        from apps.tenancy.apis import TenantApi

        return isinstance(self.view, TenantApi)

    def _needs_idempotency_key(self) -> bool:
        return (
            self._is_tenant_api()
            and self.method in idempotency.MUTATING_METHODS
            and not getattr(self.view, "idempotency_exempt", False)
        )

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        if self._is_tenant_api():
            parameters.append(_RATE_LIMITED_RETRY_AFTER)
        if self._needs_idempotency_key():
            parameters += [_IDEMPOTENCY_KEY, _REPLAYED, _RETRY_AFTER]
        return parameters

    def get_serializer_name(self, serializer: serializers.Serializer, direction: Any) -> str:
        """A serializer nested in a view is named after both: `LedgerAccountsApi.InputSerializer`
        is the component `LedgerAccountsInput`, not one of many `Input`s."""
        parts = type(serializer).__qualname__.split(".")
        if len(parts) == 1:
            return str(super().get_serializer_name(serializer, direction))
        return parts[0].removesuffix("Api") + "".join(part.removesuffix("Serializer") for part in parts[1:])

    def _map_basic_serializer(self, serializer: Any, direction: Any) -> dict[str, Any]:
        """A StrictSerializer refuses fields it does not declare: say so (additionalProperties)."""
        schema: dict[str, Any] = super()._map_basic_serializer(serializer, direction)
        if isinstance(serializer, StrictSerializer) or (
            isinstance(serializer, type) and issubclass(serializer, StrictSerializer)
        ):
            schema["additionalProperties"] = False
        return schema

    def _map_serializer_field(self, field: Any, direction: Any, bypass_extensions: bool = False) -> dict[str, Any]:
        """A file in a request is the uploaded bytes (multipart), not the URL a response would show.

        A request field that refuses "" (a CharField without `allow_blank`) or [] (`allow_empty=False`)
        says so with `minLength` / `minItems` 1, and a `many=True` serializer states its `max_length`:
        drf-spectacular writes neither without COMPONENT_SPLIT_REQUEST. Responses stay unconstrained.
        """
        schema: dict[str, Any] = super()._map_serializer_field(field, direction, bypass_extensions)
        if direction != "request" or field.read_only:
            return schema
        if isinstance(field, serializers.FileField):
            schema.update({"type": "string", "format": "binary"})
        elif isinstance(field, serializers.CharField) and not field.allow_blank and schema.get("type") == "string":
            schema["minLength"] = max(schema.get("minLength", 0), 1)
        elif isinstance(field, serializers.ListField | serializers.ListSerializer) and schema.get("type") == "array":
            if not field.allow_empty:
                schema["minItems"] = max(schema.get("minItems", 0), 1)
            max_length = getattr(field, "max_length", None)  # ListSerializer's: not in the stubs
            if isinstance(field, serializers.ListSerializer) and max_length is not None:
                schema.setdefault("maxItems", max_length)
        return schema

    def _problem_codes(self) -> list[int]:
        mutating = self.method in idempotency.MUTATING_METHODS
        has_body = mutating and self.get_request_serializer() is not None
        # 400 always: every tenant API operation refuses query parameters it does not take.
        codes = {400, 401, 403, 429}
        if "{" in self.path:
            codes.add(404)
        if self._needs_idempotency_key():
            codes |= {409, 413, 422}
        if mutating and has_body:
            codes.add(415)
        return sorted(codes)

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        self.registry.register_on_missing(_REQUEST_LINE_TOO_LONG)
        responses.setdefault("414", _REQUEST_LINE_TOO_LONG.ref)
        if not self._is_tenant_api():
            return responses
        for code in self._problem_codes():
            responses.setdefault(
                str(code),
                self._get_response_for_code(
                    OpenApiResponse(ProblemSerializer, description=_PROBLEM_DESCRIPTIONS[code]),
                    str(code),
                    [PROBLEM_CONTENT_TYPE],
                    direction,
                ),
            )
        return responses
