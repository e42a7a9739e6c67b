"""`{% page_query "page" 3 %}`: the link to another page of one list on a page that may hold
several lists (or filters): the current query string with that list's parameter set."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.simple_tag(takes_context=True)
def page_query(context: dict[str, Any], param: str, number: int) -> str:
    """'?to_ship=1&page=3': the request's query with `param` set to `number`; every other
    parameter (another list's page, a filter) is kept."""
    query = context["request"].GET.copy()
    query[param] = str(number)
    return f"?{query.urlencode()}"
