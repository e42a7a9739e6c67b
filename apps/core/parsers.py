"""The API's JSON parser: DRF's, refusing strings that are not Unicode text."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from apps.core.text import is_unicode_text, strings_of


class UnicodeJSONParser(JSONParser):
    """A body whose strings hold a lone UTF-16 surrogate (`"\\ud800"`) is a 400 malformed
    request, not a 500 from the database that cannot store it. NUL characters are left to the
    fields (DRF's CharField refuses them with a field error)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        if not all(is_unicode_text(value) for value in strings_of(data)):
            raise ParseError("JSON parse error - a string holds a lone UTF-16 surrogate, which is not Unicode text.")
        return data
