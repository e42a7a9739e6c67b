"""The problem-type pages: `GET /problems/<slug>` says, for people, when a problem happens and
what to do (RFC 9457: a problem's `type` URI should resolve to its documentation), and
`GET /problems/` lists them. Both are made from `apps.core.problems.problem_types`, the registry
every type the API emits is in; an unknown slug is a 404."""

from __future__ import annotations

import re

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_safe

from apps.core.problems import NOT_FOUND, ProblemType, problem_page_or_json, problem_types

# The pages change only with a deploy.
CACHE_CONTROL = "public, max-age=3600"


def _prose(text: str) -> SafeString:
    """`text` as HTML, its `backticked` parts as code."""
    parts = re.split(r"`([^`]*)`", text)
    return mark_safe(  # noqa: S308 - every part is escaped or made by format_html
        "".join(
            escape(part) if index % 2 == 0 else format_html("<code>{}</code>", part) for index, part in enumerate(parts)
        )
    )


def _page(problem: ProblemType) -> dict[str, object]:
    return {
        "slug": problem.slug,
        "uri": problem.uri,
        "title": problem.title,
        "when": _prose(problem.when),
        "what_to_do": _prose(problem.what_to_do),
    }


@require_safe
def problem_type_page(request: HttpRequest, slug: str) -> HttpResponse:
    problem = problem_types().get(slug)
    if problem is None:
        return problem_page_or_json(
            request, 404, "No such problem type", f"Darkroom has no problem type {slug!r}.", slug=NOT_FOUND.slug
        )
    response = render(request, "problems/type.html", {"problem": _page(problem)})
    response["Cache-Control"] = CACHE_CONTROL
    return response


@require_safe
def problem_type_list(request: HttpRequest) -> HttpResponse:
    response = render(request, "problems/list.html", {"problems": [_page(p) for p in problem_types().values()]})
    response["Cache-Control"] = CACHE_CONTROL
    return response
