"""The API's one paginator: `limit` / `offset`, validated.

DRF's LimitOffsetPagination quietly falls back to its defaults for `?limit=abc` or `?offset=-5`
and caps an oversize limit; a client that made a mistake then gets a page it did not ask for.
Here a value that is not an integer in range is a 400 problem naming the parameter.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

MAX_LIMIT = 200
_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,18}")


def _query_int(request: Request, name: str, *, minimum: int, maximum: int | None = None) -> int | None:
    # Given once: `TenantApi` refuses a repeated query parameter before any view reads it.
    values: list[Any] = request.query_params.getlist(name)
    if not values:
        return None
    if not _WHOLE_NUMBER.fullmatch(values[0]):  # int() would also take "1_0", " 5", "+5" and non-ASCII digits
        raise ValidationError({name: ["A whole number is required."]})
    value = int(values[0])
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ValidationError({name: [f"Must be {bound}."]})
    return value


class StrictLimitOffsetPagination(LimitOffsetPagination):
    """`limit` 1..MAX_LIMIT (default PAGE_SIZE), `offset` >= 0; anything else is a 400."""

    default_limit: int = settings.API_PAGE_SIZE
    max_limit = MAX_LIMIT

    def get_limit(self, request: Request) -> int:
        limit = _query_int(request, self.limit_query_param, minimum=1, maximum=MAX_LIMIT)
        return self.default_limit if limit is None else limit

    def get_offset(self, request: Request) -> int:
        offset = _query_int(request, self.offset_query_param, minimum=0)
        return 0 if offset is None else offset
